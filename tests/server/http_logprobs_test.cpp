// Logprobs through the whole server, in process: an HttpServer on a free port over an Engine with
// the embedded demo model (byte-level vocabulary, so many tokens are partial UTF-8), driven by an
// HTTP client. The numbers are checked against log_softmax of Model::forward's logits for the same
// prefix, the tokens against the single-sequence Generator's greedy output, and streamed chunks
// against the whole response.
#include <httplib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "dseek/runtime/engine.h"
#include "dseek/runtime/generator.h"
#include "dseek/runtime/kv_cache.h"
#include "dseek/server/http_server.h"
#include "dseek/server/logprobs.h"
#include "dseek/tokenizer/chat_template.h"
#include "common/live_server.h"
#include "common/reference_logprobs.h"

namespace dseek::server {
namespace {

using Json = nlohmann::json;

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";
// The engine's batched paged forward against the contiguous one: float rounding only
// (batch_forward_test holds logits to 1e-5).
constexpr double kLogprobTol = 1e-4;
// A plain template for the demo model, and an R1-style one whose prompt opens <think>.
const char* kTemplate =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
const char* kR1Template =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:<think>\n{% endif %}";

Json bytes_json(std::string_view s) {
  Json a = Json::array();
  for (const char c : s) a.push_back(int(uint8_t(c)));
  return a;
}

class ServeLogprobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions lo;
    lo.load_mtp = true;  // for the speculative server; the plain one ignores it
    model_ = new Model(Model::load(kDemo, lo));
    tokenizer_ = new Tokenizer(Tokenizer::load(kDemo));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static std::vector<int32_t> greedy_tokens(const std::vector<int32_t>& prompt, int64_t n) {
    Generator g(*model_, *tokenizer_, 256, nullptr, 32);
    Sampler sampler(SamplingParams{}, model_->config().vocab_size);
    GenerateOptions o;
    o.max_new_tokens = n;
    return g.generate(prompt, sampler, o).tokens;
  }
  // The token whose bytes a `bytes` array lists (unique in the demo's byte-level vocabulary), or -1.
  static int32_t id_of_bytes(const Json& bytes) {
    std::string b;
    for (const Json& x : bytes) b += char(x.get<int>());
    for (int32_t id = 0; id < int32_t(tokenizer_->vocab_size()); ++id)
      if (tokenizer_->token_bytes(id) == b) return id;
    return -1;
  }
  static std::vector<int32_t> chat_prompt(const char* tpl, const Json& messages) {
    return tokenizer_->encode(ChatTemplate::parse(tpl, "test").render(messages, true), false);
  }
  // Chat logprobs.content of a greedy run: the reference tokens, bytes and logprobs, top_logprobs
  // sorted with the chosen token first.
  static void expect_chat_content(const Json& content, const std::vector<int32_t>& prompt, size_t top_n,
                                  const std::string& what) {
    const std::vector<int32_t> want = greedy_tokens(prompt, int64_t(content.size()));
    ASSERT_EQ(want.size(), content.size()) << what;
    const auto ref = reference_log_softmax(*model_, prompt, want);
    for (size_t j = 0; j < want.size(); ++j) {
      const Json& e = content[j];
      const std::string bytes(tokenizer_->token_bytes(want[j]));
      EXPECT_EQ(e["token"], logprob_token_text(bytes)) << what << " token " << j;
      EXPECT_EQ(e["bytes"], bytes_json(bytes)) << what << " token " << j;
      EXPECT_NEAR(e["logprob"].get<double>(), ref[j][size_t(want[j])], kLogprobTol) << what << " token " << j;
      const Json& top = e["top_logprobs"];
      ASSERT_EQ(top.size(), top_n) << what;
      for (size_t k = 0; k < top.size(); ++k) {
        if (k > 0) {
          EXPECT_GE(top[k - 1]["logprob"].get<double>(), top[k]["logprob"].get<double>()) << what;
        }
        const int32_t id = id_of_bytes(top[k]["bytes"]);
        ASSERT_GE(id, 0) << what << " rank " << k;
        EXPECT_EQ(top[k]["token"], logprob_token_text(tokenizer_->token_bytes(id))) << what << " rank " << k;
        EXPECT_NEAR(top[k]["logprob"].get<double>(), ref[j][size_t(id)], kLogprobTol) << what << " rank " << k;
      }
      if (top_n > 0) {
        EXPECT_EQ(top[0]["bytes"], e["bytes"]) << what << ": greedy chose the most likely token";
        // Nothing outside the list is more likely than its last entry.
        const double last = top.back()["logprob"].get<double>();
        int more_likely = 0;
        for (double x : ref[j]) more_likely += x > last + kLogprobTol;
        EXPECT_LE(more_likely, int(top_n) - 1) << what << " token " << j;
      }
    }
  }
  static Model* model_;
  static Tokenizer* tokenizer_;
};
Model* ServeLogprobs::model_ = nullptr;
Tokenizer* ServeLogprobs::tokenizer_ = nullptr;

TEST_F(ServeLogprobs, ChatGreedyLogprobsEqualTheModelsLogSoftmax) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const Json messages = Json::array({{{"role", "user"}, {"content", "The jury said"}}});
  const Json body = {{"messages", messages}, {"max_tokens", 24}, {"temperature", 0},
                     {"logprobs", true}, {"top_logprobs", 5}};
  const auto [status, text] = s.post("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << text;
  const Json r = Json::parse(text);
  const Json& content = r["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(r["choices"][0]["logprobs"]["refusal"], nullptr);
  ASSERT_EQ(int64_t(content.size()), r["usage"]["completion_tokens"].get<int64_t>());
  expect_chat_content(content, chat_prompt(kTemplate, messages), 5, "chat");
  // The tokens spell the message (no markers in this output).
  std::string joined;
  for (const Json& e : content)
    for (const Json& b : e["bytes"]) joined += char(b.get<int>());
  EXPECT_EQ(joined, r["choices"][0]["message"]["content"].get<std::string>());

  // Streamed: each chunk carries the logprobs of its tokens; together they are the whole list.
  Json streamed = Json::array();
  std::string stream_text;
  for (const Json& c : s.stream("/v1/chat/completions", body)) {
    const Json& lp = c["choices"][0]["logprobs"];
    const Json& delta = c["choices"][0]["delta"];
    if (delta.contains("content")) stream_text += delta["content"].get<std::string>();
    if (lp.is_null()) continue;
    std::string chunk_bytes;
    for (const Json& e : lp["content"]) {
      streamed.push_back(e);
      for (const Json& b : e["bytes"]) chunk_bytes += char(b.get<int>());
    }
    // English text, whole characters: a chunk's text is exactly its tokens' bytes.
    if (delta.contains("content")) {
      EXPECT_EQ(chunk_bytes, delta["content"].get<std::string>());
    }
  }
  EXPECT_EQ(stream_text, r["choices"][0]["message"]["content"].get<std::string>());
  ASSERT_EQ(streamed.size(), content.size());
  for (size_t j = 0; j < content.size(); ++j) {
    EXPECT_EQ(streamed[j]["token"], content[j]["token"]) << j;
    EXPECT_NEAR(streamed[j]["logprob"].get<double>(), content[j]["logprob"].get<double>(), kLogprobTol) << j;
    EXPECT_EQ(streamed[j]["top_logprobs"].size(), 5u);
  }

  // Without top_logprobs: empty lists; without logprobs: null.
  Json no_top = body;
  no_top.erase("top_logprobs");
  const Json r0 = Json::parse(s.post("/v1/chat/completions", no_top).second);
  for (const Json& e : r0["choices"][0]["logprobs"]["content"]) EXPECT_EQ(e["top_logprobs"], Json::array());
  Json plain = body;
  plain.erase("top_logprobs");
  plain.erase("logprobs");
  EXPECT_EQ(Json::parse(s.post("/v1/chat/completions", plain).second)["choices"][0]["logprobs"], nullptr);
}

TEST_F(ServeLogprobs, ReasoningTokensAreIncluded) {
  LiveServer s(*model_, *tokenizer_, kR1Template, false);
  const Json messages = Json::array({{{"role", "user"}, {"content", "Why is the sky blue?"}}});
  const Json body = {{"messages", messages}, {"max_tokens", 20}, {"temperature", 0},
                     {"logprobs", true}, {"top_logprobs", 2}};
  const auto [status, text] = s.post("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << text;
  const Json r = Json::parse(text);
  ASSERT_TRUE(r["choices"][0]["message"].contains("reasoning_content")) << text;
  const Json& content = r["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(int64_t(content.size()), r["usage"]["completion_tokens"].get<int64_t>());
  expect_chat_content(content, chat_prompt(kR1Template, messages), 2, "reasoning");
  // Streamed, the logprobs ride on the reasoning_content deltas.
  size_t n = 0;
  for (const Json& c : s.stream("/v1/chat/completions", body)) {
    const Json& lp = c["choices"][0]["logprobs"];
    if (!lp.is_null()) n += lp["content"].size();
  }
  EXPECT_EQ(n, content.size());
}

TEST_F(ServeLogprobs, CompletionLegacyLogprobs) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const std::string prompt = "The jury said";
  const Json body = {{"prompt", prompt}, {"max_tokens", 30}, {"temperature", 0}, {"logprobs", 3}};
  const auto [status, text] = s.post("/v1/completions", body);
  ASSERT_EQ(status, 200) << text;
  const Json r = Json::parse(text);
  const Json& lp = r["choices"][0]["logprobs"];
  const std::string out = r["choices"][0]["text"];
  const std::vector<int32_t> p = tokenizer_->encode(prompt, true);
  const std::vector<int32_t> want = greedy_tokens(p, 30);
  ASSERT_EQ(lp["tokens"].size(), want.size());
  ASSERT_EQ(lp["token_logprobs"].size(), want.size());
  ASSERT_EQ(lp["top_logprobs"].size(), want.size());
  ASSERT_EQ(lp["text_offset"].size(), want.size());
  const auto ref = reference_log_softmax(*model_, p, want);
  int64_t offset = 0;
  for (size_t j = 0; j < want.size(); ++j) {
    const std::string bytes(tokenizer_->token_bytes(want[j]));
    EXPECT_EQ(lp["tokens"][j], logprob_token_text(bytes)) << j;
    EXPECT_NEAR(lp["token_logprobs"][j].get<double>(), ref[j][size_t(want[j])], kLogprobTol) << j;
    // logprobs 3: the three most likely, which under greedy include the chosen token.
    const Json& top = lp["top_logprobs"][j];
    ASSERT_EQ(top.size(), 3u) << j;
    ASSERT_TRUE(top.contains(logprob_token_text(bytes))) << j;
    double best = -INFINITY;
    for (auto it = top.begin(); it != top.end(); ++it) best = std::max(best, it.value().get<double>());
    EXPECT_EQ(top[logprob_token_text(bytes)].get<double>(), best) << j;
    EXPECT_EQ(lp["text_offset"][j].get<int64_t>(), offset) << j;
    EXPECT_EQ(out.substr(size_t(offset), bytes.size()), bytes) << j;  // ASCII output: offsets are bytes too
    offset += int64_t(bytes.size());
  }
  ASSERT_EQ(offset, int64_t(out.size()));

  // Streamed: the same lists, split over the chunks, each chunk with its own tokens.
  Json tokens = Json::array(), logprobs = Json::array(), offsets = Json::array();
  for (const Json& c : s.stream("/v1/completions", body)) {
    const Json& l = c["choices"][0]["logprobs"];
    if (l.is_null()) continue;
    std::string joined;
    for (size_t k = 0; k < l["tokens"].size(); ++k) {
      tokens.push_back(l["tokens"][k]);
      logprobs.push_back(l["token_logprobs"][k]);
      offsets.push_back(l["text_offset"][k]);
      joined += l["tokens"][k].get<std::string>();
      EXPECT_EQ(l["top_logprobs"][k].size(), 3u);
    }
    EXPECT_EQ(joined, c["choices"][0]["text"].get<std::string>());
  }
  EXPECT_EQ(tokens, lp["tokens"]);
  EXPECT_EQ(offsets, lp["text_offset"]);
  ASSERT_EQ(logprobs.size(), lp["token_logprobs"].size());
  for (size_t j = 0; j < logprobs.size(); ++j)
    EXPECT_NEAR(logprobs[j].get<double>(), lp["token_logprobs"][j].get<double>(), kLogprobTol);

  // logprobs 0: only the chosen token in each top_logprobs object.
  Json zero = body;
  zero["logprobs"] = 0;
  const Json r0 = Json::parse(s.post("/v1/completions", zero).second);
  for (const Json& t : r0["choices"][0]["logprobs"]["top_logprobs"]) EXPECT_EQ(t.size(), 1u);
  // A stop string cuts the text, not the list: one entry per generated token.
  Json stop = body;
  stop["stop"] = out.substr(10, 3);
  const Json rs = Json::parse(s.post("/v1/completions", stop).second);
  EXPECT_EQ(rs["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(int64_t(rs["choices"][0]["logprobs"]["tokens"].size()), rs["usage"]["completion_tokens"].get<int64_t>());
}

// echo + logprobs, as lm-evaluation-harness's local-completions backend scores a text: the logprobs
// cover the prompt tokens (the first one null), then the generated ones, with text offsets into the
// returned text (echo + completion).
TEST_F(ServeLogprobs, CompletionEchoReturnsPromptLogprobs) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const std::string prompt = "The jury said that the city";
  const std::vector<int32_t> p = tokenizer_->encode(prompt, true);  // the demo adds no BOS
  const size_t P = p.size();
  ASSERT_EQ(P, prompt.size()) << "byte-level demo: one token per byte";
  const auto ref = reference_prompt_log_softmax(*model_, p);
  // The prompt's entries of a legacy logprobs object: one per prompt token, the first null.
  auto expect_prompt_part = [&](const Json& lp, size_t top_n, const std::string& what) {
    ASSERT_GE(lp["tokens"].size(), P) << what;
    EXPECT_EQ(lp["token_logprobs"][0], nullptr) << what;
    EXPECT_EQ(lp["top_logprobs"][0], nullptr) << what;
    for (size_t j = 0; j < P; ++j) {
      EXPECT_EQ(lp["tokens"][j], logprob_token_text(tokenizer_->token_bytes(p[j]))) << what << " " << j;
      EXPECT_EQ(lp["text_offset"][j].get<int64_t>(), int64_t(j)) << what << " " << j;  // ASCII, a byte a token
      if (j == 0) continue;
      const std::vector<double>& r = ref[j - 1];
      EXPECT_NEAR(lp["token_logprobs"][j].get<double>(), r[size_t(p[j])], kLogprobTol) << what << " " << j;
      const Json& top = lp["top_logprobs"][j];
      ASSERT_TRUE(top.contains(lp["tokens"][j].get<std::string>())) << what << " " << j;
      EXPECT_GE(top.size(), top_n) << what;
      EXPECT_LE(top.size(), top_n + 1) << what;
      double best = -INFINITY;
      for (auto it = top.begin(); it != top.end(); ++it) best = std::max(best, it.value().get<double>());
      if (top_n > 0) {
        EXPECT_NEAR(best, *std::max_element(r.begin(), r.end()), kLogprobTol) << what << " " << j;
      }
    }
  };

  // max_tokens 0: the prompt alone.
  const Json score = {{"prompt", prompt}, {"echo", true}, {"logprobs", 1}, {"max_tokens", 0}, {"temperature", 0}};
  auto [status, text] = s.post("/v1/completions", score);
  ASSERT_EQ(status, 200) << text;
  Json r = Json::parse(text);
  EXPECT_EQ(r["choices"][0]["text"], prompt);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], int64_t(P));
  EXPECT_EQ(r["usage"]["completion_tokens"], 0);
  const Json& lp0 = r["choices"][0]["logprobs"];
  EXPECT_EQ(lp0["tokens"].size(), P);
  EXPECT_EQ(lp0["token_logprobs"].size(), P);
  EXPECT_EQ(lp0["top_logprobs"].size(), P);
  EXPECT_EQ(lp0["text_offset"].size(), P);
  expect_prompt_part(lp0, 1, "max_tokens 0");
  // The same prompt as token ids: the echo is its decoding.
  Json by_ids = score;
  by_ids["prompt"] = p;
  by_ids["logprobs"] = 0;
  std::tie(status, text) = s.post("/v1/completions", by_ids);
  ASSERT_EQ(status, 200) << text;
  r = Json::parse(text);
  EXPECT_EQ(r["choices"][0]["text"], prompt);
  expect_prompt_part(r["choices"][0]["logprobs"], 0, "token ids");

  // With output: the prompt's entries, then the generated tokens' with offsets past the echo.
  const int64_t n = 10;
  const Json body = {{"prompt", prompt}, {"echo", true}, {"logprobs", 2}, {"max_tokens", n}, {"temperature", 0}};
  std::tie(status, text) = s.post("/v1/completions", body);
  ASSERT_EQ(status, 200) << text;
  r = Json::parse(text);
  const std::string out = r["choices"][0]["text"];
  const Json& lp = r["choices"][0]["logprobs"];
  const std::vector<int32_t> want = greedy_tokens(p, n);
  ASSERT_EQ(lp["tokens"].size(), P + want.size());
  expect_prompt_part(lp, 2, "with output");
  ASSERT_EQ(out.substr(0, P), prompt);
  const auto gref = reference_log_softmax(*model_, p, want);
  for (size_t j = 0; j < want.size(); ++j) {
    const std::string bytes(tokenizer_->token_bytes(want[j]));
    EXPECT_EQ(lp["tokens"][P + j], logprob_token_text(bytes)) << j;
    EXPECT_NEAR(lp["token_logprobs"][P + j].get<double>(), gref[j][size_t(want[j])], kLogprobTol) << j;
    const int64_t off = lp["text_offset"][P + j].get<int64_t>();
    EXPECT_EQ(out.substr(size_t(off), bytes.size()), bytes) << j;  // offsets index the returned text
  }
  EXPECT_EQ(lp["text_offset"][P].get<int64_t>(), int64_t(P));

  // Streamed: the first chunk is the echo with the prompt's entries; the chunks' lists together
  // equal the whole response's.
  const std::vector<Json> chunks = s.stream("/v1/completions", body);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0]["choices"][0]["text"], prompt);
  EXPECT_EQ(chunks[0]["choices"][0]["logprobs"]["tokens"].size(), P);
  Json tokens = Json::array(), logprobs = Json::array(), offsets = Json::array();
  std::string streamed_text;
  for (const Json& c : chunks) {
    streamed_text += c["choices"][0]["text"].get<std::string>();
    const Json& l = c["choices"][0]["logprobs"];
    if (l.is_null()) continue;
    for (size_t k = 0; k < l["tokens"].size(); ++k) {
      tokens.push_back(l["tokens"][k]);
      logprobs.push_back(l["token_logprobs"][k]);
      offsets.push_back(l["text_offset"][k]);
    }
  }
  EXPECT_EQ(streamed_text, out);
  EXPECT_EQ(tokens, lp["tokens"]);
  EXPECT_EQ(offsets, lp["text_offset"]);
  ASSERT_EQ(logprobs.size(), lp["token_logprobs"].size());
  EXPECT_EQ(logprobs[0], nullptr);
  for (size_t j = 1; j < logprobs.size(); ++j)
    EXPECT_NEAR(logprobs[j].get<double>(), lp["token_logprobs"][j].get<double>(), kLogprobTol) << j;
  // Streamed with max_tokens 0: the echo chunk, then the finish.
  const std::vector<Json> only = s.stream("/v1/completions", score);
  ASSERT_GE(only.size(), 2u);
  EXPECT_EQ(only[0]["choices"][0]["logprobs"]["tokens"].size(), P);
  EXPECT_EQ(only.back()["choices"][0]["finish_reason"], "length");

