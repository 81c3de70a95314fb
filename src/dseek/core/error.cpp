#include "dseek/core/error.h"

namespace dseek {

void fail_check(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(std::string(file) + ":" + std::to_string(line) + ": check failed: " + cond +
              (msg.empty() ? "" : ": " + msg));
}

}  // namespace dseek
