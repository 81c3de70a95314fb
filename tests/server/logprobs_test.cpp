// Logprobs layouts: token strings ("bytes:\xNN" for partial UTF-8), raw bytes, text offsets in code
// points across split characters and special tokens, and the exact chat / legacy JSON.
#include "dseek/server/logprobs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/server/openai_response.h"

namespace dseek::server {
namespace {

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";
constexpr float kInf = std::numeric_limits<float>::infinity();

TokenLogprobs lp_of(int32_t token, float logprob, std::vector<TopLogprob> top = {}) {
  TokenLogprobs lp;
  lp.token = token;
  lp.logprob = logprob;
  lp.n_top = int32_t(top.size());
  for (size_t i = 0; i < top.size(); ++i) lp.top[i] = top[i];
  return lp;
}

TEST(Logprobs, TokenTextEscapesBytesThatAreNotUtf8) {
  EXPECT_EQ(logprob_token_text("hello"), "hello");
  EXPECT_EQ(logprob_token_text(" caf\xC3\xA9"), " caf\xC3\xA9");  // complete characters stay text
  EXPECT_EQ(logprob_token_text("\n\\"), "\n\\");                   // valid UTF-8: never escaped
  EXPECT_EQ(logprob_token_text(""), "");
  EXPECT_EQ(logprob_token_text("\xE6\x9D"), "bytes:\\xe6\\x9d");    // a character cut after 2 of 3 bytes
  EXPECT_EQ(logprob_token_text("\xA9"), "bytes:\\xa9");             // a lone continuation byte
  EXPECT_EQ(logprob_token_text(" \xE2\x80"), "bytes: \\xe2\\x80");  // printable ASCII as is, as Python's repr
  EXPECT_EQ(logprob_token_text("a\\\t\n\r\x01\xFF"), "bytes:a\\\\\\t\\n\\r\\x01\\xff");
  EXPECT_EQ(logprob_token_text("\xC3\xA9\xC3"), "bytes:\\xc3\\xa9\\xc3");  // whole token as bytes
}

TEST(Logprobs, JsonLogprobClampsMinusInfinity) {
  EXPECT_EQ(json_logprob(-kInf), -9999.0);
  EXPECT_EQ(json_logprob(-0.25f), -0.25);
  EXPECT_EQ(json_logprob(0.0f), 0.0);
}

TEST(Logprobs, CollectorGivesBytesAndCodePointOffsets) {
  // The demo tokenizer is byte-level with no merges: one token per byte, so "é" (C3 A9) and
  // "€" (E2 82 AC) are split across tokens.
  const Tokenizer tok = Tokenizer::load(kDemo);
  const std::string text = "a\xC3\xA9 \xE2\x82\xAC!";
  const std::vector<int32_t> ids = tok.encode(text, false);
  ASSERT_EQ(ids.size(), text.size());
  LogprobCollector c(tok, /*skip_special_tokens=*/true);
  std::vector<TokenLogprobs> lps;
  for (size_t i = 0; i < ids.size(); ++i) lps.push_back(lp_of(ids[i], -float(i), {{ids[i], -float(i)}}));
  c.add(std::span(lps).first(3));
  EXPECT_FALSE(c.empty());
  std::vector<LogprobEntry> e = c.take();
  EXPECT_TRUE(c.empty());
  c.add(std::span(lps).subspan(3));
  for (LogprobEntry& x : c.take()) e.push_back(std::move(x));  // offsets continue across take()
  ASSERT_EQ(e.size(), ids.size());
  // Code points before each token: a | é split | space | € split in three | !
  const std::vector<int64_t> offsets = {0, 1, 1, 2, 3, 3, 3, 4};
  for (size_t i = 0; i < e.size(); ++i) {
    EXPECT_EQ(e[i].token, ids[i]);
    EXPECT_EQ(e[i].bytes, text.substr(i, 1)) << i;
    EXPECT_EQ(e[i].logprob, -float(i));
    ASSERT_EQ(e[i].top.size(), 1u);
    EXPECT_EQ(e[i].top[0].bytes, text.substr(i, 1));
    EXPECT_EQ(e[i].text_offset, offsets[i]) << i;
  }
}

TEST(Logprobs, SkippedSpecialTokensDoNotMoveTheOffset) {
  const Tokenizer tok = Tokenizer::load(test::shared_dir() + "/data/tokenizers/deepseek-v3");
  const std::vector<int32_t> ids = tok.encode("Hi there", false);
  const int32_t eos = tok.eos_id();
  ASSERT_GE(eos, 0);
  for (const bool skip : {true, false}) {
    LogprobCollector c(tok, skip);
    std::vector<TokenLogprobs> lps;
    for (int32_t id : ids) lps.push_back(lp_of(id, -1.0f));
    lps.push_back(lp_of(eos, -2.0f));
    lps.push_back(lp_of(ids[0], -3.0f));
    c.add(lps);
    const std::vector<LogprobEntry> e = c.take();
    ASSERT_EQ(e.size(), ids.size() + 2);
    EXPECT_EQ(e[ids.size()].bytes, tok.token_bytes(eos));  // the special token keeps its text
    EXPECT_EQ(e[ids.size()].text_offset, 8);                // "Hi there"
    // Shown in the text only when special tokens are kept: <｜end▁of▁sentence｜> is 19 code points
    // (the bars and ▁ are one each, though not ASCII).
    EXPECT_EQ(e.back().text_offset, skip ? 8 : 8 + 19) << "skip " << skip;
  }
}

TEST(Logprobs, EchoedPromptEntriesComeFirstWithANullHead) {
  const Tokenizer tok = Tokenizer::load(kDemo);  // byte-level, no BOS
  const std::string prompt = "a\xC3\xA9 b";
  const std::vector<int32_t> ids = tok.encode(prompt, false);
  ASSERT_EQ(ids.size(), prompt.size());
  std::vector<TokenLogprobs> plps;  // entry j: prompt token j + 1
  for (size_t j = 1; j < ids.size(); ++j) plps.push_back(lp_of(ids[j], -float(j), {{ids[0], -0.5f}}));
  LogprobCollector c(tok, /*skip_special_tokens=*/true);
  c.add_prompt(ids, plps, 0, prompt);
  const std::vector<int32_t> gen = tok.encode("\xE2\x82\xAC!", false);
  std::vector<TokenLogprobs> glps;
  for (int32_t id : gen) glps.push_back(lp_of(id, -9.0f));
  c.add(glps);
  const std::vector<LogprobEntry> e = c.take();
  ASSERT_EQ(e.size(), ids.size() + gen.size());
  EXPECT_FALSE(e[0].has_logprob);
  EXPECT_TRUE(e[0].top.empty());
  // a | é split | space | b, then the output after the echo's 4 code points: € split in three | !
  const std::vector<int64_t> offsets = {0, 1, 1, 2, 3, 4, 4, 4, 5};
  for (size_t i = 0; i < e.size(); ++i) {
    EXPECT_EQ(e[i].token, i < ids.size() ? ids[i] : gen[i - ids.size()]) << i;
    EXPECT_EQ(e[i].text_offset, offsets[i]) << i;
    if (i > 0) {
      EXPECT_TRUE(e[i].has_logprob) << i;
      EXPECT_EQ(e[i].logprob, i < ids.size() ? -float(i) : -9.0f) << i;
    }
  }
  EXPECT_EQ(e[1].top.size(), 1u);
  // The legacy layout writes null for the first token's logprob and top_logprobs.
  EXPECT_EQ(dump_json(completion_logprobs(std::span(e).first(2))),
            R"({"tokens":["a","bytes:\\xc3"],"token_logprobs":[null,-1.0],"top_logprobs":[null,{"a":-0.5,"bytes:\\xc3":-1.0}],)"
            R"("text_offset":[0,1]})");
  // Fewer entries than prompt tokens (a cancelled request): only the tokens they cover.
  LogprobCollector partial(tok, true);
  partial.add_prompt(ids, std::span(plps).first(2), 0, prompt);
  EXPECT_EQ(partial.take().size(), 3u);
}

TEST(Logprobs, EchoedPromptOffsetsSkipTheAddedBosOnly) {
  const Tokenizer tok = Tokenizer::load(test::shared_dir() + "/data/tokenizers/deepseek-v3");
  // A text prompt: encode adds BOS, which the echoed text lacks; a special token written in the
  // text is part of it (19 code points).
  const std::string prompt = "Hi<｜end▁of▁sentence｜> there";
  const std::vector<int32_t> ids = tok.encode(prompt, true);
  const int64_t lead = int64_t(ids.size() - tok.encode(prompt, false).size());
  ASSERT_EQ(lead, 1);
  ASSERT_EQ(ids[0], tok.bos_id());
  ASSERT_EQ(ids.size(), 4u) << "BOS, Hi, EOS, there";
  std::vector<TokenLogprobs> plps;
  for (size_t j = 1; j < ids.size(); ++j) plps.push_back(lp_of(ids[j], -1.0f));
  LogprobCollector c(tok, /*skip_special_tokens=*/true);
  c.add_prompt(ids, plps, lead, prompt);
  c.add(std::vector<TokenLogprobs>{lp_of(ids[1], -2.0f)});
  std::vector<int64_t> offsets;
  for (const LogprobEntry& e : c.take()) offsets.push_back(e.text_offset);
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 0, 2, 21, 27}));
}

