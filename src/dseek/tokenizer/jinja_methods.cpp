// Attribute and item access, iteration, and the Python methods of str, dict and list that chat
// templates call. Mutating methods (list.append, dict.update, ...) are absent on purpose: transformers
// renders in jinja2's ImmutableSandboxedEnvironment, where they are unsafe and evaluate to Undefined.
#include "dseek/tokenizer/jinja_methods.h"

#include <algorithm>

#include "dseek/core/error.h"
#include "dseek/tokenizer/jinja_builtins.h"

namespace dseek::jinja {

// ---- string helpers -------------------------------------------------------------------------

namespace {

uint32_t upper_cp(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xB5) return c;
  if (c == 0xB5) return 0x39C;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c & ~1u;
  if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c % 2 == 0)) return c - 1;
  if (c == 0x131) return 'I';
  if (c == 0x17F) return 'S';
  if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? 0x3A3 : c - 32;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

uint32_t lower_cp(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c == 0x130 ? 'i' : (c | 1u);
  if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c % 2 == 1)) return c + 1;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool is_cased(uint32_t c) { return upper_cp(c) != c || lower_cp(c) != c; }

template <class F>
std::string map_cps(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t next = utf8_next(s, i);
    if (next == i + 1 && static_cast<unsigned char>(s[i]) >= 0x80) {
      out += s[i];  // invalid byte: copy
    } else {
      utf8_append(out, f(utf8_decode_at(s, i)));
    }
    i = next;
  }
  return out;
}

std::vector<uint32_t> decode_all(std::string_view s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) cps.push_back(utf8_decode_at(s, i));
  return cps;
}

}  // namespace

std::string py_upper(std::string_view s) { return map_cps(s, upper_cp); }
std::string py_lower(std::string_view s) { return map_cps(s, lower_cp); }

std::string py_title(std::string_view s) {
  bool prev_cased = false;
  return map_cps(s, [&](uint32_t c) {
    const uint32_t r = prev_cased ? lower_cp(c) : upper_cp(c);
    prev_cased = is_cased(c);
    return r;
  });
}

std::string py_capitalize(std::string_view s) {
  bool first = true;
  return map_cps(s, [&](uint32_t c) {
    const uint32_t r = first ? upper_cp(c) : lower_cp(c);
    first = false;
    return r;
  });
}

size_t py_len(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) ++n;
  return n;
}

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::vector<uint32_t> set;
  if (chars) set = decode_all(*chars);
  auto strip_cp = [&](uint32_t c) { return chars ? std::find(set.begin(), set.end(), c) != set.end() : py_isspace(c); };
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end && strip_cp(utf8_decode_at(s, begin))) begin = utf8_next(s, begin);
  }
  if (right) {
    // Scan forward for the end of the last code point that is kept.
    size_t last_keep = begin;
    for (size_t i = begin; i < end;) {
      const size_t next = utf8_next(s, i);
      if (!strip_cp(utf8_decode_at(s, i))) last_keep = next;
      i = next;
    }
    end = last_keep;
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                                  bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) throw Error("empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
        const size_t f = s.find(*sep, pos);
        if (f == std::string_view::npos) break;
        parts.emplace_back(s.substr(pos, f - pos));
        pos = f + sep->size();
      }
      parts.emplace_back(s.substr(pos));
      return parts;
    }
    size_t end = s.size();
    while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t f = s.rfind(*sep, end - sep->size());
      if (f == std::string_view::npos) break;
      parts.emplace_back(s.substr(f + sep->size(), end - f - sep->size()));
      end = f;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  // Whitespace runs; no empty strings.
  struct Word {
    size_t b, e;
  };
  std::vector<Word> words;
  for (size_t i = 0; i < s.size();) {
    while (i < s.size() && py_isspace(utf8_decode_at(s, i))) i = utf8_next(s, i);
    if (i >= s.size()) break;
    const size_t b = i;
    while (i < s.size() && !py_isspace(utf8_decode_at(s, i))) i = utf8_next(s, i);
    words.push_back({b, i});
  }
  const size_t n = words.size();
  if (maxsplit < 0 || size_t(maxsplit) + 1 >= n) {
    for (const auto& w : words) parts.emplace_back(s.substr(w.b, w.e - w.b));
    return parts;
  }
  const size_t k = size_t(maxsplit);
  if (!from_right) {
    for (size_t i = 0; i < k; ++i) parts.emplace_back(s.substr(words[i].b, words[i].e - words[i].b));
    parts.push_back(py_strip(s.substr(words[k].b), std::nullopt, false, true));
  } else {
    parts.push_back(py_strip(s.substr(0, words[n - k - 1].e), std::nullopt, true, false));
    for (size_t i = n - k; i < n; ++i) parts.emplace_back(s.substr(words[i].b, words[i].e - words[i].b));
  }
  return parts;
}

