#include "dseek/tokenizer/jinja_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "dseek/core/error.h"
#include "dseek/tokenizer/jinja_builtins.h"

namespace dseek::jinja {

namespace {

// An error that already carries "label:line: "; statements further out pass it through unchanged.
class LocatedError : public Error {
 public:
  using Error::Error;
};

std::string py_type(const Value& v) {
  std::string t = v.type_name();
  const auto sp = t.find(" object");
  return sp == std::string::npos ? t : t.substr(0, sp);
}

[[noreturn]] void fail_operands(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) throw Error(a.undefined_message());
  if (b.is_undefined()) throw Error(b.undefined_message());
  throw Error("unsupported operand type(s) for " + op + ": '" + py_type(a) + "' and '" + py_type(b) + "'");
}

[[noreturn]] void overflow() { throw Error("integer overflow (dseek templates use 64-bit integers)"); }

int64_t add_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}
int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}
int64_t mul_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

int64_t int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = mul_checked(result, base);
    exp >>= 1;
    if (exp > 0) base = mul_checked(base, base);
  }
  return result;
}

Value repeat(Interpreter& in, const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::list({}, seq.as_list().is_tuple);
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && uint64_t(n) > in.limits().max_output_bytes / s.size()) {
      throw Error("string repetition exceeds the output limit of " + std::to_string(in.limits().max_output_bytes) +
                  " bytes");
    }
    const size_t total = s.size() * size_t(n);
    in.add_work(total);
    std::string out;
    out.reserve(total);
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::string(std::move(out));
  }
  const auto& items = seq.as_list().items;
  if (!items.empty() && uint64_t(n) > in.limits().max_work / items.size()) throw Error("list repetition too large");
  in.add_work(items.size() * uint64_t(n));
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::list(std::move(out), seq.as_list().is_tuple);
}

}  // namespace

