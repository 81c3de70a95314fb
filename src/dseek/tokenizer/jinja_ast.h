// Syntax tree of a parsed Jinja template (jinja_parser.cpp builds it, jinja_eval.cpp runs it).
//
// One generic node type per category keeps the tree small; the meaning of `args` per kind is listed
// next to each kind. Trees are at most kMaxAstDepth deep (the parser refuses deeper ones), so the
// recursive evaluator and destructors cannot exhaust the stack.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dseek/tokenizer/jinja_value.h"

namespace dseek::jinja {

constexpr int kMaxAstDepth = 128;

enum class ExprKind : uint8_t {
  kLiteral,   // literal
  kName,      // name
  kList,      // args: items
  kTuple,     // args: items
  kDict,      // args: key0, value0, key1, value1, ...
  kGetAttr,   // args: object; name: attribute          a.b
  kGetItem,   // args: object, key                      a[k]
  kSlice,     // args: object, start, stop, step (each may be null)
  kCall,      // args: callee, positional...; kwargs
  kFilter,    // args: value, positional...; kwargs; name: filter
  kTest,      // args: value, positional...; kwargs; name: test
  kNot,       // args: operand
  kNeg,       // args: operand
  kPos,       // args: operand
  kBinary,    // args: left, right; name: + - * / // % ** ~
  kAnd,       // args: left, right
  kOr,        // args: left, right
  kCompare,   // args: first, then one operand per ops[i]; ops: == != < <= > >= in notin
  kCondExpr,  // args: then, condition, else (may be null)   a if c else b
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  int col = 0;
  int depth = 1;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

enum class StmtKind : uint8_t {
  kText,         // text
  kOutput,       // expr                              {{ expr }}
  kIf,           // branches (condition, body); else_body
  kFor,          // targets, expr (iterable), cond (may be null), body, else_body
  kSet,          // targets (names) or ns_name + attr; expr
  kSetBlock,     // targets[0]; body                  {% set x %}...{% endset %}
  kMacro,        // name; params (name, default or null); body
  kBreak,
  kContinue,
  kFilterBlock,  // expr: filter chain applied to a null placeholder value; body
  kScope,        // body, rendered in place ({% generation %} of transformers)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 0;
  std::string text;
  std::string name;
  std::string attr;  // kSet on a namespace: {% set name.attr = ... %}
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::pair<std::string, ExprPtr>> params;
  Body body;
  Body else_body;
};

struct Template {
  std::string label;
  Body body;
};

}  // namespace dseek::jinja