TEST(Logprobs, ChatLayout) {
  std::vector<LogprobEntry> e(2);
  e[0] = {5, "Hi", -0.5f, {{5, "Hi", -0.5f}, {6, "\xE6\x9D", -1.25f}}, 0};
  e[1] = {6, "\xE6\x9D", -kInf, {}, 2};
  EXPECT_EQ(dump_json(chat_logprobs(e)),
            R"({"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[)"
            R"({"token":"Hi","logprob":-0.5,"bytes":[72,105]},)"
            R"({"token":"bytes:\\xe6\\x9d","logprob":-1.25,"bytes":[230,157]}]},)"
            R"({"token":"bytes:\\xe6\\x9d","logprob":-9999.0,"bytes":[230,157],"top_logprobs":[]}],"refusal":null})");
  EXPECT_EQ(dump_json(chat_logprobs({})), R"({"content":[],"refusal":null})");
  // In a message and a chunk, it is the choice's logprobs.
  OutputDelta m;
  m.content = "Hi";
  const auto full = chat_completion("c", 1, "m", m, "stop", Usage{}, chat_logprobs(e));
  EXPECT_EQ(full["choices"][0]["logprobs"]["content"].size(), 2u);
  const auto chunk = chat_chunk("c", 1, "m", m, std::nullopt, false, false, chat_logprobs(std::span(e).first(1)));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
  EXPECT_EQ(chat_chunk("c", 1, "m", m, std::nullopt, false)["choices"][0]["logprobs"], nullptr);
}

