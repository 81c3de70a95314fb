// Continuous batching: whatever the engine batches, preempts or reuses from the prefix cache, each
// request's output must equal what the single-sequence Generator produces for it alone. Uses the
// embedded demo model (models/brown-demo, byte-level tokenizer), which writes English.
#include "dseek/runtime/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "dseek/runtime/generator.h"

namespace dseek {
namespace {

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";

// Collects one request's events.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;
  std::vector<int32_t> tokens;
  EngineEvent last;
  int events = 0;
  bool done = false;

  std::function<void(const EngineEvent&)> callback() {
    return [this](const EngineEvent& e) {
      std::lock_guard lk(mu);
      text += e.text;
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      ++events;
      if (e.done) {
        last = e;
        done = true;
      }
      cv.notify_all();
    };
  }
  bool wait(int seconds = 60) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, std::chrono::seconds(seconds), [&] { return done; });
  }
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(Model::load(kDemo));
    tokenizer_ = new Tokenizer(Tokenizer::load(kDemo));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static std::vector<int32_t> encode(const std::string& s) { return tokenizer_->encode(s, false); }

  // The reference: the single-sequence generator, fresh for each prompt.
  static GenerateResult reference(const std::vector<int32_t>& prompt, const SamplingParams& sp, int64_t n,
                                  const std::vector<std::string>& stop = {}) {
    Generator g(*model_, *tokenizer_, 256, nullptr, 32);
    Sampler sampler(sp, model_->config().vocab_size);
    GenerateOptions o;
    o.max_new_tokens = n;
    o.stop = stop;
    return g.generate(prompt, sampler, o);
  }
  static EngineRequest request(const std::vector<int32_t>& prompt, const SamplingParams& sp, int64_t n,
                               Collector& c) {
    EngineRequest r;
    r.prompt = prompt;
    r.sampling = sp;
    r.max_new_tokens = n;
    r.on_event = c.callback();
    return r;
  }
  static EngineOptions options() {
    EngineOptions o;
    o.max_batch = 4;
    o.max_batch_tokens = 24;  // forces prefill to run in chunks beside decodes
    o.context_length = 256;
    o.block_size = 8;
    o.kv_cache_bytes = 64 << 20;
    return o;
  }
  static Model* model_;
  static Tokenizer* tokenizer_;
};
Model* EngineTest::model_ = nullptr;
Tokenizer* EngineTest::tokenizer_ = nullptr;

const std::vector<std::string> kPrompts = {
    "The jury said", "The jury said that the city", "In the morning the", "She looked at him and said",
    "The committee of the state legislature", "He"};

TEST_F(EngineTest, ConcurrentGreedyRequestsMatchTheSingleSequenceGenerator) {
  ThreadPool pool(2);
  Engine engine(*model_, *tokenizer_, &pool, options());
  SamplingParams greedy;
  std::vector<std::unique_ptr<Collector>> cs;
  for (const std::string& p : kPrompts) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(request(encode(p), greedy, 40, *cs.back()));
  }
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait()) << "request " << i << " did not finish";
    const GenerateResult want = reference(encode(kPrompts[i]), greedy, 40);
    EXPECT_EQ(cs[i]->tokens, want.tokens) << kPrompts[i];
    EXPECT_EQ(cs[i]->text, want.text) << kPrompts[i];
    EXPECT_EQ(cs[i]->last.finish_reason, want.finish_reason);
    EXPECT_EQ(cs[i]->last.completion_tokens, int64_t(want.tokens.size()));
    EXPECT_EQ(cs[i]->last.prompt_tokens, int64_t(encode(kPrompts[i]).size()));
    EXPECT_GT(cs[i]->events, 2) << "text should stream in several events";
  }
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.requests_finished, int64_t(kPrompts.size()));
  EXPECT_GT(st.step_sequences, st.steps) << "some steps should have batched several sequences";
}

TEST_F(EngineTest, SeededSamplingMatchesTheGenerator) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_p = 0.95f;
  sp.seed = 42;
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 3; ++i) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(request(encode(kPrompts[size_t(i)]), sp, 30, *cs.back()));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(cs[size_t(i)]->wait());
    EXPECT_EQ(cs[size_t(i)]->tokens, reference(encode(kPrompts[size_t(i)]), sp, 30).tokens);
  }
}

