// Shared helpers for the tokenizer tests: where the DeepSeek-V3 tokenizer and golden files are,
// and one Tokenizer loaded per test binary.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::test {

inline std::string tokenizer_golden_dir() { return shared_dir() + "/golden/tokenizer"; }
inline std::string deepseek_v3_tokenizer_dir() { return shared_dir() + "/data/tokenizers/deepseek-v3"; }

// Loaded once: tokenizer.json is 7.8 MB.
inline const Tokenizer& deepseek_v3_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(deepseek_v3_tokenizer_dir());
  return tok;
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

}  // namespace dseek::test
