// Filters, tests and globals. Semantics follow jinja2/filters.py and jinja2/tests.py (Jinja 3.1),
// with transformers' tojson and its raise_exception/strftime_now globals.
#include "dseek/tokenizer/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <initializer_list>

#include "dseek/core/error.h"
#include "dseek/tokenizer/jinja_methods.h"

namespace dseek::jinja {

namespace {

// Argument `i` (positional) or keyword `name` of a filter/test call; `def` when absent.
Value arg(const CallArgs& a, size_t i, std::string_view name, Value def = Value()) {
  if (i < a.pos.size()) return a.pos[i];
  for (const auto& kw : a.kw) {
    if (kw.first == name) return kw.second;
  }
  return def;
}

// Rejects extra positional arguments and unknown keywords (`names` are the allowed ones, in order).
void check_args(std::string_view what, const CallArgs& a, std::initializer_list<std::string_view> names) {
  if (a.pos.size() > names.size()) {
    throw Error(std::string(what) + " takes at most " + std::to_string(names.size()) + " argument(s)");
  }
  for (const auto& kw : a.kw) {
    if (std::find(names.begin(), names.end(), kw.first) == names.end()) {
      throw Error(std::string(what) + " got an unexpected keyword argument '" + kw.first + "'");
    }
  }
}

std::string py_type(const Value& v) {
  std::string t = v.type_name();
  const auto sp = t.find(" object");
  return sp == std::string::npos ? t : t.substr(0, sp);
}

// jinja2's make_attrgetter: "a.b.0" walks attributes/items; integer parts index.
Value attr_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = numeric && part.size() < 18 ? get_item(cur, Value::integer(std::stoll(part))) : get_item(cur, Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Key function of sort/unique/min/max/dictsort: lower-cases strings unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(py_lower(v.as_string()));
  return v;
}

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return int64_t(py_len(v.as_string()));
    case Value::Kind::kList:
      return int64_t(v.as_list().items.size());
    case Value::Kind::kDict:
      return int64_t(v.as_dict().items.size());
    default:
      throw Error("object of type '" + py_type(v) + "' has no len()");
  }
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value filter_tojson(const Value& v, const CallArgs& a) {
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  check_args("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = arg(a, 0, "ensure_ascii").truthy();
  const Value indent = arg(a, 1, "indent");
  if (!indent.is_undefined() && !indent.is_none()) {
    style.pretty = true;
    style.item_sep = ",";
    if (indent.is_string()) {
      style.indent = indent.as_string();
    } else if (indent.is_number() && !indent.is_float()) {
      style.indent = std::string(size_t(std::clamp<int64_t>(indent.as_int(), 0, 1024)), ' ');
    } else {
      throw Error("tojson: indent must be an integer or a string");
    }
  }
  const Value seps = arg(a, 2, "separators");
  if (!seps.is_undefined() && !seps.is_none()) {
    if (!seps.is_list() || seps.as_list().items.size() != 2 || !seps.as_list().items[0].is_string() ||
        !seps.as_list().items[1].is_string()) {
      throw Error("tojson: separators must be a pair of strings");
    }
    style.item_sep = seps.as_list().items[0].as_string();
    style.key_sep = seps.as_list().items[1].as_string();
  }
  style.sort_keys = arg(a, 3, "sort_keys").truthy();
  return Value::string(to_json_text(v, style));
}

Value filter_indent(const Value& v, const CallArgs& a) {
  check_args("indent", a, {"width", "first", "blank"});
  const Value width = arg(a, 0, "width", Value::integer(4));
  std::string ind;
  if (width.is_string()) {
    ind = width.as_string();
  } else if (width.is_number() && !width.is_float()) {
    ind = std::string(size_t(std::clamp<int64_t>(width.as_int(), 0, 1024)), ' ');
  } else {
    throw Error("indent: width must be an integer or a string");
  }
  const bool first = arg(a, 1, "first").truthy();
  const bool blank = arg(a, 2, "blank").truthy();
  const auto lines = py_splitlines(v.str() + "\n");
  std::string rv;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) rv += "\n";
    if (i > 0 && (blank || !lines[i].empty())) rv += ind;
    rv += lines[i];
  }
  if (first) rv = ind + rv;
  return Value::string(std::move(rv));
}