TEST_F(EngineTest, SharedPrefixIsReusedFromTheCache) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  const std::string system = "The Fulton County Grand Jury said Friday an investigation of recent primary election. ";
  SamplingParams greedy;
  Collector a, b;
  engine.submit(request(encode(system + "It"), greedy, 10, a));
  ASSERT_TRUE(a.wait());
  EXPECT_EQ(a.last.cached_prompt_tokens, 0);
  const auto pb = encode(system + "The jury");
  engine.submit(request(pb, greedy, 10, b));
  ASSERT_TRUE(b.wait());
  // Every full block of the common prefix is reused (block size 8).
  const int64_t common = int64_t(encode(system).size());
  EXPECT_GE(b.last.cached_prompt_tokens, common / 8 * 8);
  EXPECT_EQ(b.tokens, reference(pb, greedy, 10).tokens);
  const EngineStats st = engine.stats();
  EXPECT_GE(st.prefix_hit_tokens, common / 8 * 8);
  EXPECT_GT(st.prefix_query_tokens, st.prefix_hit_tokens);
}

TEST_F(EngineTest, PreemptionUnderMemoryPressureKeepsOutputsExact) {
  EngineOptions o = options();
  o.context_length = 64;
  o.block_size = 4;
  // Room for one full context plus a little: four sequences growing to 43-57 positions must preempt.
  o.kv_cache_bytes = PagedKVCache::bytes_per_block(model_->config(), model_->n_cache_layers(), 4) * 20;
  o.prefix_cache = false;
  Engine engine(*model_, *tokenizer_, nullptr, o);
  SamplingParams greedy;
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(request(encode(kPrompts[size_t(i)]), greedy, 30, *cs.back()));
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(cs[size_t(i)]->wait());
    EXPECT_EQ(cs[size_t(i)]->tokens, reference(encode(kPrompts[size_t(i)]), greedy, 30).tokens) << i;
  }
  EXPECT_GT(engine.stats().preemptions, 0);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, StopStringsEndTheTextBeforeThem) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  SamplingParams greedy;
  const auto full = reference(encode("The jury said"), greedy, 40);
  ASSERT_GT(full.text.size(), 12u);
  const std::string stop = full.text.substr(8, 3);
  Collector c;
  EngineRequest r = request(encode("The jury said"), greedy, 40, c);
  r.stop = {stop};
  engine.submit(std::move(r));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(c.last.finish_reason, "stop");
}

TEST_F(EngineTest, CancelFreesTheBlocks) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  SamplingParams greedy;
  Collector c;
  const uint64_t id = engine.submit(request(encode("The jury said"), greedy, 200, c));
  {
    std::unique_lock lk(c.mu);
    c.cv.wait_for(lk, std::chrono::seconds(30), [&] { return c.events > 0; });
  }
  engine.cancel(id);
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.last.finish_reason, "cancelled");
  EXPECT_LT(c.last.completion_tokens, 200);
  // The statistics are updated after the step that processed the cancel.
  for (int i = 0; i < 100 && engine.stats().kv_blocks_used != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
  EXPECT_EQ(engine.stats().requests_cancelled, 1);
}

TEST_F(EngineTest, RejectsWhatCanNeverRunAndAFullQueue) {
  EngineOptions o = options();
  o.max_queue = 2;
  o.max_batch = 1;
  Engine engine(*model_, *tokenizer_, nullptr, o);
  SamplingParams greedy;
  Collector dummy;
  EXPECT_THROW(engine.submit(request({}, greedy, 5, dummy)), Error);
  EXPECT_THROW(engine.submit(request(std::vector<int32_t>(256, 65), greedy, 5, dummy)), Error);
  EXPECT_THROW(engine.submit(request({65, 9999}, greedy, 5, dummy)), Error);
  SamplingParams bad;
  bad.top_p = 0.f;
  EXPECT_THROW(engine.submit(request({65}, bad, 5, dummy)), Error);
  // One running and at most two waiting: later submissions are refused quickly.
  std::vector<std::unique_ptr<Collector>> cs;
  int refused = 0;
  for (int i = 0; i < 8; ++i) {
    cs.push_back(std::make_unique<Collector>());
    try {
      engine.submit(request(encode("The jury said"), greedy, 100, *cs.back()));
    } catch (const EngineBusy& e) {
      EXPECT_FALSE(e.stopping);
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  engine.shutdown(/*drain=*/false);
  EXPECT_THROW(engine.submit(request(encode("The"), greedy, 5, dummy)), EngineBusy);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, BudgetBelowOneContextIsAClearError) {
  EngineOptions o = options();
  o.kv_cache_bytes = 1024;
  try {
    Engine engine(*model_, *tokenizer_, nullptr, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-gb"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dseek