  // With speculative decoding the prompt's entries are the same.
  LiveServer spec(*model_, *tokenizer_, kTemplate, true);
  const Json rs = Json::parse(spec.post("/v1/completions", body).second);
  expect_prompt_part(rs["choices"][0]["logprobs"], 2, "speculative");
  EXPECT_EQ(rs["choices"][0]["logprobs"]["tokens"], lp["tokens"]);
}

TEST_F(ServeLogprobs, PartialUtf8TokensUseByteEscapes) {
  // The messages' text alone, so a chat request continues exactly what the completion prompt does.
  LiveServer s(*model_, *tokenizer_, "{% for m in messages %}{{ m.content }}{% endfor %}", false);
  // Sampling at a high temperature from a prompt full of non-ASCII text makes the byte-level model
  // emit bytes >= 0x80, each a token that is not valid UTF-8 alone. It was trained on the (ASCII)
  // Brown Corpus, so they are rare: 200 tokens hold a few (60 did for the 128-byte demo model).
  const std::string text = "caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC \xC3\xA9t\xC3\xA9 \xC3\xA0 \xC3\xA9";
  const Json body = {{"prompt", text},
                     {"max_tokens", 200}, {"temperature", 2}, {"seed", 1}, {"logprobs", 1}};
  const Json r = Json::parse(s.post("/v1/completions", body).second);
  const Json& lp = r["choices"][0]["logprobs"];
  int escaped = 0;
  for (const Json& t : lp["tokens"]) {
    const std::string tok = t.get<std::string>();
    if (tok.rfind("bytes:\\x", 0) == 0) {
      ++escaped;
      EXPECT_EQ(tok.size(), 10u) << tok;  // "bytes:\xNN": one byte per demo token
    }
  }
  EXPECT_GT(escaped, 0) << r.dump();
  // The chat layout has the raw value in `bytes`.
  const Json chat = {{"messages", Json::array({{{"role", "user"}, {"content", text}}})},
                     {"add_generation_prompt", false}, {"max_tokens", 200}, {"temperature", 2}, {"seed", 1},
                     {"logprobs", true}};
  const Json rc = Json::parse(s.post("/v1/chat/completions", chat).second);
  int high = 0;
  for (const Json& e : rc["choices"][0]["logprobs"]["content"]) {
    const int b = e["bytes"][0].get<int>();
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", b);
    if (b >= 0x80) {
      ++high;
      EXPECT_EQ(e["token"], std::string("bytes:") + hex);
    }
  }
  EXPECT_GT(high, 0) << rc.dump();
  // The same prompt and seed: the two layouts name the same tokens.
  const Json& content = rc["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), lp["tokens"].size());
  for (size_t j = 0; j < content.size(); ++j) {
    EXPECT_EQ(content[j]["token"], lp["tokens"][j]) << j;
    EXPECT_NEAR(content[j]["logprob"].get<double>(), lp["token_logprobs"][j].get<double>(), kLogprobTol) << j;
  }
}

TEST_F(ServeLogprobs, SpeculativeDecodingReportsTheVerifiedDistribution) {
  LiveServer plain(*model_, *tokenizer_, kTemplate, false);
  LiveServer spec(*model_, *tokenizer_, kTemplate, true);
  const Json messages = Json::array({{{"role", "user"}, {"content", "She looked at him and said"}}});
  const Json body = {{"messages", messages}, {"max_tokens", 32}, {"temperature", 0},
                     {"logprobs", true}, {"top_logprobs", 3}};
  const Json a = Json::parse(plain.post("/v1/chat/completions", body).second);
  const Json b = Json::parse(spec.post("/v1/chat/completions", body).second);
  const Json& ca = a["choices"][0]["logprobs"]["content"];
  const Json& cb = b["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(ca.size(), cb.size());
  for (size_t j = 0; j < ca.size(); ++j) {
    EXPECT_EQ(cb[j]["token"], ca[j]["token"]) << j;
    EXPECT_NEAR(cb[j]["logprob"].get<double>(), ca[j]["logprob"].get<double>(), kLogprobTol) << j;
    for (size_t k = 0; k < 3; ++k)
      EXPECT_NEAR(cb[j]["top_logprobs"][k]["logprob"].get<double>(), ca[j]["top_logprobs"][k]["logprob"].get<double>(),
                  kLogprobTol);
  }
  expect_chat_content(cb, chat_prompt(kTemplate, messages), 3, "speculative");
  EXPECT_GT(spec.engine->stats().mtp_accepted, 0) << "drafts were accepted (two tokens per step)";
}

TEST_F(ServeLogprobs, BadValuesAnswer400NamingTheField) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const Json messages = Json::array({{{"role", "user"}, {"content", "Hi"}}});
  struct Case {
    std::string path;
    Json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", {{"messages", messages}, {"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {"/v1/chat/completions", {{"messages", messages}, {"logprobs", "yes"}}, "logprobs"},
      {"/v1/chat/completions", {{"messages", messages}, {"top_logprobs", 2}}, "top_logprobs"},
      {"/v1/completions", {{"prompt", "x"}, {"logprobs", 6}}, "logprobs"},
      {"/v1/completions", {{"prompt", "x"}, {"logprobs", true}}, "logprobs"},
      {"/v1/completions", {{"prompt", "x"}, {"logprobs", 6}, {"echo", true}}, "logprobs"},
      {"/v1/completions", {{"prompt", "x"}, {"logprobs", 2}, {"max_tokens", 0}}, "max_tokens"},  // 0 needs echo
      {"/v1/chat/completions", {{"messages", messages}, {"max_tokens", 0}}, "max_tokens"},
  };
  for (const Case& c : cases) {
    const auto [status, text] = s.post(c.path, c.body);
    EXPECT_EQ(status, 400) << c.body.dump();
    const Json e = Json::parse(text)["error"];
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_EQ(e["param"], c.param) << c.body.dump();
    EXPECT_NE(e["message"].get<std::string>().find(c.param), std::string::npos) << e.dump();
  }
}

}  // namespace
}  // namespace dseek::server
