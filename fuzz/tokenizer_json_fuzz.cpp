// libFuzzer target: arbitrary bytes as tokenizer.json.
//
// Tokenizer::load_files must return a tokenizer or throw dseek::Error; any other exception, crash
// or sanitizer report is a bug. A tokenizer that loads encodes and decodes a short text. The
// input goes through a file (the loader's entry point), one per fuzzing process.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/dseek_tokenizer_json_fuzz_" + std::to_string(::getpid()) + ".json";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const dseek::Tokenizer tok = dseek::Tokenizer::load_files(path, "");
    const std::vector<int32_t> ids = tok.encode("Hello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd", true);
    (void)tok.decode(ids, false);
  } catch (const dseek::Error&) {
  }
  return 0;
}
