// The DeepSeek-V3 golden set (shared/golden/tokenizer/README.md): every encode, pre-tokenize
// and decode row must match Hugging Face tokenizers 0.23.2 exactly.
#include <gtest/gtest.h>

#include <sstream>

#include "tokenizer/tokenizer_test_util.h"

namespace dseek {
namespace {

using test::deepseek_v3_tokenizer;
using test::read_jsonl;
using test::tokenizer_golden_dir;

std::string ids_str(const std::vector<int32_t>& ids, size_t max = 24) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < ids.size() && i < max; ++i) s << (i ? "," : "") << ids[i];
  if (ids.size() > max) s << ",... (" << ids.size() << " ids)";
  s << "]";
  return s.str();
}

TEST(TokenizerGolden, Encode) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  const auto rows = read_jsonl(tokenizer_golden_dir() + "/encode.jsonl");
  ASSERT_EQ(rows.size(), 644u);
  size_t mismatches = 0, tokens = 0;
  std::ostringstream first;
  for (const auto& row : rows) {
    const std::string text = row["text"].get<std::string>();
    const auto want = row["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, row["add_special_tokens"].get<bool>());
    tokens += want.size();
    if (got != want) {
      if (++mismatches <= 8) {
        first << "  " << row["id"].get<std::string>() << ": want " << ids_str(want) << "\n    got  " << ids_str(got)
              << "\n";
      }
    }
  }
  EXPECT_EQ(tokens, 55130u);
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << rows.size() << " encode rows mismatch; first:\n" << first.str();
}

TEST(TokenizerGolden, PreTokenize) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  const auto rows = read_jsonl(tokenizer_golden_dir() + "/pretokenize.jsonl");
  ASSERT_EQ(rows.size(), 616u);
  size_t mismatches = 0;
  std::ostringstream first;
  for (const auto& row : rows) {
    const auto want = row["pieces"].get<std::vector<std::string>>();
    const auto got = tok.pre_tokenize(row["text"].get<std::string>());
    if (got != want) {
      if (++mismatches <= 8) {
        first << "  " << row["id"].get<std::string>() << ": want " << want.size() << " pieces, got " << got.size();
        for (size_t i = 0; i < std::min(want.size(), got.size()); ++i) {
          if (want[i] != got[i]) {
            first << "; first difference at piece " << i << ": want '" << want[i] << "' got '" << got[i] << "'";
            break;
          }
        }
        first << "\n";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << rows.size() << " pre-tokenize rows mismatch; first:\n"
                            << first.str();
}

TEST(TokenizerGolden, Decode) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  const auto rows = read_jsonl(tokenizer_golden_dir() + "/decode.jsonl");
  ASSERT_EQ(rows.size(), 217u);
  size_t mismatches = 0;
  std::ostringstream first;
  for (const auto& row : rows) {
    const auto ids = row["ids"].get<std::vector<int32_t>>();
    const std::string want = row["text"].get<std::string>();
    const std::string got = tok.decode(ids, row["skip_special_tokens"].get<bool>());
    if (got != want) {
      if (++mismatches <= 8) {
        first << "  " << row["id"].get<std::string>() << " ids " << ids_str(ids) << ": want '" << want << "' got '"
              << got << "'\n";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << rows.size() << " decode rows mismatch; first:\n" << first.str();
}

// Every encode case satisfies decode(ids) == text (README "Formats").
TEST(TokenizerGolden, EncodeDecodeRoundTrip) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  const auto rows = read_jsonl(tokenizer_golden_dir() + "/encode.jsonl");
  size_t mismatches = 0;
  std::string first;
  for (const auto& row : rows) {
    if (row["add_special_tokens"].get<bool>()) continue;
    const std::string text = row["text"].get<std::string>();
    if (tok.decode(tok.encode(text, false), false) != text) {
      if (++mismatches == 1) first = row["id"].get<std::string>();
    }
  }
  EXPECT_EQ(mismatches, 0u) << "first: " << first;
}

TEST(TokenizerGolden, SpecialIdsAndSizes) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.vocab_size(), 128815u);
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok.token_to_id("Ġt"), tok.encode(" t", false).at(0));
  EXPECT_FALSE(tok.token_to_id("<think>").has_value());
  EXPECT_EQ(tok.id_to_token(128803), "<｜User｜>");
  EXPECT_EQ(tok.id_to_token(129000), "");
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(128803));
  EXPECT_EQ(tok.encode("  <｜User｜>  ", false), (std::vector<int32_t>{262, 128803, 262}));
}

}  // namespace
}  // namespace dseek
