// Evaluator of parsed Jinja templates (jinja_ast.h) with the semantics of transformers'
// ImmutableSandboxedEnvironment: containers cannot be mutated, only namespace() attributes can be
// assigned; undefined names behave like jinja2.Undefined.
//
// Every render runs under Limits, so a hostile template ends with a dseek::Error instead of
// hanging, exhausting memory or the stack.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "dseek/tokenizer/jinja_ast.h"
#include "dseek/tokenizer/jinja_value.h"

namespace dseek::jinja {

struct Limits {
  size_t max_output_bytes = size_t(64) << 20;  // also the largest string a template may build
  int64_t max_loop_iterations = 1'000'000;     // for-loop iterations over the whole render
  int max_eval_depth = 400;                    // nesting of statements, expressions and macro calls
  uint64_t max_work = uint64_t(1) << 31;       // bytes of strings and list elements built, in total
};

// Variables given to a render (messages, add_generation_prompt, bos_token, ...).
using Globals = std::map<std::string, Value>;

class Interpreter {
 public:
  Interpreter(const Template& tmpl, const Limits& limits);

  std::string render(const Globals& globals);

  // Calls a callable value (function, macro, bound method); throws dseek::Error otherwise.
  Value call(const Value& callee, CallArgs& args);
  // Accounts `n` bytes or elements of work; throws when the render exceeds Limits::max_work.
  void add_work(uint64_t n);
  // Checks that a string being built stays within Limits::max_output_bytes.
  void check_size(size_t bytes) const;
  const Limits& limits() const { return limits_; }

 private:
  struct Scope {
    Scope* parent = nullptr;
    std::unordered_map<std::string, Value> vars;
    Value* find(const std::string& name);
  };
  enum class Flow { kNormal, kBreak, kContinue };
  struct DepthGuard;

  Flow exec_body(const Body& body, std::string& out);
  Flow exec(const Stmt& s, std::string& out);
  void exec_for(const Stmt& s, std::string& out);
  void exec_set(const Stmt& s);
  Value call_macro(const Stmt& macro, CallArgs& args);
  void append(std::string& out, std::string_view text);

  Value eval(const Expr& e);
  Value eval_name(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_compare(const Expr& e);
  Value eval_call(const Expr& e);
  Value eval_filter(const Expr& e);
  Value eval_test(const Expr& e);
  Value eval_slice(const Expr& e);
  CallArgs eval_args(const Expr& e, size_t first_arg);

  const Template& tmpl_;
  Limits limits_;
  Scope builtins_;
  Scope* root_ = nullptr;
  Scope* scope_ = nullptr;
  int depth_ = 0;
  int64_t iterations_ = 0;
  uint64_t work_ = 0;
};

// Python-semantics operators shared with the filters (throw dseek::Error on type errors).
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);

}  // namespace dseek::jinja
