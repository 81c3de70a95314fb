// Continuous batching: whatever the engine batches, preempts or reuses from the prefix cache, each
// request's output must equal what the single-sequence Generator produces for it alone. Uses the
// embedded demo model (models/brown-demo, byte-level tokenizer), which writes English.
#include "dseek/runtime/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>

#include "common/shared_dir.h"
#include "dseek/runtime/generator.h"
#include "dseek/runtime/kv_cache.h"
#include "common/reference_logprobs.h"

namespace dseek {
namespace {

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";

// Collects one request's events.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  int unaligned_logprob_events = 0;  // events whose logprobs are neither empty nor one per token
  std::vector<TokenLogprobs> prompt_logprobs;
  int prompt_logprob_event = -1;  // the (0-based) event that carried them
  EngineEvent last;
  int events = 0;
  int finals = 0;  // events with done set: exactly one per sequence
  bool done = false;

  std::function<void(const EngineEvent&)> callback() {
    return [this](const EngineEvent& e) {
      std::lock_guard lk(mu);
      text += e.text;
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      logprobs.insert(logprobs.end(), e.logprobs.begin(), e.logprobs.end());
      if (!e.logprobs.empty() && e.logprobs.size() != e.tokens.size()) ++unaligned_logprob_events;
      if (!e.prompt_logprobs.empty()) {
        EXPECT_EQ(prompt_logprob_event, -1) << "prompt logprobs come in one event";
        prompt_logprob_event = events;
        prompt_logprobs = e.prompt_logprobs;
      }
      ++events;
      if (e.done) {
        last = e;
        done = true;
        ++finals;
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
                                  const std::vector<std::string>& stop = {}, KVDtype kv = KVDtype::kF32) {
    Generator g(*model_, *tokenizer_, 256, nullptr, 32, kv);
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

// Logprobs are log_softmax of the logits the token was drawn from, before penalties and temperature.
// The reference runs Model::forward once over prompt + generated tokens (contiguous cache, one
// sequence): row j of the result is the distribution generated[j] came from. The engine's batched,
// chunked, paged forward differs from it by float rounding only (batch_forward_test: 1e-5 on logits).
constexpr double kLogprobTol = 1e-4;

// Every generated token has one entry with its raw logprob and the top_n most likely tokens of the
// reference distribution, in order; under greedy decoding the chosen token is the first of them.
void expect_logprobs_match(const Model& m, const std::vector<int32_t>& prompt, const Collector& c, int top_n,
                           bool greedy, const std::string& what) {
  ASSERT_EQ(c.logprobs.size(), c.tokens.size()) << what;
  EXPECT_EQ(c.unaligned_logprob_events, 0) << what;
  const auto ref = reference_log_softmax(m, prompt, c.tokens);
  for (size_t j = 0; j < c.tokens.size(); ++j) {
    const TokenLogprobs& lp = c.logprobs[j];
    const std::vector<double>& r = ref[j];
    ASSERT_EQ(lp.token, c.tokens[j]) << what << " token " << j;
    EXPECT_NEAR(lp.logprob, r[size_t(lp.token)], kLogprobTol) << what << " token " << j;
    ASSERT_EQ(lp.n_top, top_n) << what;
    std::vector<int32_t> order(r.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return r[size_t(a)] > r[size_t(b)]; });
    for (int32_t k = 0; k < lp.n_top; ++k) {
      const TopLogprob& t = lp.top[size_t(k)];
      EXPECT_NEAR(t.logprob, r[size_t(t.token)], kLogprobTol) << what << " token " << j << " rank " << k;
      if (k > 0) {
        EXPECT_GE(lp.top[size_t(k - 1)].logprob, t.logprob) << what << " token " << j;
      }
      // The rank's probability is the reference's (ids may swap only between near-ties).
      EXPECT_NEAR(t.logprob, r[size_t(order[size_t(k)])], kLogprobTol) << what << " token " << j << " rank " << k;
    }
    if (greedy && lp.n_top > 0) {
      EXPECT_EQ(lp.top[0].token, lp.token) << what << " token " << j;
    }
  }
}

// Prompt logprobs: entry j is prompt[j + 1] under the reference distribution at position j, with the
// top_n most likely tokens of that distribution.
void expect_prompt_logprobs_match(const Model& m, const std::vector<int32_t>& prompt,
                                  const std::vector<TokenLogprobs>& lps, int top_n, const std::string& what) {
  ASSERT_EQ(lps.size(), prompt.size() - 1) << what;
  const auto ref = reference_prompt_log_softmax(m, prompt);
  for (size_t j = 0; j < lps.size(); ++j) {
    const TokenLogprobs& lp = lps[j];
    const std::vector<double>& r = ref[j];
    ASSERT_EQ(lp.token, prompt[j + 1]) << what << " position " << j;
    EXPECT_NEAR(lp.logprob, r[size_t(lp.token)], kLogprobTol) << what << " position " << j;
    ASSERT_EQ(lp.n_top, top_n) << what;
    std::vector<double> sorted = r;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (int32_t k = 0; k < lp.n_top; ++k) {
      const TopLogprob& t = lp.top[size_t(k)];
      EXPECT_NEAR(t.logprob, r[size_t(t.token)], kLogprobTol) << what << " position " << j << " rank " << k;
      EXPECT_NEAR(t.logprob, sorted[size_t(k)], kLogprobTol) << what << " position " << j << " rank " << k;
    }
  }
}

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

// A bf16 KV cache (--kv-type bf16) in both: the demo model's exact float32 kernel gives every cache
// row the same value however the tokens are batched, so the rounded rows, and the outputs, agree
// exactly; the engine holds twice the blocks in the same budget.
TEST_F(EngineTest, Bf16CacheGreedyRequestsMatchTheBf16Generator) {
  ThreadPool pool(2);
  EngineOptions o = options();
  o.kv_dtype = KVDtype::kBF16;
  Engine engine(*model_, *tokenizer_, &pool, o);
  Engine f32_engine(*model_, *tokenizer_, &pool, options());
  EXPECT_GE(engine.kv_blocks(), 2 * f32_engine.kv_blocks()) << "half the bytes per latent row";
  EXPECT_LE(engine.kv_blocks(), 2 * f32_engine.kv_blocks() + 1);
  SamplingParams greedy;
  std::vector<std::unique_ptr<Collector>> cs;
  for (const std::string& p : kPrompts) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(request(encode(p), greedy, 40, *cs.back()));
  }
  int differs_from_f32 = 0;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait()) << "request " << i << " did not finish";
    const GenerateResult want = reference(encode(kPrompts[i]), greedy, 40, {}, KVDtype::kBF16);
    EXPECT_EQ(cs[i]->tokens, want.tokens) << kPrompts[i];
    differs_from_f32 += want.tokens != reference(encode(kPrompts[i]), greedy, 40).tokens;
  }
  std::printf("bf16 cache: %d of %zu greedy outputs differ from the f32 cache's (40 tokens each)\n", differs_from_f32,
              kPrompts.size());
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
  EXPECT_THROW(engine.submit(request({65}, greedy, -1, dummy)), Error);
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

TEST_F(EngineTest, LogprobsAreTheRawModelDistribution) {
  ThreadPool pool(2);
  Engine engine(*model_, *tokenizer_, &pool, options());
  SamplingParams greedy;
  // Temperature, truncation and penalties change which token is drawn, not the reported logprobs.
  SamplingParams sampled;
  sampled.temperature = 1.3f;
  sampled.top_k = 20;
  sampled.repetition_penalty = 1.3f;
  sampled.frequency_penalty = 0.5f;
  sampled.seed = 9;
  struct Case {
    std::string prompt;
    SamplingParams sp;
    int top_n;
  };
  const std::vector<Case> cases = {{kPrompts[0], greedy, 5},  {kPrompts[1], greedy, 0}, {kPrompts[4], greedy, 20},
                                   {kPrompts[2], sampled, 3}, {kPrompts[5], sampled, 1}};
  std::vector<std::unique_ptr<Collector>> cs;
  for (const Case& k : cases) {  // submitted together: batched decodes beside chunked prefills
    cs.push_back(std::make_unique<Collector>());
    EngineRequest r = request(encode(k.prompt), k.sp, 24, *cs.back());
    r.logprobs = true;
    r.top_logprobs = k.top_n;
    engine.submit(std::move(r));
  }
  Collector plain;
  engine.submit(request(encode(kPrompts[0]), greedy, 24, plain));
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    ASSERT_EQ(cs[i]->tokens.size(), 24u);
    expect_logprobs_match(*model_, encode(cases[i].prompt), *cs[i], cases[i].top_n, cases[i].sp.temperature == 0.0f,
                          "case " + std::to_string(i));
  }
  ASSERT_TRUE(plain.wait());
  EXPECT_TRUE(plain.logprobs.empty()) << "logprobs only when asked for";
  EXPECT_EQ(plain.tokens, cs[0]->tokens) << "asking for logprobs does not change the output";
  // A sampled token is not always the most likely one: the check above covered non-top tokens.
  bool some_not_top = false;
  for (size_t i = 3; i < cases.size(); ++i)
    for (const TokenLogprobs& lp : cs[i]->logprobs) some_not_top |= lp.top[0].token != lp.token;
  EXPECT_TRUE(some_not_top);
  Collector bad;
  EngineRequest r = request(encode("The"), greedy, 2, bad);
  r.logprobs = true;
  r.top_logprobs = kMaxTopLogprobs + 1;
  EXPECT_THROW(engine.submit(std::move(r)), Error);
}

// Prompt logprobs (echo + logprobs) are log_softmax of the raw logits at every prompt position, as
// Model::forward computes them over the prompt, whatever the chunking, batching and prefix cache.
TEST_F(EngineTest, PromptLogprobsAreTheModelsLogSoftmaxAtEveryPosition) {
  ThreadPool pool(2);
  Engine engine(*model_, *tokenizer_, &pool, options());  // 24-token steps: prefill in chunks
  SamplingParams greedy;
  const std::string system = "The Fulton County Grand Jury said Friday an investigation of recent primary election. ";
  // A plain request puts the shared prefix in the cache; the prompt-logprob one must not use it.
  Collector warm;
  engine.submit(request(encode(system + "It"), greedy, 4, warm));
  ASSERT_TRUE(warm.wait());
  auto prompt_request = [&](const std::vector<int32_t>& prompt, int64_t n, int top_n, bool logprobs, Collector& c) {
    EngineRequest r = request(prompt, greedy, n, c);
    r.prompt_logprobs = true;
    r.logprobs = logprobs;
    r.top_logprobs = top_n;
    return r;
  };
  const auto long_prompt = encode(system + "The jury");
  const auto short_prompt = encode(kPrompts[0]);
  Collector prompt_only, with_output, one_token, plain;
  engine.submit(prompt_request(long_prompt, 0, 3, true, prompt_only));    // max_new_tokens 0
  engine.submit(prompt_request(short_prompt, 12, 5, true, with_output));  // and generated logprobs
  engine.submit(prompt_request({65}, 0, 2, true, one_token));             // nothing to score
  engine.submit(request(encode(kPrompts[3]), greedy, 12, plain));         // batched beside them
  for (Collector* c : {&prompt_only, &with_output, &one_token, &plain}) ASSERT_TRUE(c->wait());

  EXPECT_EQ(prompt_only.last.finish_reason, "length");
  EXPECT_TRUE(prompt_only.tokens.empty());
  EXPECT_EQ(prompt_only.last.completion_tokens, 0);
  EXPECT_EQ(prompt_only.last.prompt_tokens, int64_t(long_prompt.size()));
  EXPECT_EQ(prompt_only.last.cached_prompt_tokens, 0) << "prompt logprobs bypass the prefix cache";
  EXPECT_EQ(prompt_only.events, 1);
  expect_prompt_logprobs_match(*model_, long_prompt, prompt_only.prompt_logprobs, 3, "prompt only");

  EXPECT_EQ(with_output.tokens, reference(short_prompt, greedy, 12).tokens) << "scoring the prompt changes nothing";
  EXPECT_EQ(with_output.prompt_logprob_event, 0) << "they come with the first token";
  expect_prompt_logprobs_match(*model_, short_prompt, with_output.prompt_logprobs, 5, "with output");
  expect_logprobs_match(*model_, short_prompt, with_output, 5, true, "with output, generated");

  EXPECT_EQ(one_token.last.finish_reason, "length");
  EXPECT_TRUE(one_token.prompt_logprobs.empty());
  EXPECT_TRUE(plain.prompt_logprobs.empty()) << "only when asked for";
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);