// map / select / reject / selectattr / rejectattr share the "apply a test or attribute" logic.
std::vector<Value> select_items(Interpreter& in, const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    const Value at = arg(a, next++, "attribute");
    if (!at.is_string()) throw Error("selectattr/rejectattr need an attribute name");
    attr = at.as_string();
  }
  std::string test;
  CallArgs test_args;
  if (next < a.pos.size()) {
    if (!a.pos[next].is_string()) throw Error("expected a test name");
    test = a.pos[next].as_string();
    test_args.pos.assign(a.pos.begin() + long(next) + 1, a.pos.end());
    test_args.kw = a.kw;
  }
  std::vector<Value> out;
  for (const auto& item : iterate(seq)) {
    const Value subject = by_attr ? attr_path(item, attr) : item;
    CallArgs ta = test_args;
    const bool ok = test.empty() ? subject.truthy() : apply_test(in, test, subject, ta);
    if (ok == keep) out.push_back(item);
  }
  return out;
}

Value filter_map(Interpreter& in, const Value& seq, CallArgs& a) {
  std::vector<Value> out;
  if (a.pos.empty()) {
    const Value at = arg(a, 99, "attribute");
    if (!at.is_string()) throw Error("map: needs a filter name or attribute=");
    const Value def = arg(a, 99, "default");
    for (const auto& item : iterate(seq)) {
      Value v = attr_path(item, at.as_string());
      if (v.is_undefined() && !def.is_undefined()) v = def;
      out.push_back(std::move(v));
    }
    return Value::list(std::move(out));
  }
  if (!a.pos[0].is_string()) throw Error("map: filter name must be a string");
  const std::string name = a.pos[0].as_string();
  for (const auto& item : iterate(seq)) {
    CallArgs fa;
    fa.pos.assign(a.pos.begin() + 1, a.pos.end());
    fa.kw = a.kw;
    out.push_back(apply_filter(in, name, item, fa));
  }
  return Value::list(std::move(out));
}

