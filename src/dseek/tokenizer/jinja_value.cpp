#include "dseek/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "dseek/core/error.h"

namespace dseek::jinja {

// ---- UTF-8 ----------------------------------------------------------------------------------

size_t utf8_next(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
  if (i + len > s.size()) return i + 1;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i + 1;
  }
  return i + len;
}

uint32_t utf8_decode_at(std::string_view s, size_t i) {
  const size_t end = utf8_next(s, i);
  const auto b = static_cast<unsigned char>(s[i]);
  if (end == i + 1) return b;
  uint32_t cp = end - i == 2 ? (b & 0x1F) : end - i == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = i + 1; k < end; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3F);
  return cp;
}

std::vector<size_t> utf8_offsets(std::string_view s) {
  std::vector<size_t> offs;
  offs.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) offs.push_back(i);
  offs.push_back(s.size());
  return offs;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

bool py_isspace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// ---- construction ---------------------------------------------------------------------------

Value Value::undefined(std::string message) {
  return Value(Payload(std::in_place_index<0>, UndefinedTag{std::make_shared<const std::string>(std::move(message))}));
}

Value Value::string(std::string s) {
  return Value(Payload(std::in_place_index<5>, std::make_shared<const std::string>(std::move(s))));
}

namespace {
void check_depth(int depth) {
  if (depth > kMaxValueDepth) {
    throw Error("value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  }
}
}  // namespace

Value Value::list(std::vector<Value> items, bool is_tuple) {
  auto d = std::make_shared<ListData>();
  for (const auto& v : items) {
    d->has_ns = d->has_ns || v.has_ns();
    d->depth = std::max(d->depth, v.depth() + 1);
  }
  check_depth(d->depth);
  d->items = std::move(items);
  d->is_tuple = is_tuple;
  return Value(Payload(std::in_place_index<6>, std::shared_ptr<const ListData>(std::move(d))));
}

Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  auto d = std::make_shared<DictData>();
  d->items.reserve(items.size());
  for (auto& kv : items) {
    d->has_ns = d->has_ns || kv.second.has_ns();
    d->depth = std::max(d->depth, kv.second.depth() + 1);
    bool replaced = false;
    for (auto& existing : d->items) {
      if (values_equal(existing.first, kv.first)) {
        existing.second = std::move(kv.second);
        replaced = true;
        break;
      }
    }
    if (!replaced) d->items.push_back(std::move(kv));
  }
  check_depth(d->depth);
  return Value(Payload(std::in_place_index<7>, std::shared_ptr<const DictData>(std::move(d))));
}

Value Value::dict_unique_keys(std::vector<std::pair<Value, Value>> items) {
  auto d = std::make_shared<DictData>();
  for (const auto& kv : items) {
    d->has_ns = d->has_ns || kv.second.has_ns();
    d->depth = std::max(d->depth, kv.second.depth() + 1);
  }
  check_depth(d->depth);
  d->items = std::move(items);
  return Value(Payload(std::in_place_index<7>, std::shared_ptr<const DictData>(std::move(d))));
}

Value Value::callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn, bool has_ns) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  c->has_ns = has_ns;
  return Value(Payload(std::in_place_index<9>, std::shared_ptr<const Callable>(std::move(c))));
}

namespace {
template <class Json>
Value from_json_at(const Json& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case Json::value_t::null:
      return Value::none();
    case Json::value_t::boolean:
      return Value::boolean(j.template get<bool>());
    case Json::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u <= uint64_t(INT64_MAX)) return Value::integer(int64_t(u));
      return Value::number(double(u));
    }
    case Json::value_t::number_float:
      return Value::number(j.template get<double>());
    case Json::value_t::string:
      return Value::string(j.template get<std::string>());
    case Json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::list(std::move(items));
    }
    case Json::value_t::object: {
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        items.emplace_back(Value::string(it.key()), from_json_at(it.value(), depth + 1));
      }
      return Value::dict(std::move(items));
    }
    default:
      throw Error("unsupported JSON value (binary or discarded) in template input");
  }
}
}  // namespace

