// Values of the Jinja interpreter that renders chat templates (see docs/chat_template.md).
//
// The semantics are Python's, because transformers renders templates with Python Jinja2:
// `{{ x }}` prints str(x) (None, True, 1.0, ['a', 1]), ints and floats compare equal across types,
// bool counts as an int in arithmetic. Containers are immutable once built (transformers uses
// ImmutableSandboxedEnvironment), so lists and dicts are shared by pointer; the only mutable
// object is a namespace(), and a namespace may not be stored inside a namespace, so no value can
// reach itself (no reference cycles, no infinite printing).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dseek::jinja {

class Value;
class Interpreter;

// Deepest container nesting a value may have (printing, comparing and freeing are recursive).
constexpr int kMaxValueDepth = 256;

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b); otherwise the same as a list
  bool has_ns = false;    // a namespace is reachable from here
  int depth = 1;
};

// Insertion-ordered, like Python's dict. Keys are scalars (none, bool, int, float, string).
struct DictData {
  std::vector<std::pair<Value, Value>> items;
  bool has_ns = false;
  int depth = 1;
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
};

struct Namespace {
  std::vector<std::pair<std::string, Value>> attrs;
  int depth = 1;  // 1 + deepest attribute; attributes never hold a namespace (see jinja_eval.cpp)
  Value* find(std::string_view name);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Callable {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> fn;
  bool has_ns = false;  // a bound method whose receiver reaches a namespace
};

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  // Default: Jinja's Undefined (falsy, prints empty, errors on attribute access or arithmetic).
  Value() = default;
  static Value undefined(std::string message);  // message: why, for the error if it is used
  static Value none() { return Value(Payload(std::in_place_index<1>, nullptr)); }
  static Value boolean(bool b) { return Value(Payload(std::in_place_index<2>, b)); }
  static Value integer(int64_t i) { return Value(Payload(std::in_place_index<3>, i)); }
  static Value number(double d) { return Value(Payload(std::in_place_index<4>, d)); }
  static Value string(std::string s);
  static Value list(std::vector<Value> items, bool is_tuple = false);  // throws if nested too deep
  static Value dict(std::vector<std::pair<Value, Value>> items);      // later duplicate keys win
  static Value dict_unique_keys(std::vector<std::pair<Value, Value>> items);  // caller guarantees unique keys
  static Value ns(std::shared_ptr<Namespace> n) { return Value(Payload(std::in_place_index<8>, std::move(n))); }
  static Value callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn, bool has_ns = false);
  // JSON to a value; throws dseek::Error if nested too deep. Objects keep the order of the json type:
  // nlohmann::json sorts keys, nlohmann::ordered_json keeps document order as Python's json does.
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return Kind(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<2>(v_); }
  int64_t as_int() const;  // int or bool
  double as_double() const;  // int, bool or float
  const std::string& as_string() const { return *std::get<5>(v_); }
  const ListData& as_list() const { return *std::get<6>(v_); }
  const DictData& as_dict() const { return *std::get<7>(v_); }
  Namespace& as_namespace() const { return *std::get<8>(v_); }
  const Callable& as_callable() const { return *std::get<9>(v_); }
  const std::string& undefined_message() const;

  bool truthy() const;
  bool has_ns() const;  // a namespace is reachable from this value
  int depth() const;    // container nesting: 0 for scalars

  // Python str(): what `{{ x }}` prints. Undefined prints as "".
  std::string str() const;
  // Python repr(): strings quoted, used inside containers.
  std::string repr() const;
  // "dict object", "str object"... as Jinja names types in its error messages.
  std::string type_name() const;

 private:
  struct UndefinedTag {
    std::shared_ptr<const std::string> message;
  };
  using Payload = std::variant<UndefinedTag, std::nullptr_t, bool, int64_t, double, std::shared_ptr<const std::string>,
                               std::shared_ptr<const ListData>, std::shared_ptr<const DictData>,
                               std::shared_ptr<Namespace>, std::shared_ptr<const Callable>>;
  explicit Value(Payload p) : v_(std::move(p)) {}
  Payload v_;
};

// Python ==: 1 == 1.0 == True, lists and dicts element-wise, different types unequal.
bool values_equal(const Value& a, const Value& b);
// Python <: numbers with numbers, strings by code point, lists lexicographically; throws otherwise.
bool values_less(const Value& a, const Value& b);

// Python float repr: 1.0, 0.1, 1e+16, 1e-05, inf, nan.
std::string py_float_repr(double d);

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent, separators=..., sort_keys=...).
struct JsonStyle {
  bool pretty = false;       // indent given
  std::string indent;        // per level, when pretty
  std::string item_sep = ", ";  // json.dumps defaults; "," when pretty
  std::string key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;  // escape non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
};
std::string to_json_text(const Value& v, const JsonStyle& style);

// UTF-8 helpers: Python strings index by code point. Invalid bytes count as one code point each.
size_t utf8_next(std::string_view s, size_t i);  // index after the code point that starts at i
uint32_t utf8_decode_at(std::string_view s, size_t i);
std::vector<size_t> utf8_offsets(std::string_view s);  // start of each code point, plus s.size()
void utf8_append(std::string& out, uint32_t cp);
bool py_isspace(uint32_t cp);  // Python str.isspace (what str.strip() and str.split() use)

}  // namespace dseek::jinja