  // max_new_tokens 0 without logprobs: the prompt is computed, nothing generated.
  Collector nothing;
  engine.submit(request(short_prompt, greedy, 0, nothing));
  ASSERT_TRUE(nothing.wait());
  EXPECT_EQ(nothing.last.finish_reason, "length");
  EXPECT_TRUE(nothing.tokens.empty());
}

// More prompt rows than one step may hold (kMaxPromptLogprobRows): the chunks are shortened, and
// two such prompts share the rows of a step.
TEST_F(EngineTest, PromptLogprobRowsAreCappedPerStep) {
  EngineOptions o = options();
  o.max_batch_tokens = 256;
  Engine engine(*model_, *tokenizer_, nullptr, o);
  SamplingParams greedy;
  std::string text;
  while (text.size() < 180) text += "The jury said that the city of Atlanta deserves praise. ";
  const auto a = encode(text.substr(0, 150)), b = encode(text.substr(0, 180));
  ASSERT_GT(a.size(), size_t(Engine::kMaxPromptLogprobRows));
  Collector ca, cb;
  for (auto [prompt, c] : {std::pair{&a, &ca}, std::pair{&b, &cb}}) {
    EngineRequest r = request(*prompt, greedy, 3, *c);
    r.prompt_logprobs = true;
    r.top_logprobs = 1;
    engine.submit(std::move(r));
  }
  ASSERT_TRUE(ca.wait());
  ASSERT_TRUE(cb.wait());
  expect_prompt_logprobs_match(*model_, a, ca.prompt_logprobs, 1, "a");
  expect_prompt_logprobs_match(*model_, b, cb.prompt_logprobs, 1, "b");
  EXPECT_EQ(ca.tokens, reference(a, greedy, 3).tokens);
  EXPECT_EQ(cb.tokens, reference(b, greedy, 3).tokens);
  const int64_t rows = int64_t(a.size() + b.size()) - 2;
  EXPECT_GE(engine.stats().steps, (rows + Engine::kMaxPromptLogprobRows - 1) / Engine::kMaxPromptLogprobRows);
}