Value sorted_list(const Value& seq, const CallArgs& a, bool reverse_default) {
  check_args("sort", a, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = arg(a, 0, "reverse", Value::boolean(reverse_default)).truthy();
  const bool cs = arg(a, 1, "case_sensitive").truthy();
  const Value attribute = arg(a, 2, "attribute");
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& item : iterate(seq)) {
    const Value k = attribute.is_string() ? attr_path(item, attribute.as_string()) : item;
    keyed.emplace_back(sort_key(k, cs), item);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? values_less(y.first, x.first) : values_less(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value min_max(const Value& seq, const CallArgs& a, bool want_max) {
  check_args(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  const bool cs = arg(a, 0, "case_sensitive").truthy();
  const Value attribute = arg(a, 1, "attribute");
  Value best, best_key;
  bool have = false;
  for (const auto& item : iterate(seq)) {
    const Value k = sort_key(attribute.is_string() ? attr_path(item, attribute.as_string()) : item, cs);
    if (!have || (want_max ? values_less(best_key, k) : values_less(k, best_key))) {
      best = item;
      best_key = k;
      have = true;
    }
  }
  if (!have) return Value::undefined(std::string("No aggregated item, sequence was empty."));
  return best;
}

Value to_int(const Value& v, const Value& def, int base) {
  if (v.is_number()) return v.is_float() ? Value::integer(int64_t(std::trunc(v.as_double()))) : Value::integer(v.as_int());
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
    std::string digits;
    for (char c : s) {
      if (c != '_') digits += c;
    }
    if (!digits.empty()) {
      char* end = nullptr;
      errno = 0;
      const long long i = std::strtoll(digits.c_str(), &end, base);
      if (*end == 0 && errno == 0) return Value::integer(i);
      const double d = std::strtod(digits.c_str(), &end);
      if (*end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(int64_t(std::trunc(d)));
    }
  }
  return def;
}

Value to_float(const Value& v, const Value& def) {
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
    if (!s.empty()) {
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (*end == 0) return Value::number(d);
    }
  }
  return def;
}

Value filter_round(const Value& v, const CallArgs& a) {
  check_args("round", a, {"precision", "method"});
  const Value p = arg(a, 0, "precision", Value::integer(0));
  const Value m = arg(a, 1, "method", Value::string("common"));
  if (!v.is_number()) throw Error("round: expected a number, got " + py_type(v));
  const int64_t prec = std::clamp<int64_t>(p.is_number() ? p.as_int() : 0, -308, 308);
  const std::string method = m.is_string() ? m.as_string() : "";
  const double scale = std::pow(10.0, double(prec));
  if (method == "common") {
    if (!v.is_float()) return Value::integer(v.as_int());
    return Value::number(std::nearbyint(v.as_double() * scale) / scale);  // round half to even, as Python
  }
  if (method == "ceil") return Value::number(std::ceil(v.as_double() * scale) / scale);
  if (method == "floor") return Value::number(std::floor(v.as_double() * scale) / scale);
  throw Error("method must be common, ceil or floor");
}

Value join_values(Interpreter& in, const Value& seq, const CallArgs& a) {
  check_args("join", a, {"d", "attribute"});
  const Value d = arg(a, 0, "d", Value::string(""));
  const Value attribute = arg(a, 1, "attribute");
  const std::string sep = d.str();
  std::string out;
  bool first = true;
  for (const auto& item : iterate(seq)) {
    if (!first) out += sep;
    first = false;
    out += (attribute.is_string() ? attr_path(item, attribute.as_string()) : item).str();
    in.check_size(out.size());
  }
  in.add_work(out.size());
  return Value::string(std::move(out));
}

// "%s %d" % args, the `format` filter.
std::string printf_format(const std::string& fmt, const std::vector<Value>& args) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (i + 1 >= fmt.size()) throw Error("incomplete format");
    const char c = fmt[++i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (next >= args.size()) throw Error("not enough arguments for format string");
    const Value& v = args[next++];
    if (c == 's') {
      out += v.str();
    } else if (c == 'r') {
      out += v.repr();
    } else if (c == 'd' || c == 'i') {
      if (!v.is_number()) throw Error("%d format: a real number is required, not " + py_type(v));
      out += std::to_string(v.is_float() ? int64_t(std::trunc(v.as_double())) : v.as_int());
    } else {
      throw Error(std::string("unsupported format character '") + c + "'");
    }
  }
  if (next < args.size()) throw Error("not all arguments converted during string formatting");
  return out;
}

}  // namespace

namespace {
constexpr std::string_view kFilters[] = {
    "tojson", "trim",   "length",   "count",     "string",      "safe",   "join",     "default", "d",
    "first",  "last",   "upper",    "lower",     "title",       "capitalize", "replace", "items", "list",
    "reverse", "selectattr", "rejectattr", "select", "reject", "map", "sort", "unique", "dictsort",
    "min",    "max",    "sum",      "abs",       "int",         "float",  "round",    "indent",  "escape",
    "e",      "forceescape", "attr", "format",   "wordcount"};
constexpr std::string_view kTests[] = {
    "defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number", "integer",
    "float",   "boolean",   "true", "false",  "callable", "escaped", "odd",      "even",   "divisibleby",
    "lower",   "upper",     "eq",   "equalto", "==",     "ne",      "!=",       "lt",     "lessthan",
    "<",       "le",        "<=",   "gt",     "greaterthan", ">",   "ge",       ">=",     "in",
    "sameas"};
}  // namespace

bool is_known_filter(std::string_view name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

bool is_known_test(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

Value apply_filter(Interpreter& in, std::string_view name, const Value& v, CallArgs& a) {
  if (name == "tojson") return filter_tojson(v, a);
  if (name == "trim") {
    check_args("trim", a, {"chars"});
    const Value chars = arg(a, 0, "chars");
    return Value::string(py_strip(v.str(), chars.is_string() ? std::optional<std::string>(chars.as_string())
                                                             : std::nullopt, true, true));
  }
  if (name == "length" || name == "count") return Value::integer(length_of(v));
  if (name == "string") return Value::string(v.str());
  if (name == "safe") return v;
  if (name == "join") return join_values(in, v, a);
  if (name == "default" || name == "d") {
    check_args("default", a, {"default_value", "boolean"});
    const bool boolean = arg(a, 1, "boolean").truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value::string(""));
    return v;
  }
  if (name == "first" || name == "last") {
    if (v.is_undefined()) return Value::undefined("No " + std::string(name) + " item, sequence was empty.");
    const auto items = iterate(v);
    if (items.empty()) return Value::undefined("No " + std::string(name) + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "upper") return Value::string(py_upper(v.str()));
  if (name == "lower") return Value::string(py_lower(v.str()));
  if (name == "title") return Value::string(py_title(v.str()));
  if (name == "capitalize") return Value::string(py_capitalize(v.str()));
  if (name == "replace") {
    check_args("replace", a, {"old", "new", "count"});
    const Value old = arg(a, 0, "old"), repl = arg(a, 1, "new"), count = arg(a, 2, "count");
    if (!old.is_string() || !repl.is_string()) throw Error("replace: old and new must be strings");
    const std::string s = v.str();
    const int64_t n = count.is_number() ? count.as_int() : -1;
    const uint64_t bound = uint64_t(s.size() + 1) * (repl.as_string().size() + 1) + s.size();
    in.check_size(old.as_string().empty() || repl.as_string().size() > old.as_string().size() ? size_t(std::min<uint64_t>(bound, SIZE_MAX)) : s.size());
    return Value::string(py_replace(s, old.as_string(), repl.as_string(), n));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) throw Error("Can only get item pairs from a mapping.");
    std::vector<Value> items;
    for (const auto& kv : v.as_dict().items) items.push_back(Value::list({kv.first, kv.second}, true));
    return Value::list(std::move(items));
  }
  if (name == "list") return Value::list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::string out;
      const auto offs = utf8_offsets(v.as_string());
      for (size_t i = offs.size() - 1; i > 0; --i) out.append(v.as_string(), offs[i - 1], offs[i] - offs[i - 1]);
      return Value::string(std::move(out));
    }
    auto items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "selectattr" || name == "rejectattr") {
    return Value::list(select_items(in, v, a, true, name == "selectattr"));
  }
  if (name == "select" || name == "reject") return Value::list(select_items(in, v, a, false, name == "select"));
  if (name == "map") return filter_map(in, v, a);
  if (name == "sort") return sorted_list(v, a, false);
  if (name == "unique") {
    check_args("unique", a, {"case_sensitive", "attribute"});
    const bool cs = arg(a, 0, "case_sensitive").truthy();
    const Value attribute = arg(a, 1, "attribute");
    std::vector<Value> out, seen;
    for (const auto& item : iterate(v)) {
      const Value k = sort_key(attribute.is_string() ? attr_path(item, attribute.as_string()) : item, cs);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, k); })) {
        seen.push_back(k);
        out.push_back(item);
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "dictsort") {
    check_args("dictsort", a, {"case_sensitive", "by", "reverse"});
    if (!v.is_dict()) throw Error("dictsort: expected a mapping, got " + py_type(v));
    const bool cs = arg(a, 0, "case_sensitive").truthy();
    const Value by = arg(a, 1, "by", Value::string("key"));
    const bool reverse = arg(a, 2, "reverse").truthy();
    const bool by_value = by.is_string() && by.as_string() == "value";
    std::vector<std::pair<Value, Value>> items(v.as_dict().items.begin(), v.as_dict().items.end());
    std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
      const Value kx = sort_key(by_value ? x.second : x.first, cs);
      const Value ky = sort_key(by_value ? y.second : y.first, cs);
      return reverse ? values_less(ky, kx) : values_less(kx, ky);
    });
    std::vector<Value> out;
    for (auto& kv : items) out.push_back(Value::list({kv.first, kv.second}, true));
    return Value::list(std::move(out));
  }
  if (name == "min" || name == "max") return min_max(v, a, name == "max");
  if (name == "sum") {
    check_args("sum", a, {"attribute", "start"});
    const Value attribute = arg(a, 0, "attribute");
    Value total = arg(a, 1, "start", Value::integer(0));
    for (const auto& item : iterate(v)) {
      total = binary_op(in, "+", total, attribute.is_string() ? attr_path(item, attribute.as_string()) : item);
    }
    return total;
  }
  if (name == "abs") {
    if (!v.is_number()) throw Error("bad operand type for abs(): '" + py_type(v) + "'");
    if (v.is_float()) return Value::number(std::fabs(v.as_double()));
    if (v.as_int() == INT64_MIN) throw Error("integer overflow");
    return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (name == "int") {
    check_args("int", a, {"default", "base"});
    const Value base = arg(a, 1, "base", Value::integer(10));
    const int b = base.is_number() ? int(std::clamp<int64_t>(base.as_int(), 0, 36)) : 10;
    return to_int(v, arg(a, 0, "default", Value::integer(0)), b == 1 ? 10 : b);
  }
  if (name == "float") {
    check_args("float", a, {"default"});
    return to_float(v, arg(a, 0, "default", Value::number(0.0)));
  }
  if (name == "round") return filter_round(v, a);
  if (name == "indent") return filter_indent(v, a);
  if (name == "escape" || name == "e" || name == "forceescape") return Value::string(html_escape(v.str()));
  if (name == "attr") {
    check_args("attr", a, {"name"});
    const Value n = arg(a, 0, "name");
    if (!n.is_string()) throw Error("attr: name must be a string");
    // Attribute only: on a dict that means its methods, never its keys.
    Value r = get_attr(v, n.as_string());
    if (v.is_dict() && !r.is_callable()) return Value::undefined("'dict object' has no attribute '" + n.as_string() + "'");
    return r;
  }
  if (name == "format") return Value::string(printf_format(v.str(), a.pos));
  if (name == "wordcount") return Value::integer(int64_t(py_split(v.str(), std::nullopt, -1, false).size()));
  throw Error("no filter named '" + std::string(name) + "'");
}

