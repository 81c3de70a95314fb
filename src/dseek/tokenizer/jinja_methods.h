// Python string helpers behind the str methods and filters of chat templates (split, strip,
// replace, upper, ...). Strings are UTF-8 and index by code point, as Python's str does.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dseek::jinja {

// str.strip/lstrip/rstrip: `chars` absent strips Python whitespace, else any code point in `chars`.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit; sep absent splits on whitespace runs. maxsplit < 0: no limit.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                                  bool from_right);
std::vector<std::string> py_splitlines(std::string_view s);
// str.replace; count < 0 replaces all; an empty `old` inserts `repl` around every code point.
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
// Case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (documented limitation).
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_title(std::string_view s);
std::string py_capitalize(std::string_view s);
size_t py_len(std::string_view s);  // code points

}  // namespace dseek::jinja