// A sequence preempted while (or after) its prompt is scored is recomputed without the prefix
// cache until every prompt entry is known, and no entry is reported twice.
TEST_F(EngineTest, PromptLogprobsSurvivePreemption) {
  EngineOptions o = options();
  o.context_length = 64;
  o.block_size = 4;
  o.max_batch_tokens = 16;
  o.kv_cache_bytes = PagedKVCache::bytes_per_block(model_->config(), model_->n_cache_layers(), 4) * 20;
  Engine engine(*model_, *tokenizer_, nullptr, o);
  SamplingParams greedy;
  const std::vector<std::string> prompts = {"The jury said that the city of Atlanta", "In the morning the committee met",
                                            "She looked at him and said nothing at all", "The state legislature voted"};
  std::vector<std::unique_ptr<Collector>> cs;
  for (const std::string& p : prompts) {
    cs.push_back(std::make_unique<Collector>());
    EngineRequest r = request(encode(p), greedy, 20, *cs.back());
    r.prompt_logprobs = true;
    r.top_logprobs = 2;
    engine.submit(std::move(r));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    EXPECT_EQ(cs[i]->tokens, reference(encode(prompts[i]), greedy, 20).tokens) << i;
    expect_prompt_logprobs_match(*model_, encode(prompts[i]), cs[i]->prompt_logprobs, 2, prompts[i]);
  }
  EXPECT_GT(engine.stats().preemptions, 0);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

// submit_group (an API request's n choices and prompt array): each sequence's output is what it
// would be alone; sequences with the same prompt take the leader's full prompt blocks from the
// prefix cache (with and without the cache, the output is the same).
TEST_F(EngineTest, GroupSequencesMatchSingleRequestsAndShareThePrompt) {
  const std::string text = "The Fulton County Grand Jury said Friday an investigation of";
  const auto a = encode(text), b = encode(kPrompts[3]);
  ASSERT_GE(a.size(), 3u * 8u);
  SamplingParams greedy;
  for (const bool prefix_cache : {true, false}) {
    EngineOptions o = options();
    o.prefix_cache = prefix_cache;
    Engine engine(*model_, *tokenizer_, nullptr, o);
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<EngineRequest> group;
    for (const auto* p : {&a, &a, &a, &b, &b}) {
      cs.push_back(std::make_unique<Collector>());
      group.push_back(request(*p, greedy, 20, *cs.back()));
    }
    engine.submit_group(std::move(group));
    const auto want_a = reference(a, greedy, 20).tokens, want_b = reference(b, greedy, 20).tokens;
    for (size_t i = 0; i < cs.size(); ++i) {
      ASSERT_TRUE(cs[i]->wait()) << i;
      EXPECT_EQ(cs[i]->tokens, i < 3 ? want_a : want_b) << "sequence " << i << ", prefix cache " << prefix_cache;
      EXPECT_EQ(cs[i]->last.finish_reason, "length");
    }
    engine.shutdown(/*drain=*/true);  // returns once the statistics of the last step are in
    const EngineStats st = engine.stats();
    EXPECT_EQ(st.requests_submitted, 5);
    EXPECT_EQ(st.requests_finished, 5);
    EXPECT_EQ(st.kv_blocks_used, 0);
    if (!prefix_cache) continue;
    // The followers of `a` reuse every full block before its last token; so does b's if it fills one.
    const int64_t shared = int64_t(a.size() - 1) / 8 * 8;
    EXPECT_EQ(cs[0]->last.cached_prompt_tokens, 0);
    EXPECT_EQ(cs[1]->last.cached_prompt_tokens, shared);
    EXPECT_EQ(cs[2]->last.cached_prompt_tokens, shared);
    EXPECT_GE(st.prefix_hit_tokens, 2 * shared);
  }
}

// Seeded sampling: each sequence draws from its own seed, exactly as it would alone, whatever else
// runs beside it; choices with different seeds differ.
TEST_F(EngineTest, GroupSeededSequencesAreReproducible) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  const auto prompt = encode("The jury said that the city");
  std::vector<SamplingParams> sps(3);
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<EngineRequest> group;
  for (size_t i = 0; i < sps.size(); ++i) {
    sps[i].temperature = 1.0f;
    sps[i].seed = 1000 + i;
    cs.push_back(std::make_unique<Collector>());
    group.push_back(request(prompt, sps[i], 24, *cs.back()));
  }
  engine.submit_group(std::move(group));
  for (size_t i = 0; i < cs.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    EXPECT_EQ(cs[i]->tokens, reference(prompt, sps[i], 24).tokens) << i;
  }
  EXPECT_NE(cs[0]->tokens, cs[1]->tokens);
  EXPECT_NE(cs[1]->tokens, cs[2]->tokens);
}