bool apply_test(Interpreter& in, std::string_view name, const Value& v, CallArgs& a) {
  static constexpr std::string_view kOneArg[] = {"divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan",
                                                 "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas"};
  const bool one_arg = std::find(std::begin(kOneArg), std::end(kOneArg), name) != std::end(kOneArg);
  if (a.pos.size() + a.kw.size() > (one_arg ? 1u : 0u)) {
    throw Error("test '" + std::string(name) + "' takes " + (one_arg ? "1 argument" : "no arguments") + " but " +
                std::to_string(a.pos.size() + a.kw.size()) + " were given");
  }
  auto other = [&]() -> const Value& {
    if (a.pos.empty()) throw Error("test '" + std::string(name) + "' needs an argument");
    return a.pos[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "sequence") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_number() || v.is_float()) throw Error("test '" + std::string(name) + "' needs an integer");
    if (name == "divisibleby") {
      const Value& d = other();
      if (!d.is_number() || d.is_float() || d.as_int() == 0) throw Error("divisibleby needs a non-zero integer");
      return d.as_int() == -1 || v.as_int() % d.as_int() == 0;
    }
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    CallArgs none;
    return get_attr(v, name == "lower" ? "islower" : "isupper").as_callable().fn(in, none).truthy();
  }
  if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, other());
  if (name == "ne" || name == "!=") return !values_equal(v, other());
  if (name == "lt" || name == "lessthan" || name == "<") return values_less(v, other());
  if (name == "le" || name == "<=") return !values_less(other(), v);
  if (name == "gt" || name == "greaterthan" || name == ">") return values_less(other(), v);
  if (name == "ge" || name == ">=") return !values_less(v, other());
  if (name == "in") return contains(other(), v);
  if (name == "sameas") {
    const Value& o = other();
    if (v.kind() != o.kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool()) return v.as_bool() == o.as_bool();
    if (v.is_namespace()) return &v.as_namespace() == &o.as_namespace();
    return values_equal(v, o) && (v.is_int() || v.is_float());  // small ints/floats: CPython caches; close enough
  }
  throw Error("no test named '" + std::string(name) + "'");
}