TEST(Logprobs, LegacyCompletionLayout) {
  std::vector<LogprobEntry> e(3);
  e[0] = {5, " the", -0.25f, {{5, " the", -0.25f}, {9, " a", -2.0f}}, 0};
  // The chosen token is not among the top ones (sampled): it is added, OpenAI's "logprobs + 1".
  e[1] = {7, " jury", -3.5f, {{8, " court", -1.0f}}, 4};
  e[2] = {6, "\xE6\x9D", -kInf, {}, 9};  // logprobs 0: only the chosen token
  EXPECT_EQ(dump_json(completion_logprobs(e)),
            R"({"tokens":[" the"," jury","bytes:\\xe6\\x9d"],"token_logprobs":[-0.25,-3.5,-9999.0],)"
            R"("top_logprobs":[{" the":-0.25," a":-2.0},{" court":-1.0," jury":-3.5},{"bytes:\\xe6\\x9d":-9999.0}],)"
            R"("text_offset":[0,4,9]})");
  const auto full = text_completion("c", 1, "m", " the jury", "length", Usage{}, completion_logprobs(e));
  EXPECT_EQ(full["choices"][0]["logprobs"]["tokens"].size(), 3u);
  EXPECT_EQ(text_chunk("c", 1, "m", " the", std::nullopt, false, completion_logprobs(std::span(e).first(1)))
                ["choices"][0]["logprobs"]["text_offset"],
            nlohmann::ordered_json::array({0}));
}

}  // namespace
}  // namespace dseek::server