// Followers that want prompt logprobs get copies of the leader's (computed once), and still reuse
// its blocks; a follower with another top_logprobs computes its own.
TEST_F(EngineTest, GroupFollowersCopyTheLeadersPromptLogprobs) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  SamplingParams greedy;
  const auto prompt = encode("The Fulton County Grand Jury said Friday");
  Collector c0, c1, c2;
  std::vector<EngineRequest> group;
  for (auto [c, top] : {std::pair{&c0, 2}, std::pair{&c1, 2}, std::pair{&c2, 3}}) {
    EngineRequest r = request(prompt, greedy, 6, *c);
    r.prompt_logprobs = true;
    r.top_logprobs = top;
    group.push_back(std::move(r));
  }
  engine.submit_group(std::move(group));
  for (Collector* c : {&c0, &c1, &c2}) ASSERT_TRUE(c->wait());
  expect_prompt_logprobs_match(*model_, prompt, c0.prompt_logprobs, 2, "leader");
  expect_prompt_logprobs_match(*model_, prompt, c1.prompt_logprobs, 2, "follower");
  expect_prompt_logprobs_match(*model_, prompt, c2.prompt_logprobs, 3, "own top_logprobs");
  EXPECT_EQ(c1.prompt_logprob_event, 0);
  EXPECT_EQ(c1.last.cached_prompt_tokens, int64_t(prompt.size() - 1) / 8 * 8) << "the copy lets it use the cache";
  EXPECT_EQ(c2.last.cached_prompt_tokens, 0) << "computing its own rows bypasses the cache";
  const auto want = reference(prompt, greedy, 6).tokens;
  for (Collector* c : {&c0, &c1, &c2}) EXPECT_EQ(c->tokens, want);
}