Globals make_builtin_globals() {
  Globals g;
  g["range"] = Value::callable("range", [](Interpreter& in, CallArgs& a) {
    std::vector<int64_t> p;
    for (const auto& v : a.pos) {
      if (!v.is_number() || v.is_float()) throw Error("range() arguments must be integers");
      p.push_back(v.as_int());
    }
    if (p.empty() || p.size() > 3 || !a.kw.empty()) throw Error("range expected 1 to 3 integer arguments");
    const int64_t start = p.size() == 1 ? 0 : p[0];
    const int64_t stop = p.size() == 1 ? p[0] : p[1];
    const int64_t step = p.size() == 3 ? p[2] : 1;
    if (step == 0) throw Error("range() arg 3 must not be zero");
    // Sandbox limit, as jinja2.sandbox.MAX_RANGE.
    constexpr int64_t kMaxRange = 100000;
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      if (int64_t(items.size()) >= kMaxRange) {
        throw Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      }
      items.push_back(Value::integer(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    in.add_work(items.size());
    return Value::list(std::move(items));
  });
  g["dict"] = Value::callable("dict", [](Interpreter&, CallArgs& a) {
    std::vector<std::pair<Value, Value>> items;
    if (!a.pos.empty()) {
      if (a.pos.size() > 1 || !a.pos[0].is_dict()) throw Error("dict() accepts one mapping and keyword arguments");
      items = a.pos[0].as_dict().items;
    }
    for (const auto& kw : a.kw) items.emplace_back(Value::string(kw.first), kw.second);
    return Value::dict(std::move(items));
  });
  g["namespace"] = Value::callable("namespace", [](Interpreter&, CallArgs& a) {
    auto ns = std::make_shared<Namespace>();
    auto set = [&](const std::string& k, const Value& v) {
      ns->depth = std::max(ns->depth, v.depth() + 1);
      if (Value* slot = ns->find(k)) {
        *slot = v;
      } else {
        ns->attrs.emplace_back(k, v);
      }
    };
    if (!a.pos.empty()) {
      if (a.pos.size() > 1 || !a.pos[0].is_dict()) throw Error("namespace() accepts one mapping and keyword arguments");
      for (const auto& kv : a.pos[0].as_dict().items) {
        if (!kv.first.is_string()) throw Error("namespace() keys must be strings");
        set(kv.first.as_string(), kv.second);
      }
    }
    for (const auto& kw : a.kw) set(kw.first, kw.second);
    if (ns->depth > kMaxValueDepth) throw Error("value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
    return Value::ns(std::move(ns));
  });
  g["raise_exception"] = Value::callable("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
    throw Error("template raised an exception: " + (a.pos.empty() ? std::string() : a.pos[0].str()));
  });
  g["strftime_now"] = Value::callable("strftime_now", [](Interpreter&, CallArgs& a) {
    if (a.pos.size() != 1 || !a.pos[0].is_string()) throw Error("strftime_now(format) needs one string");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    const size_t n = std::strftime(buf, sizeof(buf), a.pos[0].as_string().c_str(), &tm);
    return Value::string(std::string(buf, n));
  });
  return g;
}

}  // namespace dseek::jinja
