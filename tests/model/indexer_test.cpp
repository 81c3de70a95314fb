// Lightning-indexer selection rules on hand-built weights (the golden v32 case covers the numbers).
#include "dseek/model/indexer.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "dseek/kernels/rope.h"

namespace dseek {
namespace {

struct TinyIndexer {
  static constexpr int64_t kHidden = 16, kQLora = 16, kHeads = 2, kHeadDim = 128, kRope = 8, kCtx = 8;
  std::vector<float> wq_b, wk, weights_proj, k_norm_w, k_norm_b, inv_freq;
  IndexerWeights w;
  IndexerParams p;
  ModelConfig cfg;

  explicit TinyIndexer(int64_t topk, float weights_proj_value) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.f, 0.3f);
    wq_b.resize(size_t(kHeads * kHeadDim * kQLora));
    wk.resize(size_t(kHeadDim * kHidden));
    for (auto& v : wq_b) v = nd(rng);
    for (auto& v : wk) v = nd(rng);
    weights_proj.assign(size_t(kHeads * kHidden), weights_proj_value);
    k_norm_w.assign(kHeadDim, 1.f);
    k_norm_b.assign(kHeadDim, 0.f);
    auto mat = [](const std::vector<float>& d, int64_t rows, int64_t cols) {
      MatView m;
      m.data = d.data();
      m.rows = rows;
      m.cols = cols;
      return m;
    };
    w.wq_b = mat(wq_b, kHeads * kHeadDim, kQLora);
    w.wk = mat(wk, kHeadDim, kHidden);
    w.weights_proj = mat(weights_proj, kHeads, kHidden);
    w.k_norm_weight = k_norm_w;
    w.k_norm_bias = k_norm_b;
    RopeParams rp;
    rp.dim = kRope;
    inv_freq.resize(kRope / 2);
    rope_inv_freq(inv_freq.data(), rp);
    p.n_heads = kHeads;
    p.head_dim = kHeadDim;
    p.rope_dim = kRope;
    p.topk = topk;
    p.inv_freq = inv_freq.data();
    // Workspace sizing only reads these fields.
    cfg.model_type = ModelType::kDeepseekV32;
    cfg.hidden_size = kHidden;
    cfg.num_attention_heads = 1;
    cfg.q_lora_rank = kQLora;
    cfg.kv_lora_rank = 8;
    cfg.qk_nope_head_dim = 8;
    cfg.qk_rope_head_dim = kRope;
    cfg.v_head_dim = 8;
    cfg.intermediate_size = 8;
    cfg.moe_intermediate_size = 8;
    cfg.index_n_heads = kHeads;
    cfg.index_head_dim = kHeadDim;
    cfg.index_topk = topk;
  }
};

std::vector<float> random_rows(int64_t n, int64_t width, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(size_t(n * width));
  for (auto& x : v) x = nd(rng);
  return v;
}

// All index scores equal (weights_proj = 0 makes every head weight 0): ties resolve to the lowest
// positions, in prefill and decode alike, so both paths select the same keys.
TEST(Indexer, TiesSelectTheEarliestKeys) {
  TinyIndexer ix(/*topk=*/3, /*weights_proj_value=*/0.f);
  const int64_t T = TinyIndexer::kCtx;
  Workspace ws(ix.cfg, T, T);
  const auto x = random_rows(T, TinyIndexer::kHidden, 1), qr = random_rows(T, TinyIndexer::kQLora, 2);
  std::vector<float> keys(size_t(T * ix.p.key_row())), scores(size_t(T * T));
  std::vector<uint8_t> allowed(size_t(T * T));
  indexer_forward(allowed.data(), scores.data(), x.data(), qr.data(), T, 0, ix.w, ix.p, LayerRows{keys.data(), ix.p.key_row()}, ws);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < T; ++j) {
      EXPECT_EQ(allowed[size_t(t * T + j)], j <= t && j < 3 ? 1 : 0) << "query " << t << " key " << j;
      if (j <= t) {
        EXPECT_EQ(scores[size_t(t * T + j)], 0.f);
      }
    }
  // Decode: prefill 4 tokens, then one at a time; each step sees the same tie rule.
  std::vector<float> keys2(keys.size());
  indexer_forward(allowed.data(), nullptr, x.data(), qr.data(), 4, 0, ix.w, ix.p, LayerRows{keys2.data(), ix.p.key_row()}, ws);
  for (int64_t p = 4; p < T; ++p) {
    std::vector<uint8_t> a(size_t(p + 1));
    indexer_forward(a.data(), nullptr, x.data() + p * TinyIndexer::kHidden, qr.data() + p * TinyIndexer::kQLora, 1, p,
                    ix.w, ix.p, LayerRows{keys2.data(), ix.p.key_row()}, ws);
    for (int64_t j = 0; j <= p; ++j) EXPECT_EQ(a[size_t(j)], j < 3 ? 1 : 0) << "step " << p << " key " << j;
  }
  EXPECT_EQ(keys, keys2) << "keys cached by prefill and by decode differ";
}

// Below index_topk keys every visible key is selected; with real scores the selection keeps the
// top index_topk of them and never a future key.
TEST(Indexer, SelectsTopKOfVisibleKeysOnly) {
  TinyIndexer ix(/*topk=*/4, /*weights_proj_value=*/0.5f);
  const int64_t T = TinyIndexer::kCtx;
  Workspace ws(ix.cfg, T, T);
  const auto x = random_rows(T, TinyIndexer::kHidden, 3), qr = random_rows(T, TinyIndexer::kQLora, 4);
  std::vector<float> keys(size_t(T * ix.p.key_row())), scores(size_t(T * T));
  std::vector<uint8_t> allowed(size_t(T * T));
  indexer_forward(allowed.data(), scores.data(), x.data(), qr.data(), T, 0, ix.w, ix.p, LayerRows{keys.data(), ix.p.key_row()}, ws);
  for (int64_t t = 0; t < T; ++t) {
    int64_t n_sel = 0;
    float min_sel = INFINITY, max_unsel = -INFINITY;
    for (int64_t j = 0; j < T; ++j) {
      const bool sel = allowed[size_t(t * T + j)];
      if (j > t) {
        EXPECT_FALSE(sel) << "future key " << j << " selected for query " << t;
        EXPECT_EQ(scores[size_t(t * T + j)], -INFINITY);
        continue;
      }
      n_sel += sel;
      const float s = scores[size_t(t * T + j)];
      if (sel) min_sel = std::min(min_sel, s); else max_unsel = std::max(max_unsel, s);
    }
    EXPECT_EQ(n_sel, std::min<int64_t>(t + 1, 4)) << "query " << t;
    EXPECT_GE(min_sel, max_unsel) << "query " << t << " kept a lower score than one it dropped";
  }
}

}  // namespace
}  // namespace dseek