// One id for the whole group: cancel ends every sequence and frees every block; the queue limit
// counts every sequence; a bad sequence rejects the group before anything is queued.
TEST_F(EngineTest, GroupIsCancelledAndQueuedAsAWhole) {
  {
    Engine engine(*model_, *tokenizer_, nullptr, options());
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 5;
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<EngineRequest> group;
    for (int i = 0; i < 6; ++i) {  // more than max_batch: some wait
      cs.push_back(std::make_unique<Collector>());
      group.push_back(request(encode("The jury said"), sp, 200, *cs.back()));
    }
    const uint64_t id = engine.submit_group(std::move(group));
    {
      std::unique_lock lk(cs[0]->mu);
      cs[0]->cv.wait_for(lk, std::chrono::seconds(30), [&] { return cs[0]->events > 0; });
    }
    engine.cancel(id);
    for (auto& c : cs) {
      ASSERT_TRUE(c->wait());
      EXPECT_EQ(c->last.finish_reason, "cancelled");
    }
    for (int i = 0; i < 100 && engine.stats().kv_blocks_used != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(engine.stats().kv_blocks_used, 0);
    EXPECT_EQ(engine.stats().requests_cancelled, 6);
  }
  EngineOptions o = options();
  o.max_queue = 3;
  o.max_batch = 1;
  Engine engine(*model_, *tokenizer_, nullptr, o);
  SamplingParams greedy;
  std::vector<std::unique_ptr<Collector>> cs;
  auto group = [&](int k, int64_t n) {
    std::vector<EngineRequest> g;
    for (int i = 0; i < k; ++i) {
      cs.push_back(std::make_unique<Collector>());
      g.push_back(request(encode("The jury said"), greedy, n, *cs.back()));
    }
    return g;
  };
  EXPECT_THROW(engine.submit_group(group(4, 5)), Error) << "more sequences than the queue ever holds";
  EXPECT_THROW(engine.submit_group({}), Error);
  std::vector<EngineRequest> bad = group(2, 5);
  bad[1].max_new_tokens = -1;
  EXPECT_THROW(engine.submit_group(std::move(bad)), Error);
  EXPECT_EQ(engine.stats().requests_submitted, 0) << "nothing of a rejected group is queued";
  engine.submit_group(group(3, 100));
  try {
    engine.submit_group(group(2, 5));  // 2 or 3 of the first group still wait
    FAIL() << "expected the queue to be full";
  } catch (const EngineBusy& e) {
    EXPECT_FALSE(e.stopping);
  }
  EXPECT_EQ(engine.stats().requests_rejected, 2);
  engine.shutdown(/*drain=*/false);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

// One sequence of a group fails: it ends with "error", and every other sequence of the group ends
// with "cancelled" at the next step (a follower still waiting for the failed leader's prompt is
// never admitted), each with exactly one final event, and all their KV blocks return to the pool.
// The failure is the sampler's: penalties are only required to be finite, and these two turn every
// prompt token's logit into +inf (count * frequency_penalty + presence_penalty overflows to -inf),
// which the sampler refuses (a +inf logit means a broken forward pass). A request outside the group,
// decoding in the same batches, is not touched: only the failing sequence's own request fails.
TEST_F(EngineTest, GroupMemberFailureCancelsTheOthersAndFreesTheirBlocks) {
  Engine engine(*model_, *tokenizer_, nullptr, options());
  const int64_t baseline = engine.stats().kv_blocks_used;
  ASSERT_EQ(baseline, 0);
  SamplingParams greedy, broken;
  broken.frequency_penalty = -std::numeric_limits<float>::max();
  broken.presence_penalty = -std::numeric_limits<float>::max();
  // a fills full blocks, so its followers wait in the queue for the leader (the failing one).
  const auto a = encode("The Fulton County Grand Jury said Friday an investigation of"), b = encode(kPrompts[3]);
  ASSERT_GE(a.size(), 2u * 8u);
  const auto other = encode(kPrompts[0]);
  Collector bystander;
  engine.submit(request(other, greedy, 100, bystander));
  {  // the bystander is decoding when the group comes in
    std::unique_lock lk(bystander.mu);
    ASSERT_TRUE(bystander.cv.wait_for(lk, std::chrono::seconds(30), [&] { return bystander.events > 0; }));
  }
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<EngineRequest> group;
  for (auto [p, sp] : {std::pair{&a, broken}, std::pair{&a, greedy}, std::pair{&a, greedy}, std::pair{&b, greedy}}) {
    cs.push_back(std::make_unique<Collector>());
    group.push_back(request(*p, sp, 200, *cs.back()));
  }
  engine.submit_group(std::move(group));
  for (auto& c : cs) ASSERT_TRUE(c->wait());
  EXPECT_EQ(cs[0]->last.finish_reason, "error");
  EXPECT_NE(cs[0]->last.error.find("inf"), std::string::npos) << cs[0]->last.error;
  EXPECT_TRUE(cs[0]->tokens.empty()) << "it failed at its first sample";
  for (size_t i = 1; i < cs.size(); ++i) {
    EXPECT_EQ(cs[i]->last.finish_reason, "cancelled") << i;
    EXPECT_LT(cs[i]->last.completion_tokens, 200) << i;
  }
  EXPECT_EQ(cs[1]->last.completion_tokens, 0) << "a follower of the failed leader never ran";
  EXPECT_EQ(cs[2]->last.completion_tokens, 0);
  ASSERT_TRUE(bystander.wait());
  EXPECT_EQ(bystander.last.finish_reason, "length");
  EXPECT_EQ(bystander.tokens, reference(other, greedy, 100).tokens);
  engine.shutdown(/*drain=*/true);  // returns once the statistics of the last step are in
  for (auto& c : cs) EXPECT_EQ(c->finals, 1) << "one final event per sequence";
  EXPECT_EQ(bystander.finals, 1);
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.kv_blocks_used, baseline);
  EXPECT_EQ(st.requests_submitted, 5);
  EXPECT_EQ(st.requests_finished, 5);
  EXPECT_EQ(st.requests_cancelled, 3);
  EXPECT_EQ(st.running + st.waiting, 0);
}

}  // namespace
}  // namespace dseek