Value Value::from_json(const nlohmann::json& j) { return from_json_at(j, 0); }
Value Value::from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

// ---- accessors ------------------------------------------------------------------------------

int64_t Value::as_int() const { return is_bool() ? int64_t(as_bool()) : std::get<3>(v_); }

double Value::as_double() const {
  if (is_float()) return std::get<4>(v_);
  return double(as_int());
}

const std::string& Value::undefined_message() const {
  static const std::string kEmpty = "undefined value";
  const auto& m = std::get<0>(v_).message;
  return m ? *m : kEmpty;
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_double() != 0.0;
    case Kind::kString:
      return !as_string().empty();
    case Kind::kList:
      return !as_list().items.empty();
    case Kind::kDict:
      return !as_dict().items.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

bool Value::has_ns() const {
  switch (kind()) {
    case Kind::kList:
      return as_list().has_ns;
    case Kind::kDict:
      return as_dict().has_ns;
    case Kind::kNamespace:
      return true;
    case Kind::kCallable:
      return as_callable().has_ns;
    default:
      return false;
  }
}

int Value::depth() const {
  switch (kind()) {
    case Kind::kList:
      return as_list().depth;
    case Kind::kDict:
      return as_dict().depth;
    case Kind::kNamespace:
      return as_namespace().depth;
    default:
      return 0;
  }
}

const Value* DictData::find(const Value& key) const {
  for (const auto& kv : items) {
    if (values_equal(kv.first, key)) return &kv.second;
  }
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& kv : items) {
    if (kv.first.is_string() && kv.first.as_string() == key) return &kv.second;
  }
  return nullptr;
}

Value* Namespace::find(std::string_view name) {
  for (auto& kv : attrs) {
    if (kv.first == name) return &kv.second;
  }
  return nullptr;
}

// ---- printing -------------------------------------------------------------------------------

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  // Shortest round-trip digits, as Python's repr picks them.
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp10 = std::stoi(sci.substr(e + 1));
  std::string sign;
  if (mant[0] == '-') {
    sign = "-";
    mant.erase(0, 1);
  }
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits += c;
  }
  const int decpt = exp10 + 1;  // value = 0.digits * 10^decpt
  if (decpt <= -4 || decpt > 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    return out + eb;
  }
  std::string out = sign;
  if (decpt <= 0) {
    out += "0." + std::string(size_t(-decpt), '0') + digits;
  } else if (size_t(decpt) >= digits.size()) {
    out += digits + std::string(size_t(decpt) - digits.size(), '0') + ".0";
  } else {
    out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
  }
  return out;
}

namespace {

// Code points Python's str.isprintable() rejects that plausibly occur in chat data.
bool py_unprintable(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) ||
         (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x2064) || cp == 0x3000 || cp == 0xFEFF;
}

std::string py_str_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    const size_t next = utf8_next(s, i);
    const uint32_t cp = utf8_decode_at(s, i);
    if (cp == '\\' || cp == uint32_t(quote)) {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (py_unprintable(cp)) {
      char buf[16];
      if (cp < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(cp));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(cp));
      }
      out += buf;
    } else {
      out.append(s, i, next - i);
    }
    i = next;
  }
  out += quote;
  return out;
}

}  // namespace

std::string Value::str() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return as_string();
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return as_bool() ? "True" : "False";
    case Kind::kInt:
      return std::to_string(as_int());
    case Kind::kFloat:
      return py_float_repr(as_double());
    case Kind::kString:
      return py_str_repr(as_string());
    case Kind::kList: {
      const auto& l = as_list();
      std::string out = l.is_tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        out += l.items[i].repr();
      }
      if (l.is_tuple && l.items.size() == 1) out += ",";
      return out + (l.is_tuple ? ")" : "]");
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& kv : as_dict().items) {
        if (!first) out += ", ";
        first = false;
        out += kv.first.repr() + ": " + kv.second.repr();
      }
      return out + "}";
    }
    case Kind::kNamespace: {
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& kv : as_namespace().attrs) {
        if (!first) out += ", ";
        first = false;
        out += py_str_repr(kv.first) + ": " + kv.second.repr();
      }
      return out + "}>";
    }
    case Kind::kCallable:
      return "<function " + as_callable().name + ">";
  }
  return "";
}

