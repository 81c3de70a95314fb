// libFuzzer target: arbitrary bytes as config.json text.
//
// parse_config_json must return a ModelConfig or throw dseek::Error; any other exception (say a
// nlohmann::json type_error escaping), crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dseek/core/error.h"
#include "dseek/io/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)dseek::parse_config_json(text, "fuzz/config.json");
  } catch (const dseek::Error&) {
  }
  return 0;
}