// ---- operators ------------------------------------------------------------------------------

Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = a.str();
    const std::string t = b.str();
    in.check_size(s.size() + t.size());
    in.add_work(s.size() + t.size());
    return Value::string(s + t);
  }
  const bool nums = a.is_number() && b.is_number();
  const bool floats = nums && (a.is_float() || b.is_float());
  if (op == "+") {
    if (floats) return Value::number(a.as_double() + b.as_double());
    if (nums) return Value::integer(add_checked(a.as_int(), b.as_int()));
    if (a.is_string() && b.is_string()) {
      in.check_size(a.as_string().size() + b.as_string().size());
      in.add_work(a.as_string().size() + b.as_string().size());
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
      std::vector<Value> items = a.as_list().items;
      items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
      in.add_work(items.size());
      return Value::list(std::move(items), a.as_list().is_tuple);
    }
    fail_operands(op, a, b);
  }
  if (op == "-") {
    if (floats) return Value::number(a.as_double() - b.as_double());
    if (nums) return Value::integer(sub_checked(a.as_int(), b.as_int()));
    fail_operands(op, a, b);
  }
  if (op == "*") {
    if (floats) return Value::number(a.as_double() * b.as_double());
    if (nums) return Value::integer(mul_checked(a.as_int(), b.as_int()));
    if ((a.is_string() || a.is_list()) && b.is_number() && !b.is_float()) return repeat(in, a, b.as_int());
    if ((b.is_string() || b.is_list()) && a.is_number() && !a.is_float()) return repeat(in, b, a.as_int());
    fail_operands(op, a, b);
  }
  if (op == "/") {
    if (!nums) fail_operands(op, a, b);
    if (b.as_double() == 0) throw Error("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (!nums) fail_operands(op, a, b);
    if (floats) {
      if (b.as_double() == 0) throw Error("float floor division by zero");
      return Value::number(std::floor(a.as_double() / b.as_double()));
    }
    const int64_t x = a.as_int(), y = b.as_int();
    if (y == 0) throw Error("integer division or modulo by zero");
    if (x == std::numeric_limits<int64_t>::min() && y == -1) overflow();
    int64_t q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return Value::integer(q);
  }
  if (op == "%") {
    if (a.is_string()) throw Error("printf-style string formatting ('...' % args) is not supported");
    if (!nums) fail_operands(op, a, b);
    if (floats) {
      const double y = b.as_double();
      if (y == 0) throw Error("float modulo");
      double r = std::fmod(a.as_double(), y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value::number(r);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    if (y == 0) throw Error("integer division or modulo by zero");
    if (y == -1) return Value::integer(0);
    int64_t r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value::integer(r);
  }
  if (op == "**") {
    if (!nums) fail_operands(op, a, b);
    if (!floats && b.as_int() >= 0) return Value::integer(int_pow(a.as_int(), b.as_int()));
    if (a.as_double() == 0 && b.as_double() < 0) throw Error("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  throw Error("unknown operator '" + op + "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) throw Error("'in <string>' requires string as left operand, not " + py_type(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& v : container.as_list().items) {
        if (values_equal(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return container.as_dict().find(item) != nullptr;
    default:
      throw Error("argument of type '" + py_type(container) + "' is not iterable");
  }
}

// ---- interpreter ----------------------------------------------------------------------------

struct Interpreter::DepthGuard {
  Interpreter& in;
  explicit DepthGuard(Interpreter& i) : in(i) {
    if (++in.depth_ > in.limits_.max_eval_depth) {
      --in.depth_;
      throw Error("template recursion deeper than " + std::to_string(in.limits_.max_eval_depth) + " levels");
    }
  }
  ~DepthGuard() { --in.depth_; }
};

namespace {
// Makes `scope` the current scope for as long as it lives.
template <class S>
struct ScopePush {
  S*& current;
  S* saved;
  ScopePush(S*& cur, S& scope) : current(cur), saved(cur) { current = &scope; }
  ~ScopePush() { current = saved; }
};
}  // namespace

Value* Interpreter::Scope::find(const std::string& name) {
  for (Scope* s = this; s; s = s->parent) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return &it->second;
  }
  return nullptr;
}

Interpreter::Interpreter(const Template& tmpl, const Limits& limits) : tmpl_(tmpl), limits_(limits) {
  for (auto& kv : make_builtin_globals()) builtins_.vars.emplace(kv.first, kv.second);
}

std::string Interpreter::render(const Globals& globals) {
  Scope root;
  root.parent = &builtins_;
  for (const auto& kv : globals) root.vars[kv.first] = kv.second;
  root_ = &root;
  ScopePush<Scope> push(scope_, root);
  depth_ = 0;
  iterations_ = 0;
  work_ = 0;
  std::string out;
  exec_body(tmpl_.body, out);
  root_ = nullptr;
  return out;
}

void Interpreter::add_work(uint64_t n) {
  work_ += n;
  if (work_ > limits_.max_work) {
    throw Error("template exceeded the work limit (" + std::to_string(limits_.max_work) +
                " bytes of strings and list elements built)");
  }
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    throw Error("template output exceeds the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
  }
}

void Interpreter::append(std::string& out, std::string_view text) {
  check_size(out.size() + text.size());
  add_work(text.size());
  out.append(text);
}

Interpreter::Flow Interpreter::exec_body(const Body& body, std::string& out) {
  for (const auto& s : body) {
    const Flow f = exec(*s, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, std::string& out) {
  DepthGuard g(*this);
  try {
    switch (s.kind) {
      case StmtKind::kText:
        append(out, s.text);
        return Flow::kNormal;
      case StmtKind::kOutput: {
        const Value v = eval(*s.expr);
        if (v.is_string()) {
          append(out, v.as_string());
        } else {
          append(out, v.str());
        }
        return Flow::kNormal;
      }
      case StmtKind::kIf:
        for (const auto& br : s.branches) {
          if (eval(*br.first).truthy()) return exec_body(br.second, out);
        }
        return exec_body(s.else_body, out);
      case StmtKind::kFor:
        exec_for(s, out);
        return Flow::kNormal;
      case StmtKind::kSet:
        exec_set(s);
        return Flow::kNormal;
      case StmtKind::kSetBlock: {
        std::string buf;
        const Flow f = exec_body(s.body, buf);
        scope_->vars[s.targets[0]] = Value::string(std::move(buf));
        return f;
      }
      case StmtKind::kMacro: {
        const Stmt* m = &s;
        scope_->vars[s.name] =
            Value::callable(s.name, [m](Interpreter& in, CallArgs& args) { return in.call_macro(*m, args); });
        return Flow::kNormal;
      }
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kFilterBlock: {
        std::string buf;
        const Flow f = exec_body(s.body, buf);
        // The chain was parsed onto a placeholder literal; apply its filters innermost first.
        std::vector<const Expr*> chain;
        for (const Expr* e = s.expr.get(); e->kind == ExprKind::kFilter; e = e->args[0].get()) chain.push_back(e);
        Value v = Value::string(std::move(buf));
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          CallArgs args = eval_args(**it, 1);
          v = apply_filter(*this, (*it)->name, v, args);
        }
        append(out, v.str());
        return f;
      }
      case StmtKind::kScope:
        return exec_body(s.body, out);
    }
  } catch (const LocatedError&) {
    throw;
  } catch (const Error& e) {
    throw LocatedError(tmpl_.label + ":" + std::to_string(s.line) + ": " + e.what());
  }
  return Flow::kNormal;
}

namespace {
void bind_targets(std::unordered_map<std::string, Value>& vars, const std::vector<std::string>& targets,
                  const Value& v) {
  if (targets.size() == 1) {
    vars[targets[0]] = v;
    return;
  }
  const std::vector<Value> items = iterate(v);
  if (items.size() != targets.size()) {
    throw Error(std::string(items.size() > targets.size() ? "too many" : "not enough") +
                " values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                std::to_string(items.size()) + ")");
  }
  for (size_t i = 0; i < items.size(); ++i) vars[targets[i]] = items[i];
}
}  // namespace

void Interpreter::exec_for(const Stmt& s, std::string& out) {
  std::vector<Value> items = iterate(eval(*s.expr));
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      Scope it;
      it.parent = scope_;
      bind_targets(it.vars, s.targets, item);
      ScopePush<Scope> push(scope_, it);
      if (eval(*s.cond).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  const int64_t n = int64_t(items.size());
  if (n == 0) {
    Scope it;
    it.parent = scope_;
    ScopePush<Scope> push(scope_, it);
    exec_body(s.else_body, out);
    return;
  }
  // The `loop` object: keys and loop.cycle are built once per loop, values per iteration.
  static const char* const kKeys[] = {"index", "index0", "revindex", "revindex0", "first", "last",
                                      "length", "depth", "depth0", "previtem", "nextitem", "cycle"};
  std::vector<Value> keys;
  for (const char* k : kKeys) keys.push_back(Value::string(k));
  auto current = std::make_shared<int64_t>(0);
  const Value cycle = Value::callable("loop.cycle", [current](Interpreter&, CallArgs& args) {
    if (args.pos.empty()) throw Error("no items for cycling given");
    return args.pos[size_t(*current) % args.pos.size()];
  });
  for (int64_t i = 0; i < n; ++i) {
    if (++iterations_ > limits_.max_loop_iterations) {
      throw Error("for loops ran more than " + std::to_string(limits_.max_loop_iterations) + " iterations");
    }
    *current = i;
    Scope it;
    it.parent = scope_;
    bind_targets(it.vars, s.targets, items[size_t(i)]);
    const Value values[] = {
        Value::integer(i + 1),
        Value::integer(i),
        Value::integer(n - i),
        Value::integer(n - i - 1),
        Value::boolean(i == 0),
        Value::boolean(i == n - 1),
        Value::integer(n),
        Value::integer(1),
        Value::integer(0),
        i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item"),
        i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item"),
        cycle,
    };
    std::vector<std::pair<Value, Value>> loop;
    loop.reserve(std::size(kKeys));
    for (size_t k = 0; k < std::size(kKeys); ++k) loop.emplace_back(keys[k], values[k]);
    it.vars["loop"] = Value::dict_unique_keys(std::move(loop));
    ScopePush<Scope> push(scope_, it);
    if (exec_body(s.body, out) == Flow::kBreak) break;
  }
}

void Interpreter::exec_set(const Stmt& s) {
  if (!s.attr.empty()) {
    Value* target = scope_->find(s.name);
    if (!target || !target->is_namespace()) {
      throw Error("cannot assign attribute on non-namespace object '" + s.name + "'");
    }
    Value v = eval(*s.expr);
    // Only namespaces are mutable; keeping them out of namespaces rules out reference cycles.
    if (v.has_ns()) throw Error("a namespace cannot be stored in a namespace attribute");
    Namespace& ns = target->as_namespace();
    if (v.depth() + 1 > kMaxValueDepth) {
      throw Error("value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
    }
    ns.depth = std::max(ns.depth, v.depth() + 1);
    if (Value* slot = ns.find(s.attr)) {
      *slot = std::move(v);
    } else {
      ns.attrs.emplace_back(s.attr, std::move(v));
    }
    return;
  }
  bind_targets(scope_->vars, s.targets, eval(*s.expr));
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_callable()) {
    DepthGuard g(*this);
    return callee.as_callable().fn(*this, args);
  }
  if (callee.is_undefined()) throw Error(callee.undefined_message());
  throw Error("'" + callee.type_name() + "' is not callable");
}

Value Interpreter::call_macro(const Stmt& m, CallArgs& args) {
  if (args.pos.size() > m.params.size()) {
    throw Error("macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) + " argument(s)");
  }
  for (const auto& kw : args.kw) {
    const bool known = std::any_of(m.params.begin(), m.params.end(), [&](const auto& p) { return p.first == kw.first; });
    if (!known) throw Error("macro '" + m.name + "' takes no keyword argument '" + kw.first + "'");
  }
  Scope frame;
  frame.parent = root_;
  ScopePush<Scope> push(scope_, frame);
  for (size_t i = 0; i < m.params.size(); ++i) {
    const auto& [pname, def] = m.params[i];
    Value v;
    bool found = false;
    if (i < args.pos.size()) {
      v = args.pos[i];
      found = true;
    }
    for (const auto& kw : args.kw) {
      if (kw.first == pname) {
        if (found) throw Error("macro '" + m.name + "' got multiple values for argument '" + pname + "'");
        v = kw.second;
        found = true;
      }
    }
    if (!found) v = def ? eval(*def) : Value::undefined("parameter '" + pname + "' was not provided");
    frame.vars[pname] = std::move(v);
  }
  std::string buf;
  exec_body(m.body, buf);
  return Value::string(std::move(buf));
}

// ---- expressions ----------------------------------------------------------------------------

Value Interpreter::eval(const Expr& e) {
  DepthGuard g(*this);
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName:
      return eval_name(e);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a));
      add_work(items.size());
      return Value::list(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      std::vector<std::pair<Value, Value>> items;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        if (!(k.is_none() || k.is_number() || k.is_string())) throw Error("unhashable type: '" + py_type(k) + "'");
        items.emplace_back(std::move(k), eval(*e.args[i + 1]));
      }
      add_work(items.size());
      return Value::dict(std::move(items));
    }
    case ExprKind::kGetAttr:
      return get_attr(eval(*e.args[0]), e.name);
    case ExprKind::kGetItem: {
      const Value obj = eval(*e.args[0]);
      return get_item(obj, eval(*e.args[1]));
    }
    case ExprKind::kSlice:
      return eval_slice(e);
    case ExprKind::kCall:
      return eval_call(e);
    case ExprKind::kFilter:
      return eval_filter(e);
    case ExprKind::kTest:
      return eval_test(e);
    case ExprKind::kNot:
      return Value::boolean(!eval(*e.args[0]).truthy());
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      const Value v = eval(*e.args[0]);
      if (!v.is_number()) {
        if (v.is_undefined()) throw Error(v.undefined_message());
        throw Error("bad operand type for unary " + std::string(e.kind == ExprKind::kNeg ? "-" : "+") + ": '" +
                    py_type(v) + "'");
      }
      if (e.kind == ExprKind::kPos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::number(-v.as_double());
      return Value::integer(sub_checked(0, v.as_int()));
    }
    case ExprKind::kBinary:
      return eval_binary(e);
    case ExprKind::kAnd: {
      Value l = eval(*e.args[0]);
      return l.truthy() ? eval(*e.args[1]) : l;
    }
    case ExprKind::kOr: {
      Value l = eval(*e.args[0]);
      return l.truthy() ? l : eval(*e.args[1]);
    }
    case ExprKind::kCompare:
      return eval_compare(e);
    case ExprKind::kCondExpr:
      if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
      if (e.args[2]) return eval(*e.args[2]);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
  }
  return Value();
}

Value Interpreter::eval_name(const Expr& e) {
  if (Value* v = scope_->find(e.name)) return *v;
  return Value::undefined("'" + e.name + "' is undefined");
}

Value Interpreter::eval_binary(const Expr& e) {
  const Value a = eval(*e.args[0]);
  const Value b = eval(*e.args[1]);
  return binary_op(*this, e.name, a, b);
}

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1]);
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") {
      ok = values_equal(left, right);
    } else if (op == "!=") {
      ok = !values_equal(left, right);
    } else if (op == "in") {
      ok = contains(right, left);
    } else if (op == "notin") {
      ok = !contains(right, left);
    } else {
      if (left.is_undefined()) throw Error(left.undefined_message());
      if (right.is_undefined()) throw Error(right.undefined_message());
      if (op == "<") {
        ok = values_less(left, right);
      } else if (op == "<=") {
        ok = !values_less(right, left);
      } else if (op == ">") {
        ok = values_less(right, left);
      } else {
        ok = !values_less(left, right);
      }
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first_arg) {
  CallArgs a;
  for (size_t i = first_arg; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i]));
  for (const auto& kw : e.kwargs) a.kw.emplace_back(kw.first, eval(*kw.second));
  return a;
}