namespace dseek {
namespace {

// Runs the prompts through an engine (all submitted at once) and returns each one's tokens.
std::vector<std::vector<int32_t>> run_all(const Model& m, const Tokenizer& tok, const EngineOptions& o,
                                          const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& sp,
                                          int64_t n, EngineStats* stats = nullptr) {
  Engine engine(m, tok, nullptr, o);
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& p : prompts) {
    cs.push_back(std::make_unique<Collector>());
    EngineRequest r;
    r.prompt = p;
    r.sampling = sp;
    r.max_new_tokens = n;
    r.on_event = cs.back()->callback();
    engine.submit(std::move(r));
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& c : cs) {
    EXPECT_TRUE(c->wait());
    out.push_back(c->tokens);
  }
  if (stats) *stats = engine.stats();
  return out;
}

// MTP speculative decoding must not change greedy output, on the demo model (trained with MTP)
// and on the golden v3 model (DeepSeek's reference weights layout, with the V3 tokenizer).
void expect_speculative_greedy_identical(const std::string& dir, const std::string& tok_dir,
                                         const std::vector<std::vector<int32_t>>& prompts, double min_accept,
                                         KVDtype kv = KVDtype::kF32) {
  LoadOptions lo;
  lo.load_mtp = true;
  const Model m = Model::load(dir, lo);
  const Tokenizer tok = Tokenizer::load(tok_dir);
  EngineOptions o;
  o.max_batch = 4;
  o.max_batch_tokens = 32;
  o.context_length = 128;
  o.block_size = 8;
  o.kv_cache_bytes = 32 << 20;
  o.kv_dtype = kv;
  SamplingParams greedy;
  const auto plain = run_all(m, tok, o, prompts, greedy, 48);
  o.speculative_mtp = true;
  EngineStats st;
  const auto spec = run_all(m, tok, o, prompts, greedy, 48, &st);
  EXPECT_EQ(spec, plain);
  ASSERT_GT(st.mtp_drafts, 0);
  const double rate = double(st.mtp_accepted) / double(st.mtp_drafts);
  EXPECT_GE(rate, min_accept) << st.mtp_accepted << " of " << st.mtp_drafts << " drafts accepted";
  EXPECT_LT(st.steps, 4 * 48) << "accepted drafts should save steps";
}

TEST(EngineSpeculative, DemoModelGreedyOutputIsIdentical) {
  const Tokenizer tok = Tokenizer::load(kDemo);
  std::vector<std::vector<int32_t>> prompts;
  for (const char* p : {"The jury said", "In the morning the", "She looked at him and said", "He"})
    prompts.push_back(tok.encode(p, false));
  // The demo model's MTP head was trained with it: most drafts are right.
  expect_speculative_greedy_identical(kDemo, kDemo, prompts, 0.5);
  expect_speculative_greedy_identical(kDemo, kDemo, prompts, 0.5, KVDtype::kBF16);
}

TEST(EngineSpeculative, GoldenV3GreedyOutputIsIdentical) {
  std::vector<std::vector<int32_t>> prompts = {{0, 17, 300, 42, 9}, {0, 5, 6, 7}, {0, 511, 2, 100, 200, 300, 400}};
  // Random-looking golden weights: acceptance is whatever it is; the output must not change.
  expect_speculative_greedy_identical(test::golden_model_dir("v3"), test::shared_dir() + "/data/tokenizers/deepseek-v3",
                                      prompts, 0.0);
  expect_speculative_greedy_identical(test::golden_model_dir("v3"), test::shared_dir() + "/data/tokenizers/deepseek-v3",
                                      prompts, 0.0, KVDtype::kBF16);
}

TEST(EngineSpeculative, SampledRunsAreReproducibleAndComplete) {
  LoadOptions lo;
  lo.load_mtp = true;
  const Model m = Model::load(kDemo, lo);
  const Tokenizer tok = Tokenizer::load(kDemo);
  EngineOptions o;
  o.max_batch = 2;
  o.context_length = 128;
  o.kv_cache_bytes = 32 << 20;
  o.speculative_mtp = true;
  SamplingParams sp;
  sp.temperature = 0.7f;
  sp.seed = 5;
  const std::vector<std::vector<int32_t>> prompts = {tok.encode("The jury said", false), tok.encode("He", false)};
  EngineStats st;
  const auto a = run_all(m, tok, o, prompts, sp, 40, &st);
  EXPECT_EQ(a, run_all(m, tok, o, prompts, sp, 40));
  for (const auto& t : a) EXPECT_EQ(t.size(), 40u);
  EXPECT_GT(st.mtp_accepted, 0);
}

// With MTP speculative decoding a step may emit the verified draft's token and a bonus token; both
// logprobs come from the main model's verification rows, so they equal the plain forward's.
TEST(EngineSpeculative, LogprobsAreTheVerifiedTargetDistribution) {
  LoadOptions lo;
  lo.load_mtp = true;
  const Model m = Model::load(kDemo, lo);
  const Tokenizer tok = Tokenizer::load(kDemo);
  EngineOptions o;
  o.max_batch = 4;
  o.max_batch_tokens = 32;
  o.context_length = 128;
  o.block_size = 8;
  o.kv_cache_bytes = 32 << 20;
  o.speculative_mtp = true;
  Engine engine(m, tok, nullptr, o);
  SamplingParams greedy, sampled;
  sampled.temperature = 0.8f;
  sampled.presence_penalty = 0.7f;
  sampled.seed = 3;
  const std::vector<std::pair<std::string, SamplingParams>> cases = {
      {"The jury said", greedy}, {"She looked at him and said", greedy}, {"In the morning the", sampled},
      {"He", sampled}};
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& [prompt, sp] : cases) {
    cs.push_back(std::make_unique<Collector>());
    EngineRequest r;
    r.prompt = tok.encode(prompt, false);
    r.sampling = sp;
    r.max_new_tokens = 40;
    r.logprobs = true;
    r.top_logprobs = 4;
    r.on_event = cs.back()->callback();
    engine.submit(std::move(r));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(cs[i]->wait());
    expect_logprobs_match(m, tok.encode(cases[i].first, false), *cs[i], 4, cases[i].second.temperature == 0.0f,
                          "speculative case " + std::to_string(i));
  }
  const EngineStats st = engine.stats();
  EXPECT_GT(st.mtp_accepted, 0) << "accepted drafts (two tokens in one step) were exercised";
  EXPECT_LT(st.mtp_accepted, st.mtp_drafts) << "rejected drafts were exercised";
}

TEST(EngineSpeculative, ModelWithoutMtpIsAClearError) {
  const Model m = Model::load(kDemo);  // MTP not loaded
  const Tokenizer tok = Tokenizer::load(kDemo);
  EngineOptions o;
  o.speculative_mtp = true;
  o.context_length = 64;
  o.kv_cache_bytes = 8 << 20;
  EXPECT_THROW(Engine(m, tok, nullptr, o), Error);
}

}  // namespace
}  // namespace dseek
