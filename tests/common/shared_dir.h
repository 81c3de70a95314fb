// Where tests find ../shared (golden data, tokenizer files): $DSEEK_SHARED_DIR, else the
// path CMake recorded (the repo's sibling folder). Never copied into the repo.
#pragma once

#include <cstdlib>
#include <string>

namespace dseek::test {

inline std::string shared_dir() {
  if (const char* env = std::getenv("DSEEK_SHARED_DIR"); env && *env) return env;
  return DSEEK_DEFAULT_SHARED_DIR;
}

inline std::string golden_model_dir(const std::string& name) { return shared_dir() + "/golden/model/" + name; }

}  // namespace dseek::test