std::vector<std::string> py_splitlines(std::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t next = utf8_next(s, i);
    const uint32_t c = utf8_decode_at(s, i);
    const bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
                     c == 0x2028 || c == 0x2029;
    if (brk) {
      lines.emplace_back(s.substr(start, i - start));
      start = (c == '\r' && next < s.size() && s[next] == '\n') ? next + 1 : next;
      i = start;
    } else {
      i = next;
    }
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    for (size_t i = 0; i <= s.size();) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (i == s.size()) break;
      const size_t next = utf8_next(s, i);
      out.append(s.substr(i, next - i));
      i = next;
    }
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    const size_t f = s.find(old, pos);
    if (f == std::string_view::npos) break;
    out.append(s.substr(pos, f - pos));
    out += repl;
    pos = f + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

// ---- methods --------------------------------------------------------------------------------

namespace {

const Value& pos_arg(const CallArgs& a, size_t i, const char* method) {
  if (i >= a.pos.size()) throw Error(std::string(method) + "() missing required argument " + std::to_string(i + 1));
  return a.pos[i];
}

std::optional<std::string> opt_str_arg(const CallArgs& a, size_t i, std::string_view kw) {
  const Value* v = i < a.pos.size() ? &a.pos[i] : nullptr;
  for (const auto& k : a.kw) {
    if (k.first == kw) v = &k.second;
  }
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) throw Error("expected a string argument, got " + v->type_name());
  return v->as_string();
}

int64_t int_arg(const CallArgs& a, size_t i, std::string_view kw, int64_t def) {
  const Value* v = i < a.pos.size() ? &a.pos[i] : nullptr;
  for (const auto& k : a.kw) {
    if (k.first == kw) v = &k.second;
  }
  if (!v || v->is_none()) return def;
  if (!v->is_number() || v->is_float()) throw Error("expected an integer argument, got " + v->type_name());
  return v->as_int();
}

Value str_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::list(std::move(items));
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) throw Error("startswith/endswith first arg must be str or a tuple of str");
    const std::string& x = a.as_string();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    return std::any_of(affix.as_list().items.begin(), affix.as_list().items.end(), one);
  }
  return one(affix);
}

// Code point index of byte offset `b`.
int64_t cp_index(const std::string& s, size_t b) { return int64_t(py_len(std::string_view(s).substr(0, b))); }

// str.format with automatic ({}), positional ({0}) and keyword ({name}) fields; no format specs.
std::string py_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else throw Error("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw Error("Single '{' encountered in format string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) throw Error("format specs in str.format are not supported");
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t idx = field.empty() ? auto_index++ : size_t(std::stoul(field.substr(0, 9)));
      if (idx >= a.pos.size()) throw Error("Replacement index " + std::to_string(idx) + " out of range");
      v = &a.pos[idx];
    } else {
      for (const auto& k : a.kw) {
        if (k.first == field) v = &k.second;
      }
      if (!v) throw Error("format: no argument named '" + field + "'");
    }
    out += v->str();
    i = close;
  }
  return out;
}