Value Interpreter::eval_call(const Expr& e) {
  const Value callee = eval(*e.args[0]);
  CallArgs args = eval_args(e, 1);
  return call(callee, args);
}

Value Interpreter::eval_filter(const Expr& e) {
  const Value v = eval(*e.args[0]);
  CallArgs args = eval_args(e, 1);
  return apply_filter(*this, e.name, v, args);
}

Value Interpreter::eval_test(const Expr& e) {
  const Value v = eval(*e.args[0]);
  CallArgs args = eval_args(e, 1);
  return Value::boolean(apply_test(*this, e.name, v, args));
}

Value Interpreter::eval_slice(const Expr& e) {
  const Value obj = eval(*e.args[0]);
  auto bound = [&](const ExprPtr& p, const char* what) -> std::optional<int64_t> {
    if (!p) return std::nullopt;
    const Value v = eval(*p);
    if (v.is_none()) return std::nullopt;
    if (!v.is_number() || v.is_float()) {
      throw Error(std::string("slice ") + what + " must be an integer or None, not '" + py_type(v) + "'");
    }
    return v.as_int();
  };
  const auto start = bound(e.args[1], "start");
  const auto stop = bound(e.args[2], "stop");
  const int64_t step = bound(e.args[3], "step").value_or(1);
  if (step == 0) throw Error("slice step cannot be zero");
  if (obj.is_undefined()) throw Error(obj.undefined_message());
  if (!obj.is_string() && !obj.is_list()) throw Error("'" + py_type(obj) + "' object is not subscriptable");

  std::vector<size_t> offsets;  // strings slice by code point
  int64_t n;
  if (obj.is_string()) {
    offsets = utf8_offsets(obj.as_string());
    n = int64_t(offsets.size()) - 1;
  } else {
    n = int64_t(obj.as_list().items.size());
  }
  // Python's slice.indices().
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? n : n - 1;
  auto clamp = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v;
    if (x < 0) return std::max(x + n, lower);
    return std::min(x, upper);
  };
  const int64_t from = clamp(start, step > 0 ? lower : upper);
  const int64_t to = clamp(stop, step > 0 ? upper : lower);
  std::vector<int64_t> idx;
  for (int64_t i = from; step > 0 ? i < to : i > to;) {
    idx.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  add_work(idx.size());
  if (obj.is_string()) {
    const std::string& s = obj.as_string();
    std::string out;
    for (int64_t i : idx) out.append(s, offsets[size_t(i)], offsets[size_t(i) + 1] - offsets[size_t(i)]);
    return Value::string(std::move(out));
  }
  std::vector<Value> items;
  items.reserve(idx.size());
  for (int64_t i : idx) items.push_back(obj.as_list().items[size_t(i)]);
  return Value::list(std::move(items), obj.as_list().is_tuple);
}

}  // namespace dseek::jinja
