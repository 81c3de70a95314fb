#include "dseek/tokenizer/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "dseek/core/error.h"
#include "dseek/tokenizer/jinja_builtins.h"
#include "dseek/tokenizer/jinja_lexer.h"

namespace dseek::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& label) : toks_(std::move(tokens)), label_(label) {}

  Body parse_all() {
    Body body = parse_body({});
    if (cur().kind != TokKind::kEof) fail("unexpected tag");
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const Token& t, std::string_view op) const { return t.kind == TokKind::kOp && t.text == op; }
  bool is_name(const Token& t, std::string_view n) const { return t.kind == TokKind::kName && t.text == n; }
  bool at_op(std::string_view op) const { return is_op(cur(), op); }
  bool at_name(std::string_view n) const { return is_name(cur(), n); }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokKind::kData:
        return "template data";
      case TokKind::kVarBegin:
        return "'{{'";
      case TokKind::kVarEnd:
        return "end of print statement";
      case TokKind::kBlockBegin:
        return "'{%'";
      case TokKind::kBlockEnd:
        return "end of statement block";
      case TokKind::kEof:
        return "end of template";
      case TokKind::kString:
        return "string";
      default:
        return "'" + t.text + "'";
    }
  }

  [[noreturn]] void fail_at(const Token& t, const std::string& msg) const {
    throw Error(label_ + ":" + std::to_string(t.line) + ":" + std::to_string(t.col) + ": " + msg);
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_at(cur(), msg); }

  void expect_op(std::string_view op) {
    if (!at_op(op)) fail("expected '" + std::string(op) + "', got " + describe(cur()));
    advance();
  }
  void expect_kind(TokKind k, const char* what) {
    if (cur().kind != k) fail(std::string("expected ") + what + ", got " + describe(cur()));
    advance();
  }
  std::string expect_name() {
    if (cur().kind != TokKind::kName) fail("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    advance();
    return n;
  }

  // Recursion guard for nested expressions and blocks.
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxAstDepth) p.fail("template nested too deeply (limit " + std::to_string(kMaxAstDepth) + ")");
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprPtr node(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // Sets the depth of a finished composite node; trees deeper than kMaxAstDepth are refused
  // (left-associative chains like 1+1+...+1 grow without recursion in the parser).
  ExprPtr finish(ExprPtr e) {
    int d = 0;
    for (const auto& a : e->args) {
      if (a) d = std::max(d, a->depth);
    }
    for (const auto& kv : e->kwargs) d = std::max(d, kv.second->depth);
    e->depth = d + 1;
    if (e->depth > kMaxAstDepth) {
      throw Error(label_ + ":" + std::to_string(e->line) + ":" + std::to_string(e->col) +
                  ": expression nested too deeply (limit " + std::to_string(kMaxAstDepth) + ")");
    }
    return e;
  }

  ExprPtr unary(ExprKind kind, const Token& at, ExprPtr operand) {
    auto e = node(kind, at);
    e->args.push_back(std::move(operand));
    return finish(std::move(e));
  }

  ExprPtr binary(ExprKind kind, const Token& at, ExprPtr l, ExprPtr r, std::string name = {}) {
    auto e = node(kind, at);
    e->name = std::move(name);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return finish(std::move(e));
  }

  // ---- statements ----

  // Parses until a block tag whose name is in `end_names` (left unconsumed, at the tag name) or EOF.
  Body parse_body(std::initializer_list<std::string_view> end_names) {
    DepthGuard g(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokKind::kEof) {
        if (end_names.size()) {
          std::string expected;
          for (auto e : end_names) expected += (expected.empty() ? "'" : " or '") + std::string(e) + "'";
          fail("unexpected end of template, expected " + expected);
        }
        return body;
      }
      if (t.kind == TokKind::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == TokKind::kVarBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = t.line;
        s->expr = parse_tuple(false, {});
        expect_kind(TokKind::kVarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.kind == TokKind::kBlockBegin) {
        const Token& name = peek();
        if (name.kind != TokKind::kName) {
          advance();
          fail("expected a tag name, got " + describe(cur()));
        }
        for (auto e : end_names) {
          if (name.text == e) {
            advance();  // leave the parser at the tag name
            return body;
          }
        }
        advance();
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    const std::string& tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "filter") return parse_filter_block();
    if (tag == "generation") return parse_generation();
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a for loop");
      auto s = std::make_unique<Stmt>();
      s->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      s->line = t.line;
      advance();
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      return s;
    }
    static constexpr std::string_view kEnds[] = {"elif", "else", "endif", "endfor", "endset", "endmacro",
                                                 "endfilter", "endgeneration", "endraw"};
    for (auto e : kEnds) {
      if (tag == e) fail("unexpected '" + tag + "' tag");
    }
    fail("unsupported tag '" + tag + "' (see docs/chat_template.md for the supported subset)");
  }

  StmtPtr parse_if() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kIf;
    s->line = cur().line;
    advance();
    while (true) {
      ExprPtr cond = parse_tuple(false, {});
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      Body body = parse_body({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      const std::string tag = cur().text;
      advance();
      if (tag == "elif") continue;
      if (tag == "else") {
        expect_kind(TokKind::kBlockEnd, "end of statement block");
        s->else_body = parse_body({"endif"});
        advance();
      }
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      return s;
    }
  }

  std::vector<std::string> parse_targets(std::string_view end_name) {
    std::vector<std::string> targets;
    const bool paren = at_op("(");
    if (paren) advance();
    while (true) {
      targets.push_back(expect_name());
      if (!at_op(",")) break;
      advance();
      if ((paren && at_op(")")) || at_name(end_name)) break;
    }
    if (paren) expect_op(")");
    return targets;
  }

  StmtPtr parse_for() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kFor;
    s->line = cur().line;
    advance();
    s->targets = parse_targets("in");
    if (!at_name("in")) fail("expected 'in', got " + describe(cur()));
    advance();
    s->expr = parse_tuple(false, {"if", "recursive"}, /*with_condexpr=*/false);
    if (at_name("if")) {
      advance();
      s->cond = parse_expression(true);
    }
    if (at_name("recursive")) fail("recursive for loops are not supported");
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"});
    --loop_depth_;
    if (cur().text == "else") {
      advance();
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      s->else_body = parse_body({"endfor"});
    }
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    return s;
  }

  StmtPtr parse_set() {
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    advance();
    if (cur().kind == TokKind::kName && is_op(peek(), ".")) {
      s->kind = StmtKind::kSet;
      s->name = expect_name();
      advance();
      s->attr = expect_name();
      expect_op("=");
      s->expr = parse_tuple(false, {});
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      return s;
    }
    s->targets = parse_targets("");
    if (at_op("=")) {
      advance();
      s->kind = StmtKind::kSet;
      s->expr = parse_tuple(false, {});
      expect_kind(TokKind::kBlockEnd, "end of statement block");
      return s;
    }
    if (s->targets.size() != 1) fail("expected '=' in a set statement with several targets");
    if (at_op("|")) fail("filters on block set are not supported");
    s->kind = StmtKind::kSetBlock;
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    s->body = parse_body({"endset"});
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    return s;
  }

  StmtPtr parse_macro() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kMacro;
    s->line = cur().line;
    advance();
    s->name = expect_name();
    expect_op("(");
    while (!at_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (at_op(")")) break;
      std::string pname = expect_name();
      ExprPtr def;
      if (at_op("=")) {
        advance();
        def = parse_expression(true);
      } else if (!s->params.empty() && s->params.back().second) {
        fail("non-default argument follows default argument");
      }
      s->params.emplace_back(std::move(pname), std::move(def));
    }
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_body({"endmacro"});
    loop_depth_ = saved;
    advance();
    if (cur().kind == TokKind::kName) advance();  // {% endmacro name %}
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kFilterBlock;
    s->line = cur().line;
    const Token& at = cur();
    advance();
    ExprPtr placeholder = node(ExprKind::kLiteral, at);
    placeholder->literal = Value::none();
    s->expr = parse_filter_chain(std::move(placeholder), /*first_required=*/true);
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    s->body = parse_body({"endfilter"});
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    return s;
  }

  StmtPtr parse_generation() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kScope;
    s->line = cur().line;
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    s->body = parse_body({"endgeneration"});
    advance();
    expect_kind(TokKind::kBlockEnd, "end of statement block");
    return s;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
    const Token& t = cur();
    if (t.kind == TokKind::kVarEnd || t.kind == TokKind::kBlockEnd || is_op(t, ")")) return true;
    for (auto e : extra_end) {
      if (is_name(t, e)) return true;
    }
    return false;
  }

  ExprPtr parse_tuple(bool explicit_parens, std::initializer_list<std::string_view> extra_end,
                      bool with_condexpr = true) {
    const Token& start = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (at_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail("expected an expression, got " + describe(cur()));
    }
    auto e = node(ExprKind::kTuple, start);
    e->args = std::move(items);
    return finish(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard g(*this);
    if (!with_condexpr) return parse_or();
    ExprPtr expr = parse_or();
    while (at_name("if")) {
      const Token& at = cur();
      advance();
      ExprPtr cond = parse_or();
      ExprPtr else_expr;
      if (at_name("else")) {
        advance();
        else_expr = parse_expression(true);
      }
      auto e = node(ExprKind::kCondExpr, at);
      e->args.push_back(std::move(expr));
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(else_expr));
      expr = finish(std::move(e));
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const Token& at = cur();
      advance();
      left = binary(ExprKind::kOr, at, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const Token& at = cur();
      advance();
      left = binary(ExprKind::kAnd, at, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard g(*this);
      const Token& at = cur();
      advance();
      return unary(ExprKind::kNot, at, parse_not());
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = cur();
    ExprPtr first = parse_math1();
    std::vector<ExprPtr> operands;
    std::vector<std::string> ops;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokKind::kOp &&
          (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">=")) {
        ops.push_back(t.text);
        advance();
      } else if (is_name(t, "in")) {
        ops.push_back("in");
        advance();
      } else if (is_name(t, "not") && is_name(peek(), "in")) {
        ops.push_back("notin");
        advance();
        advance();
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto e = node(ExprKind::kCompare, start);
    e->args.push_back(std::move(first));
    for (auto& o : operands) e->args.push_back(std::move(o));
    e->ops = std::move(ops);
    return finish(std::move(e));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& at = cur();
      const std::string op = at.text;
      advance();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_concat(), op);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (at_op("~")) {
      const Token& at = cur();
      advance();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_math2(), "~");
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& at = cur();
      const std::string op = at.text;
      advance();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_pow(), op);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      const Token& at = cur();
      advance();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_unary(true), "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    const Token& at = cur();
    ExprPtr e;
    if (at_op("-")) {
      advance();
      e = unary(ExprKind::kNeg, at, parse_unary(false));
    } else if (at_op("+")) {
      advance();
      e = unary(ExprKind::kPos, at, parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_chain(std::move(e), false);
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    switch (t.kind) {
      case TokKind::kName: {
        auto e = node(ExprKind::kLiteral, t);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::none();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.text;
        }
        advance();
        return e;
      }
      case TokKind::kString: {
        auto e = node(ExprKind::kLiteral, t);
        std::string s;
        while (cur().kind == TokKind::kString) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        e->literal = Value::string(std::move(s));
        return e;
      }
      case TokKind::kInt: {
        auto e = node(ExprKind::kLiteral, t);
        e->literal = Value::integer(t.int_value);
        advance();
        return e;
      }
      case TokKind::kFloat: {
        auto e = node(ExprKind::kLiteral, t);
        e->literal = Value::number(t.float_value);
        advance();
        return e;
      }
      case TokKind::kOp:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(true, {});
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    auto e = node(ExprKind::kList, cur());
    advance();
    while (!at_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (at_op("]")) break;
      e->args.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_dict() {
    auto e = node(ExprKind::kDict, cur());
    advance();
    while (!at_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (at_op("}")) break;
      e->args.push_back(parse_expression(true));
      expect_op(":");
      e->args.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token& t = cur();
      if (is_op(t, ".")) {
        advance();
        const Token& a = cur();
        if (a.kind == TokKind::kName) {
          auto g = node(ExprKind::kGetAttr, t);
          g->name = a.text;
          g->args.push_back(std::move(e));
          e = finish(std::move(g));
        } else if (a.kind == TokKind::kInt) {
          auto key = node(ExprKind::kLiteral, a);
          key->literal = Value::integer(a.int_value);
          e = binary(ExprKind::kGetItem, t, std::move(e), std::move(key));
        } else {
          fail("expected name or number");
        }
        advance();
      } else if (is_op(t, "[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op(t, "(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    const Token& at = cur();
    advance();
    std::vector<ExprPtr> subs;
    bool any_slice = false;
    ExprPtr slice_node;
    while (!at_op("]")) {
      if (!subs.empty()) expect_op(",");
      // start? [: stop? [: step?]]
      ExprPtr start, stop, step;
      bool is_slice = false;
      if (!at_op(":")) start = parse_expression(true);
      if (at_op(":")) {
        is_slice = true;
        advance();
        if (!at_op(":") && !at_op("]") && !at_op(",")) stop = parse_expression(true);
        if (at_op(":")) {
          advance();
          if (!at_op("]") && !at_op(",")) step = parse_expression(true);
        }
      }
      if (is_slice) {
        any_slice = true;
        auto s = node(ExprKind::kSlice, at);
        s->args.push_back(nullptr);  // object, filled below
        s->args.push_back(std::move(start));
        s->args.push_back(std::move(stop));
        s->args.push_back(std::move(step));
        subs.push_back(std::move(s));
      } else {
        subs.push_back(std::move(start));
      }
    }
    advance();
    if (subs.empty()) {  // a[] is a lookup with an empty tuple, as in jinja2
      auto key = node(ExprKind::kTuple, at);
      return binary(ExprKind::kGetItem, at, std::move(obj), finish(std::move(key)));
    }
    if (subs.size() == 1 && subs[0]->kind == ExprKind::kSlice && any_slice) {
      subs[0]->args[0] = std::move(obj);
      return finish(std::move(subs[0]));
    }
    if (any_slice) fail_at(at, "multi-dimensional slices are not supported");
    ExprPtr key;
    if (subs.size() == 1) {
      key = std::move(subs[0]);
    } else {
      key = node(ExprKind::kTuple, at);
      key->args = std::move(subs);
      key = finish(std::move(key));
    }
    return binary(ExprKind::kGetItem, at, std::move(obj), std::move(key));
  }

  // ( args ) appended to e->args / e->kwargs.
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (at_op(")")) break;
      if (at_op("*") || at_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().kind == TokKind::kName && is_op(peek(), "=")) {
        std::string key = cur().text;
        advance();
        advance();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument follows keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::kCall, cur());
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return finish(std::move(e));
  }

  std::string parse_dotted_name() {
    std::string n = expect_name();
    while (at_op(".")) {
      advance();
      n += "." + expect_name();
    }
    return n;
  }

  ExprPtr parse_filter_chain(ExprPtr e, bool first_required) {
    bool need_pipe = !first_required;
    while (true) {
      if (!need_pipe || at_op("|")) {
        const Token& at = cur();
        if (need_pipe) advance();
        need_pipe = true;
        auto f = node(ExprKind::kFilter, at);
        const Token& name_tok = cur();
        f->name = parse_dotted_name();
        if (!is_known_filter(f->name)) fail_at(name_tok, "no filter named '" + f->name + "'");
        f->args.push_back(std::move(e));
        if (at_op("(")) parse_call_args(*f);
        e = finish(std::move(f));
      } else if (at_name("is")) {
        e = parse_test(std::move(e));
      } else if (at_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_test(ExprPtr value) {
    const Token& at = cur();
    advance();
    bool negated = false;
    if (at_name("not")) {
      negated = true;
      advance();
    }
    auto t = node(ExprKind::kTest, at);
    const Token& name_tok = cur();
    t->name = parse_dotted_name();
    if (!is_known_test(t->name)) fail_at(name_tok, "no test named '" + t->name + "'");
    t->args.push_back(std::move(value));
    const Token& c = cur();
    if (is_op(c, "(")) {
      parse_call_args(*t);
    } else if ((c.kind == TokKind::kName || c.kind == TokKind::kString || c.kind == TokKind::kInt ||
                c.kind == TokKind::kFloat || is_op(c, "[") || is_op(c, "{")) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
      if (is_name(c, "is")) fail("You cannot chain multiple tests with is");
      DepthGuard g(*this);
      t->args.push_back(parse_postfix(parse_primary()));
    }
    ExprPtr e = finish(std::move(t));
    if (negated) e = unary(ExprKind::kNot, at, std::move(e));
    return e;
  }

  std::vector<Token> toks_;
  const std::string& label_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::shared_ptr<const Template> parse_template(std::string_view source, const std::string& label) {
  auto t = std::make_shared<Template>();
  t->label = label;
  Parser p(tokenize(source, label), t->label);
  t->body = p.parse_all();
  return t;
}

}  // namespace dseek::jinja