Value string_method(const Value& self, const std::string& name, CallArgs& a) {
  const std::string& s = self.as_string();
  if (name == "split" || name == "rsplit") {
    return str_list(py_split(s, opt_str_arg(a, 0, "sep"), int_arg(a, 1, "maxsplit", -1), name == "rsplit"));
  }
  if (name == "splitlines") return str_list(py_splitlines(s));
  if (name == "strip") return Value::string(py_strip(s, opt_str_arg(a, 0, "chars"), true, true));
  if (name == "lstrip") return Value::string(py_strip(s, opt_str_arg(a, 0, "chars"), true, false));
  if (name == "rstrip") return Value::string(py_strip(s, opt_str_arg(a, 0, "chars"), false, true));
  if (name == "startswith") return Value::boolean(affix_match(s, pos_arg(a, 0, "startswith"), true));
  if (name == "endswith") return Value::boolean(affix_match(s, pos_arg(a, 0, "endswith"), false));
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "title") return Value::string(py_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace") {
    const auto old = opt_str_arg(a, 0, "old");
    const auto repl = opt_str_arg(a, 1, "new");
    if (!old || !repl) throw Error("replace() takes at least 2 string arguments");
    const std::string r = py_replace(s, *old, *repl, int_arg(a, 2, "count", -1));
    return Value::string(r);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const auto sub = opt_str_arg(a, 0, "sub");
    if (!sub) throw Error(name + "() missing required argument");
    const size_t f = name[0] == 'r' ? s.rfind(*sub) : s.find(*sub);
    if (f == std::string::npos) {
      if (name.find("index") != std::string::npos) throw Error("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(cp_index(s, f));
  }
  if (name == "count") {
    const auto sub = opt_str_arg(a, 0, "sub");
    if (!sub) throw Error("count() missing required argument");
    if (sub->empty()) return Value::integer(int64_t(py_len(s)) + 1);
    int64_t n = 0;
    for (size_t p = s.find(*sub); p != std::string::npos; p = s.find(*sub, p + sub->size())) ++n;
    return Value::integer(n);
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const auto& v : iterate(pos_arg(a, 0, "join"))) {
      if (!v.is_string()) throw Error("sequence item: expected str instance, " + v.type_name() + " found");
      if (!first) out += s;
      first = false;
      out += v.as_string();
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(py_format(s, a));
  auto all_cps = [&](auto pred) {
    if (s.empty()) return Value::boolean(false);
    for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) {
      if (!pred(utf8_decode_at(s, i))) return Value::boolean(false);
    }
    return Value::boolean(true);
  };
  if (name == "isspace") return all_cps(py_isspace);
  if (name == "isdigit") return all_cps([](uint32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isalpha") return all_cps([](uint32_t c) { return is_cased(c); });
  if (name == "isalnum") return all_cps([](uint32_t c) { return is_cased(c) || (c >= '0' && c <= '9'); });
  if (name == "islower" || name == "isupper") {
    bool any = false;
    for (size_t i = 0; i < s.size(); i = utf8_next(s, i)) {
      const uint32_t c = utf8_decode_at(s, i);
      if (!is_cased(c)) continue;
      any = true;
      if ((name == "islower" ? lower_cp(c) : upper_cp(c)) != c) return Value::boolean(false);
    }
    return Value::boolean(any);
  }
  throw Error("unknown str method '" + name + "'");
}

Value dict_method(const Value& self, const std::string& name, CallArgs& a) {
  const auto& d = self.as_dict();
  if (name == "items") {
    std::vector<Value> items;
    for (const auto& kv : d.items) items.push_back(Value::list({kv.first, kv.second}, true));
    return Value::list(std::move(items));
  }
  if (name == "keys" || name == "values") {
    std::vector<Value> items;
    for (const auto& kv : d.items) items.push_back(name == "keys" ? kv.first : kv.second);
    return Value::list(std::move(items));
  }
  if (name == "get") {
    const Value* v = d.find(pos_arg(a, 0, "get"));
    if (v) return *v;
    return a.pos.size() > 1 ? a.pos[1] : Value::none();
  }
  throw Error("unknown dict method '" + name + "'");
}

Value list_method(const Value& self, const std::string& name, CallArgs& a) {
  const auto& items = self.as_list().items;
  const Value& x = pos_arg(a, 0, name.c_str());
  int64_t n = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!values_equal(items[i], x)) continue;
    if (name == "index") return Value::integer(int64_t(i));
    ++n;
  }
  if (name == "index") throw Error(x.repr() + " is not in list");
  return Value::integer(n);
}

bool is_method(const Value& obj, const std::string& name) {
  static const char* const kStr[] = {"split",   "rsplit", "splitlines", "strip", "lstrip",     "rstrip", "startswith",
                                     "endswith", "upper", "lower",      "title", "capitalize", "replace", "find",
                                     "rfind",   "index",  "rindex",     "count", "join",       "format", "isspace",
                                     "isdigit", "isalpha", "isalnum",   "islower", "isupper"};
  static const char* const kDict[] = {"items", "keys", "values", "get"};
  static const char* const kList[] = {"index", "count"};
  auto in = [&](const auto& names) {
    return std::any_of(std::begin(names), std::end(names), [&](const char* m) { return name == m; });
  };
  if (obj.is_string()) return in(kStr);
  if (obj.is_dict()) return in(kDict);
  if (obj.is_list()) return in(kList);
  return false;
}

Value bind_method(const Value& obj, const std::string& name) {
  return Value::callable(
      obj.type_name() + "." + name,
      [obj, name](Interpreter&, CallArgs& a) {
        if (obj.is_string()) return string_method(obj, name, a);
        if (obj.is_dict()) return dict_method(obj, name, a);
        return list_method(obj, name, a);
      },
      obj.has_ns());
}

Value no_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("'" + obj.type_name() + "' has no attribute '" + name + "'");
}

}  // namespace

