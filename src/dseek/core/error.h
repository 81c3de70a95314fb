// Error type and always-on checks.
//
// Library code reports bad input by throwing dseek::Error with a message that
// names the file, field or byte offset; only tools/ turns it into an exit code.
// DSEEK_CHECK stays on in release builds (STYLE.md: no silent fallbacks).
#pragma once

#include <stdexcept>
#include <string>

namespace dseek {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void fail_check(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace dseek

// Internal invariant (a bug in dseek, not bad user input): reports file:line.
#define DSEEK_CHECK(cond, msg)                                      \
  do {                                                              \
    if (!(cond)) ::dseek::fail_check(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
