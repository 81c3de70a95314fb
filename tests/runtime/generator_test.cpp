// Generation end to end on a small random model that uses the real DeepSeek-V3 tokenizer: the
// cached, chunked decode loop must produce exactly what recomputing the whole sequence gives.
#include "dseek/runtime/generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/shared_dir.h"
#include "dseek/core/mapped_file.h"
#include "dseek/core/error.h"
#include "dseek/model/init_checkpoint.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;

// One model for the whole suite: the golden v3 geometry with the tokenizer's vocabulary.
class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::path(::testing::TempDir()) / ("dseek_gen_" + std::to_string(::getpid()))).string();
    nlohmann::json c = nlohmann::json::parse(read_text_file(test::golden_model_dir("v3") + "/config.json"));
    c["vocab_size"] = 129280;
    InitOptions o;
    o.std = 0.1f;
    o.with_mtp = false;
    init_checkpoint(c.dump(), "v3 with the V3 vocabulary", dir_, o);
    const std::string tok = test::shared_dir() + "/data/tokenizers/deepseek-v3";
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tok + "/" + f, dir_ + "/" + f);
    model_ = new Model(Model::load(dir_));
    tokenizer_ = new Tokenizer(Tokenizer::load(dir_));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
    fs::remove_all(dir_);
  }

  // Greedy continuation by recomputing the full sequence for every token (no cache reuse).
  static std::vector<int32_t> greedy_by_recompute(std::vector<int32_t> seq, int n) {
    const ModelConfig& c = model_->config();
    std::vector<int32_t> out;
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    for (int i = 0; i < n; ++i) {
      const int64_t T = int64_t(seq.size());
      Workspace ws(c, T, T);
      KVCache cache(c, model_->n_cache_layers(), T);
      model_->forward(seq.data(), T, 0, cache.view(), AttnImpl::kNaive, ws, logits.data(), T - 1);
      const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out.push_back(best);
      seq.push_back(best);
    }
    return out;
  }

  static inline std::string dir_;
  static inline Model* model_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

TEST_F(GeneratorTest, GreedyEqualsFullRecomputation) {
  const std::vector<int32_t> prompt = tokenizer_->encode("The quick brown fox jumps over the lazy dog.", true);
  ThreadPool pool(2);
  Generator gen(*model_, *tokenizer_, 128, &pool, /*prefill_chunk=*/4);  // several prefill chunks
  Sampler greedy({}, model_->config().vocab_size);
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.stop_at_eos = false;
  std::string streamed;
  GenerateResult r = gen.generate(prompt, greedy, o, [&](std::string_view s) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(r.tokens, greedy_by_recompute(prompt, 12));
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text, tokenizer_->decode(r.tokens, false));
  EXPECT_EQ(r.prompt_tokens, int64_t(prompt.size()));
}

TEST_F(GeneratorTest, ReusesTheCommonPrefixOfTheNextPrompt) {
  ThreadPool pool(1);
  Generator gen(*model_, *tokenizer_, 256, &pool);
  Sampler greedy({}, model_->config().vocab_size);
  GenerateOptions o;
  o.max_new_tokens = 6;
  o.stop_at_eos = false;
  const std::vector<int32_t> p1 = tokenizer_->encode("First turn of a conversation.", true);
  GenerateResult r1 = gen.generate(p1, greedy, o);
  // The next prompt extends the first one and its answer (what a chat does).
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), r1.tokens.begin(), r1.tokens.end());
  const std::vector<int32_t> more = tokenizer_->encode(" And a second question?", false);
  p2.insert(p2.end(), more.begin(), more.end());
  GenerateResult r2 = gen.generate(p2, greedy, o);
  // All but the last generated token were fed through the cache; it is recomputed like the rest.
  EXPECT_EQ(r2.cached_prompt_tokens, int64_t(p1.size() + r1.tokens.size() - 1));
  Generator fresh(*model_, *tokenizer_, 256, &pool);
  GenerateResult r3 = fresh.generate(p2, greedy, o);
  EXPECT_EQ(r3.cached_prompt_tokens, 0);
  EXPECT_EQ(r2.tokens, r3.tokens);
}

TEST_F(GeneratorTest, StopStringEndsTextBeforeIt) {
  ThreadPool pool(1);
  Generator gen(*model_, *tokenizer_, 128, &pool);
  Sampler greedy({}, model_->config().vocab_size);
  GenerateOptions o;
  o.max_new_tokens = 16;
  o.stop_at_eos = false;
  const std::vector<int32_t> prompt = tokenizer_->encode("Once upon a time", true);
  const std::string full = gen.generate(prompt, greedy, o).text;
  ASSERT_GE(full.size(), 6u);
  // Stop at a piece of text from the middle of the greedy output.
  o.stop = {full.substr(full.size() / 2, 3)};
  std::string streamed;
  GenerateResult r = gen.generate(prompt, greedy, o, [&](std::string_view s) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text, full.substr(0, full.find(o.stop[0])));
  EXPECT_EQ(streamed, r.text) << "text of the stop string must not have been streamed";
}

TEST_F(GeneratorTest, CallbackCanCancelAndContextIsBounded) {
  ThreadPool pool(1);
  Sampler greedy({}, model_->config().vocab_size);
  GenerateOptions o;
  o.max_new_tokens = 100;
  o.stop_at_eos = false;
  const std::vector<int32_t> prompt = tokenizer_->encode("Count: one two three", true);
  Generator small(*model_, *tokenizer_, int64_t(prompt.size()) + 5, &pool);
  GenerateResult r = small.generate(prompt, greedy, o);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_LE(int64_t(prompt.size() + r.tokens.size()), int64_t(prompt.size()) + 6);
  int pieces = 0;
  GenerateResult c = small.generate(prompt, greedy, o, [&](std::string_view) { return ++pieces < 2; });
  EXPECT_EQ(c.finish_reason, "stop");
  EXPECT_LE(c.tokens.size(), 4u);
  Generator tiny(*model_, *tokenizer_, 4, &pool);
  EXPECT_THROW(tiny.generate(prompt, greedy, o), Error);  // prompt longer than the context
}

}  // namespace
}  // namespace dseek