// ---- access ---------------------------------------------------------------------------------

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) throw Error(obj.undefined_message());
  if (is_method(obj, name)) return bind_method(obj, name);
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(std::string_view(name))) return *v;
  } else if (obj.is_namespace()) {
    if (const Value* v = obj.as_namespace().find(name)) return *v;
  }
  return no_attribute(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) throw Error(obj.undefined_message());
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(key)) return *v;
  } else if ((obj.is_list() || obj.is_string()) && key.is_number() && !key.is_float()) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const auto& items = obj.as_list().items;
      const int64_t n = int64_t(items.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return items[size_t(i)];
    } else {
      const auto offs = utf8_offsets(obj.as_string());
      const int64_t n = int64_t(offs.size()) - 1;
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        return Value::string(obj.as_string().substr(offs[size_t(i)], offs[size_t(i) + 1] - offs[size_t(i)]));
      }
    }
    return Value::undefined("'" + obj.type_name() + "' has no element " + key.repr());
  } else if (obj.is_namespace() && key.is_string()) {
    if (const Value* v = obj.as_namespace().find(key.as_string())) return *v;
  }
  if (key.is_string()) {
    if (is_method(obj, key.as_string())) return bind_method(obj, key.as_string());
    return no_attribute(obj, key.as_string());
  }
  return Value::undefined("'" + obj.type_name() + "' has no element " + key.repr());
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.as_list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.as_dict().items.size());
      for (const auto& kv : v.as_dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      const std::string& s = v.as_string();
      for (size_t i = 0; i < s.size();) {
        const size_t next = utf8_next(s, i);
        chars.push_back(Value::string(s.substr(i, next - i)));
        i = next;
      }
      return chars;
    }
    default: {
      std::string t = v.type_name();
      if (t.size() > 7 && t.compare(t.size() - 7, 7, " object") == 0) t.resize(t.size() - 7);
      throw Error("'" + t + "' object is not iterable");
    }
  }
}

}  // namespace dseek::jinja
