// IncrementalDecoder: feeding ids one at a time yields complete characters only, and the
// concatenation equals Tokenizer::decode of all ids.
#include <gtest/gtest.h>

#include "dseek/tokenizer/utf8.h"
#include "tokenizer/tokenizer_test_util.h"

namespace dseek {
namespace {

using test::deepseek_v3_tokenizer;

void expect_streams_like_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, const std::string& label) {
  IncrementalDecoder dec(tok, skip);
  std::string all;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string part = dec.feed(ids[i]);
    EXPECT_TRUE(utf8::is_valid(part)) << label << ": partial character after id #" << i;
    all += part;
  }
  all += dec.flush();
  EXPECT_EQ(all, tok.decode(ids, skip)) << label;
}

TEST(IncrementalDecoder, EmojiAndCjkNeverEmitHalfACharacter) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  const std::string text = "你好 😀 é 👨‍👩‍👧‍👦 한국 ก € 𠮷 🇯🇵 ab😀cd 日本語のテキスト";
  const auto ids = tok.encode(text, false);
  // Several ids must be partial characters on their own, or the test proves nothing.
  size_t partial = 0;
  for (int32_t id : ids) partial += !utf8::is_valid(tok.token_bytes(id));
  EXPECT_GT(partial, 3u);

  IncrementalDecoder dec(tok, false);
  std::string all;
  for (int32_t id : ids) {
    const std::string part = dec.feed(id);
    ASSERT_TRUE(utf8::is_valid(part));
    EXPECT_EQ(part.find("\xEF\xBF\xBD"), std::string::npos);
    all += part;
  }
  EXPECT_EQ(dec.flush(), "");
  EXPECT_EQ(all, text);
}

TEST(IncrementalDecoder, MatchesDecodeOnGoldenRows) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  for (const auto& row : test::read_jsonl(test::tokenizer_golden_dir() + "/decode.jsonl")) {
    expect_streams_like_decode(tok, row["ids"].get<std::vector<int32_t>>(), row["skip_special_tokens"].get<bool>(),
                               row["id"].get<std::string>());
  }
}

TEST(IncrementalDecoder, FlushReplacesATruncatedTail) {
  const Tokenizer& tok = deepseek_v3_tokenizer();
  // The single-byte tokens for E4 BD (the start of 你): nothing until flush, then one U+FFFD.
  const auto e4 = tok.token_to_id("ä");
  const auto bd = tok.token_to_id("½");
  ASSERT_TRUE(e4 && bd);
  IncrementalDecoder dec(tok, false);
  EXPECT_EQ(dec.feed(*e4), "");
  EXPECT_EQ(dec.feed(*bd), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.feed(tok.encode("ok", false).at(0)), "ok");
}

}  // namespace
}  // namespace dseek
