// Jinja's built-in filters, tests and globals, plus the Python str/dict methods chat templates call
// (message.content.split('</think>'), tools.items(), ...), with transformers' overrides:
// tojson is json.dumps(ensure_ascii=False) keeping key order, raise_exception() and strftime_now()
// are globals.
#pragma once

#include <string>
#include <string_view>

#include "dseek/tokenizer/jinja_eval.h"
#include "dseek/tokenizer/jinja_value.h"

namespace dseek::jinja {

// `value|name(args)`. Throws dseek::Error for an unknown filter or bad arguments.
Value apply_filter(Interpreter& in, std::string_view name, const Value& value, CallArgs& args);
// `value is name(args)`. Throws dseek::Error for an unknown test.
bool apply_test(Interpreter& in, std::string_view name, const Value& value, CallArgs& args);

// `obj.name`: Python attribute first (str/dict/list methods, namespace attributes), then dict key.
// Missing: an Undefined value. `obj` undefined: throws (jinja2.Undefined's strict attribute access).
Value get_attr(const Value& obj, const std::string& name);
// `obj[key]`: item first, then attribute. Missing: Undefined; `obj` undefined: throws.
Value get_item(const Value& obj, const Value& key);

// Whether a filter/test of that name exists (jinja2 rejects unknown names when it compiles).
bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

// range, dict, namespace, raise_exception, strftime_now.
Globals make_builtin_globals();

// Elements of an iterable value: list items, dict keys, string characters; Undefined is empty.
// Throws for values that are not iterable.
std::vector<Value> iterate(const Value& v);

}  // namespace dseek::jinja
