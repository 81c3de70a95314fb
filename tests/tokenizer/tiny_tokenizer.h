// A small byte-level BPE tokenizer.json built in memory for unit tests: the 256 byte-level
// characters, a few merges, two added tokens and one Split step.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dseek/tokenizer/byte_level.h"
#include "dseek/tokenizer/tokenizer.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek::test {

inline nlohmann::json tiny_tokenizer_json() {
  using nlohmann::json;
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8::append_code_point(byte_level::kByteToChar[size_t(b)], ch);
    vocab[ch] = id++;
  }
  // "Ġ" is the space; merges build "ab", "abc", "Ġa", "Ġab".
  for (const char* t : {"ab", "abc", "Ġa", "Ġab", "xx"}) vocab[t] = id++;
  json merges = json::array({"a b", "ab c", "Ġ a", "Ġa b", "x x"});
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "<tool>"}, {"special", false}, {"normalized", false}},
  });
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array()}};
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({
           {{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}, {"invert", false}},
           {{"type", "Split"},
            {"pattern", {{"Regex", " ?\\p{L}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}}},
            {"behavior", "Isolated"},
            {"invert", false}},
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}},
       })}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}};
  j["model"] = {{"type", "BPE"},         {"dropout", nullptr},          {"unk_token", nullptr},
                {"fuse_unk", false},     {"byte_fallback", false},      {"vocab", vocab},
                {"merges", merges},      {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}};
  return j;
}

// Writes `j` as tokenizer.json into a fresh directory under the temp dir and loads it.
inline Tokenizer load_tokenizer_json(const nlohmann::json& j, const std::string& tag) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("dseek_tok_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  Tokenizer tok = Tokenizer::load(dir.string());
  fs::remove_all(dir);
  return tok;
}

}  // namespace dseek::test