std::string Value::type_name() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType object";
    case Kind::kBool:
      return "bool object";
    case Kind::kInt:
      return "int object";
    case Kind::kFloat:
      return "float object";
    case Kind::kString:
      return "str object";
    case Kind::kList:
      return as_list().is_tuple ? "tuple object" : "list object";
    case Kind::kDict:
      return "dict object";
    case Kind::kNamespace:
      return "Namespace object";
    case Kind::kCallable:
      return "function object";
  }
  return "object";
}

// ---- comparison -----------------------------------------------------------------------------

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const auto& x = a.as_list().items;
      const auto& y = b.as_list().items;
      if (a.as_list().is_tuple != b.as_list().is_tuple || x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!values_equal(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& kv : x.items) {
        const Value* other = y.find(kv.first);
        if (!other || !values_equal(kv.second, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.as_namespace() == &b.as_namespace();
    case Value::Kind::kCallable:
      return &a.as_callable() == &b.as_callable();
    default:
      return false;
  }
}

bool values_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order == code point order
  if (a.is_list() && b.is_list()) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!values_equal(x[i], y[i])) return values_less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw Error("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

// ---- tojson ---------------------------------------------------------------------------------

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (ensure_ascii && u >= 0x80) {
      const size_t next = utf8_next(s, i);
      const uint32_t cp = utf8_decode_at(s, i);
      char buf[16];
      if (cp >= 0x10000) {
        const uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", unsigned(0xD800 + (v >> 10)), unsigned(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(cp));
      }
      out += buf;
      i = next - 1;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(u));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return py_float_repr(d);
}

// json.dumps converts non-string keys: True -> "true", None -> "null", 1 -> "1".
std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::kString:
      return k.as_string();
    case Value::Kind::kNone:
      return "null";
    case Value::Kind::kBool:
      return k.as_bool() ? "true" : "false";
    case Value::Kind::kInt:
      return std::to_string(k.as_int());
    case Value::Kind::kFloat:
      return json_float(k.as_double());
    default:
      throw Error("keys must be str, int, float, bool or None, not " + k.type_name());
  }
}

void json_newline(std::string& out, const JsonStyle& style, int level) {
  out += '\n';
  for (int i = 0; i < level; ++i) out += style.indent;
}

void json_value(std::string& out, const Value& v, const JsonStyle& style, int level) {
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += json_float(v.as_double());
      return;
    case Value::Kind::kString:
      json_string(out, v.as_string(), style.ensure_ascii);
      return;
    case Value::Kind::kList: {
      const auto& items = v.as_list().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_sep;
        if (style.pretty) json_newline(out, style, level + 1);
        json_value(out, items[i], style, level + 1);
      }
      if (style.pretty) json_newline(out, style, level);
      out += ']';
      return;
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.as_dict().items) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (style.sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* x, const auto* y) { return values_less(x->first, y->first); });
      }
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_sep;
        if (style.pretty) json_newline(out, style, level + 1);
        json_string(out, json_key(items[i]->first), style.ensure_ascii);
        out += style.key_sep;
        json_value(out, items[i]->second, style, level + 1);
      }
      if (style.pretty) json_newline(out, style, level);
      out += '}';
      return;
    }
    default:
      throw Error("Object of type " + v.type_name() + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json_text(const Value& v, const JsonStyle& style) {
  std::string out;
  json_value(out, v, style, 0);
  return out;
}

}  // namespace dseek::jinja
