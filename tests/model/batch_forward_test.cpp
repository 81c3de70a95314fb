// Continuous batching at the model level: several sequences in one forward call, each reading and
// writing its own paged cache, must give the same logits as each sequence run alone through a
// contiguous cache (the reference path the golden tests check). Golden models from ../shared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {
namespace {

// Float32 throughout; batching changes only which rows share a matmul call, and the F32 kernels
// compute each row independently, so differences are rounding noise at most.
constexpr float kTol = 1e-5f;

// Max |a - b| over n values; NaN (an unwritten, poisoned cache row read back) counts as infinite.
float max_abs_diff(const float* a, const float* b, int64_t n) {
  float worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::fabs(a[i] - b[i]);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

struct PagedPool {
  int64_t block_size, n_blocks;
  std::vector<float> latent, index_keys;
  KVCacheView base;
  PagedPool(const Model& m, int64_t n_layers, int64_t block_size_, int64_t n_blocks_)
      : block_size(block_size_), n_blocks(n_blocks_) {
    const ModelConfig& c = m.config();
    base.n_layers = n_layers;
    base.latent_dim = c.kv_latent_dim();
    base.block_size = block_size;
    base.layer_rows = n_blocks * block_size;
    latent.assign(size_t(n_layers * base.layer_rows * base.latent_dim), NAN);  // unwritten rows poison
    base.latent = latent.data();
    if (c.has_indexer()) {
      base.index_dim = c.index_head_dim + 1;
      index_keys.assign(size_t(n_layers * base.layer_rows * base.index_dim), NAN);
      base.index_keys = index_keys.data();
    }
  }
  KVCacheView view(const std::vector<int32_t>& table) const {
    KVCacheView v = base;
    v.block_table = table.data();
    v.capacity = int64_t(table.size()) * block_size;
    return v;
  }
};

void run_case(const std::string& name, bool with_mtp, int threads = 1) {
  LoadOptions lo;
  lo.load_mtp = with_mtp;
  const Model m = Model::load(test::golden_model_dir(name), lo);
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab_size, D = c.hidden_size, n_layers = m.n_cache_layers();
  const std::vector<int64_t> lens = {11, 17, 6};
  // Chunks each sequence feeds per step (0 = idle that step): prefill chunks, then decode steps.
  const std::vector<std::vector<int64_t>> chunks = {{5, 1, 1, 4}, {9, 3, 1, 1, 1, 1, 1}, {0, 0, 6}};
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> toks(lens.size());
  for (size_t s = 0; s < lens.size(); ++s)
    for (int64_t i = 0; i < lens[s]; ++i) toks[s].push_back(int32_t(rng() % uint32_t(V)));

  // Reference: each sequence alone, all tokens in one call, logits (and MTP logits) of every row.
  std::vector<std::vector<float>> ref(lens.size()), ref_mtp(lens.size());
  for (size_t s = 0; s < lens.size(); ++s) {
    const int64_t T = lens[s];
    KVCache cache(c, n_layers, T);
    Workspace ws(c, T, T, nullptr, /*naive_attention=*/false);
    ref[s].resize(size_t(T * V));
    std::vector<float> hidden(size_t(T * D));
    m.forward(toks[s].data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, ref[s].data(), 0, hidden.data());
    if (with_mtp) {
      ref_mtp[s].resize(size_t((T - 1) * V));
      m.mtp_forward(hidden.data(), toks[s].data() + 1, T - 1, 0, cache.view(), AttnImpl::kAbsorb, ws,
                    ref_mtp[s].data());
    }
  }

  // Batched: block size 4, blocks handed out in a shuffled order so tables are not contiguous.
  const int64_t bs = 4;
  int64_t need = 0;
  for (int64_t L : lens) need += (L + bs - 1) / bs;
  PagedPool pool(m, n_layers, bs, need + 3);
  std::vector<int32_t> ids(size_t(pool.n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<std::vector<int32_t>> tables(lens.size());
  size_t next = 0;
  for (size_t s = 0; s < lens.size(); ++s)
    for (int64_t b = 0; b < (lens[s] + bs - 1) / bs; ++b) tables[s].push_back(ids[next++]);

  int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t(0));
  // With a pool, decode groups of a sequence's tokens split into at most 4 (the workspace's
  // states over the threads) and each group's context into per-thread parts that merge.
  ThreadPool threaded(threads);
  Workspace ws(c, total, 32, threads > 1 ? &threaded : nullptr, /*naive_attention=*/false);
  std::vector<int64_t> fed(lens.size(), 0);
  std::vector<float> logits(size_t(total * V)), hidden(size_t(total * D)), mtp_logits(size_t(total * V));
  for (size_t step = 0;; ++step) {
    std::vector<SeqInput> batch;
    std::vector<size_t> who;
    for (size_t s = 0; s < lens.size(); ++s) {
      if (step >= chunks[s].size() || chunks[s][step] == 0) continue;
      const int64_t n = chunks[s][step];
      batch.push_back({toks[s].data() + fed[s], n, fed[s], pool.view(tables[s]), 0});
      who.push_back(s);
    }
    if (batch.empty()) break;
    m.forward_batch(batch, AttnImpl::kAbsorb, ws, logits.data(), hidden.data());
    int64_t row = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const size_t s = who[i];
      for (int64_t t = 0; t < batch[i].n_tokens; ++t, ++row) {
        const float* got = logits.data() + row * V;
        const float* want = ref[s].data() + (fed[s] + t) * V;
        EXPECT_LE(max_abs_diff(got, want, V), kTol) << name << " seq " << s << " position " << fed[s] + t << " step " << step;
      }
    }
    if (with_mtp) {
      // MTP rows need the next token, so the last row of each chunk whose next token is not fed yet
      // is left out: run rows [0, n-1) of each chunk plus the earlier pending row.
      std::vector<SeqInput> mb;
      std::vector<float> mh;
      int64_t hrow = 0;
      std::vector<std::pair<size_t, int64_t>> mrows;
      for (size_t i = 0; i < batch.size(); ++i) {
        const size_t s = who[i];
        const int64_t n = std::min(batch[i].n_tokens, lens[s] - 1 - fed[s]);
        if (n > 0) {
          mb.push_back({toks[s].data() + fed[s] + 1, n, fed[s], pool.view(tables[s]), 0});
          mh.insert(mh.end(), hidden.begin() + hrow * D, hidden.begin() + (hrow + n) * D);
          for (int64_t t = 0; t < n; ++t) mrows.push_back({s, fed[s] + t});
        }
        hrow += batch[i].n_tokens;
      }
      if (!mb.empty()) {
        m.mtp_forward_batch(mh.data(), mb, AttnImpl::kAbsorb, ws, mtp_logits.data());
        for (size_t r = 0; r < mrows.size(); ++r) {
          const auto [s, pos] = mrows[r];
          EXPECT_LE(max_abs_diff(mtp_logits.data() + r * size_t(V), ref_mtp[s].data() + pos * V, V), kTol) << name << " MTP seq " << s << " position " << pos;
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) fed[who[i]] += batch[i].n_tokens;
  }
  for (size_t s = 0; s < lens.size(); ++s) EXPECT_EQ(fed[s], lens[s]);
}

// Note on the MTP case: within one step the MTP rows of a chunk only see positions the batched
// main pass has just written; the reference computes all MTP rows after the whole sequence, and
// MTP attention is causal, so both see the same keys.
TEST(BatchForward, V3PagedBatchMatchesSingleSequence) { run_case("v3", /*with_mtp=*/true); }
TEST(BatchForward, V2LitePagedBatchMatchesSingleSequence) { run_case("v2lite", false); }
TEST(BatchForward, V3PagedBatchOnTwoThreads) { run_case("v3", /*with_mtp=*/true, /*threads=*/2); }
TEST(BatchForward, V32SparseAttentionPerSequence) { run_case("v32", false); }

// Logits of T random tokens (seeded) fed in one call and fed `chunk` at a time, each into a fresh
// cache: (one, chunked).
std::pair<std::vector<float>, std::vector<float>> one_call_and_chunks(const Model& m, int64_t T, int64_t chunk,
                                                                      uint32_t seed, ThreadPool* pool) {
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab_size, n_layers = m.n_cache_layers();
  std::mt19937 rng(seed);
  std::vector<int32_t> toks;
  for (int64_t i = 0; i < T; ++i) toks.push_back(int32_t(rng() % uint32_t(V)));
  std::vector<float> one(size_t(T * V)), chunked(size_t(T * V));
  {
    KVCache cache(c, n_layers, T);
    Workspace ws(c, T, T, pool, /*naive_attention=*/false);
    m.forward(toks.data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, one.data(), 0);
  }
  KVCache cache(c, n_layers, T);
  Workspace ws(c, chunk, T, pool, /*naive_attention=*/false);
  for (int64_t t0 = 0; t0 < T; t0 += chunk)
    m.forward(toks.data() + t0, std::min(chunk, T - t0), t0, cache.view(), AttnImpl::kAbsorb, ws, chunked.data() + t0 * V, 0);
  return {std::move(one), std::move(chunked)};
}

// From 32 tokens in a call, absorbed MLA's q_nope · W_UK runs as one GEMM per head (mla.cpp); a
// 40-token call must give the logits of the same tokens fed 5 at a time (the row kernel).
TEST(BatchForward, LongPrefillMatchesShortChunks) {
  for (const char* name : {"v3", "v2lite"}) {
    const Model m = Model::load(test::golden_model_dir(name));
    const int64_t V = m.config().vocab_size, T = 40;
    const auto [one, chunked] = one_call_and_chunks(m, T, 5, 13, nullptr);
    for (int64_t t = 0; t < T; ++t)
      EXPECT_LE(max_abs_diff(one.data() + t * V, chunked.data() + t * V, V), kTol) << name << " position " << t;
  }
}

// A sequence with >= 128 tokens in one call attends per head over its context expanded through
// kv_b_proj (mla.cpp, attend_prefill_heads); shorter chunks attend in latent space. Both are the
// same attention: the logits of one 300-token call equal those of 100-token chunks.
TEST(BatchForward, PerHeadPrefillMatchesLatentChunks) {
  ThreadPool pool(2);
  for (const char* name : {"v3", "v2lite", "v32"}) {
    const Model m = Model::load(test::golden_model_dir(name));
    const int64_t V = m.config().vocab_size, T = 300;
    const auto [one, chunked] = one_call_and_chunks(m, T, 100, 17, &pool);
    float worst = 0.f;
    for (int64_t t = 0; t < T; ++t) {
      const float d = max_abs_diff(one.data() + t * V, chunked.data() + t * V, V);
      worst = std::max(worst, d);
      EXPECT_LE(d, kTol) << name << " position " << t;
    }
    std::printf("%s: per-head vs latent prefill, max |logit difference| %.3g\n", name, double(worst));
  }
}

// MTP rows below logits_from only write their cache rows (Model::mtp_forward_batch skips their
// attention, FFN and head): the cache rows, the logits of the other rows, and a later row that
// attends to them must equal the all-rows computation.
TEST(BatchForward, MtpRowsWithoutLogitsWriteTheSameCacheRows) {
  LoadOptions lo;
  lo.load_mtp = true;
  const Model m = Model::load(test::golden_model_dir("v3"), lo);
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab_size, D = c.hidden_size, L = c.kv_latent_dim(), n_layers = m.n_cache_layers();
  const int64_t mtp_layer = c.num_hidden_layers;
  const std::vector<int64_t> lens = {9, 6};  // each sequence: tokens (lens - 1 MTP rows, then 1 more)
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> toks(lens.size());
  std::vector<std::vector<float>> hidden(lens.size());
  std::vector<KVCache> ref, got;
  for (size_t s = 0; s < lens.size(); ++s) {
    const int64_t T = lens[s];
    for (int64_t i = 0; i < T + 1; ++i) toks[s].push_back(int32_t(rng() % uint32_t(V)));
    ref.emplace_back(c, n_layers, T + 1);
    got.emplace_back(c, n_layers, T + 1);
    hidden[s].resize(size_t(T * D));
    Workspace ws(c, T, T + 1, nullptr, false);
    m.forward(toks[s].data(), T, 0, ref[s].view(), AttnImpl::kAbsorb, ws, nullptr, T, hidden[s].data());
    m.forward(toks[s].data(), T, 0, got[s].view(), AttnImpl::kAbsorb, ws, nullptr, T);
  }
  Workspace ws(c, 32, 16, nullptr, false);
  // Step 1, MTP rows [0, T - 1): reference all with logits; batched, sequence 0 wants the last row's
  // logits only and sequence 1 none.
  const int64_t n0 = lens[0] - 1, n1 = lens[1] - 1;
  std::vector<float> ref_logits(size_t(n0 * V)), logits(size_t(n0 * V), NAN), h;
  m.mtp_forward(hidden[0].data(), toks[0].data() + 1, n0, 0, ref[0].view(), AttnImpl::kAbsorb, ws, ref_logits.data());
  std::vector<float> scratch(size_t(n1 * V));
  m.mtp_forward(hidden[1].data(), toks[1].data() + 1, n1, 0, ref[1].view(), AttnImpl::kAbsorb, ws, scratch.data());
  h.insert(h.end(), hidden[0].begin(), hidden[0].begin() + n0 * D);
  h.insert(h.end(), hidden[1].begin(), hidden[1].begin() + n1 * D);
  const SeqInput step1[2] = {{toks[0].data() + 1, n0, 0, got[0].view(), n0 - 1}, {toks[1].data() + 1, n1, 0, got[1].view(), n1}};
  m.mtp_forward_batch(h.data(), step1, AttnImpl::kAbsorb, ws, logits.data());
  EXPECT_LE(max_abs_diff(logits.data(), ref_logits.data() + (n0 - 1) * V, V), kTol) << "last MTP row's logits";
  for (size_t s = 0; s < lens.size(); ++s)
    for (int64_t pos = 0; pos < lens[s] - 1; ++pos)
      EXPECT_LE(max_abs_diff(got[s].view().latent_rows(mtp_layer).row(pos), ref[s].view().latent_rows(mtp_layer).row(pos), L), kTol)
          << "seq " << s << " MTP cache row " << pos;
  // Step 2: one more row of sequence 1 attends to the rows that step 1 wrote without logits.
  const int64_t p = n1;
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  m.mtp_forward(hidden[1].data() + p * D, toks[1].data() + p + 1, 1, p, ref[1].view(), AttnImpl::kAbsorb, ws, a.data());
  m.mtp_forward(hidden[1].data() + p * D, toks[1].data() + p + 1, 1, p, got[1].view(), AttnImpl::kAbsorb, ws, b.data());
  EXPECT_LE(max_abs_diff(a.data(), b.data(), V), kTol) << "a row attending to cache-only rows";
}

TEST(BatchForward, RejectsBadInput) {
  const Model m = Model::load(test::golden_model_dir("v2lite"));
  KVCache cache(m.config(), m.n_cache_layers(), 8);
  Workspace ws(m.config(), 4, 8, nullptr, false);
  const int32_t tok[5] = {1, 2, 3, 4, 5};
  std::vector<float> logits(size_t(5 * m.config().vocab_size));
  const SeqInput too_many{tok, 5, 0, cache.view(), 0};
  EXPECT_THROW(m.forward_batch({&too_many, 1}, AttnImpl::kAbsorb, ws, logits.data()), Error);
  const SeqInput past_cache{tok, 2, 7, cache.view(), 0};
  EXPECT_THROW(m.forward_batch({&past_cache, 1}, AttnImpl::kAbsorb, ws, logits.data()), Error);
  const SeqInput bad_from{tok, 2, 0, cache.view(), 3};
  EXPECT_THROW(m.forward_batch({&bad_from, 1}, AttnImpl::kAbsorb, ws, logits.data()), Error);
}

}  // namespace
}  // namespace dseek
