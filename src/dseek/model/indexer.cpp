#include "dseek/model/indexer.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "dseek/core/error.h"
#include "dseek/kernels/fp8_quant.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/rope.h"
#include "dseek/kernels/topk.h"

namespace dseek {

IndexerParams IndexerParams::from_config(const ModelConfig& c, const float* inv_freq, float rope_attn_factor) {
  IndexerParams p;
  p.n_heads = c.index_n_heads;
  p.head_dim = c.index_head_dim;
  p.rope_dim = c.qk_rope_head_dim;
  p.topk = c.index_topk;
  p.ue8m0 = c.quantization.scale_ue8m0;
  p.inv_freq = inv_freq;
  p.rope_attn_factor = rope_attn_factor;
  return p;
}

namespace {

// Rotary part, Hadamard rotation, then (optionally) FP8 quantization of one head vector v (head_dim).
// Returns the quantization scale (1 without FP8).
float prepare_head(float* v, const float* cos, const float* sin, const IndexerParams& p) {
  rope_apply_half_split(v, cos, sin, p.rope_dim / 2);
  hadamard_rotate(v, p.head_dim);
  if (!p.fp8) return 1.0f;
  float scale;
  // head_dim is one 128-value block in released models; a longer head gets one scale per block,
  // which the single-scale score formula below does not cover.
  DSEEK_CHECK(p.head_dim <= 128, "indexer: index_head_dim above one FP8 block (128) is not supported");
  act_quant_e4m3(v, &scale, v, p.head_dim, 128, p.ue8m0);
  return scale;
}

}  // namespace

void indexer_forward(uint8_t* allowed, float* scores_out, const float* x, const float* qr, int64_t T, int64_t start_pos,
                     const IndexerWeights& w, const IndexerParams& p, const LayerRows& key_cache, Workspace& ws) {
  const int64_t nH = p.n_heads, hd = p.head_dim, half = p.rope_dim / 2, end_pos = start_pos + T;
  DSEEK_CHECK(T <= ws.max_tokens && end_pos <= ws.max_context, "indexer: workspace too small");
  float* q = ws.idx_q.data();        // (T, nH, hd)
  float* qw = ws.idx_w.data();       // (T, nH): per-head weight incl. q scale and softmax scale
  float* cos = ws.rope_cs.data();
  float* sin = cos + half;
  matmul(q, qr, w.wq_b, T, ws.pool, ws.kernel);
  matmul(qw, x, w.weights_proj, T, ws.pool, ws.kernel);
  float* k = ws.idx_k.data();  // (T, hd)
  matmul(k, x, w.wk, T, ws.pool, ws.kernel);

  const float head_scale = float(1.0 / std::sqrt(double(nH)));
  const float softmax_scale = float(1.0 / std::sqrt(double(hd)));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = start_pos + t;
    rope_cos_sin(cos, sin, pos, p.inv_freq, half, p.rope_attn_factor);
    for (int64_t h = 0; h < nH; ++h) {
      const float q_scale = prepare_head(q + (t * nH + h) * hd, cos, sin, p);
      qw[t * nH + h] = qw[t * nH + h] * head_scale * q_scale * softmax_scale;
    }
    float* kt = k + t * hd;
    layernorm(kt, kt, w.k_norm_weight.data(), w.k_norm_bias.data(), hd, p.eps);
    float* dst = key_cache.row(pos);
    dst[hd] = prepare_head(kt, cos, sin, p);
    std::memcpy(dst, kt, size_t(hd) * sizeof(float));
  }

  // score(t, j) = k_scale[j] · Σ_h relu(q[t,h] · k[j]) · qw[t,h], over keys j <= pos(t).
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  int32_t* top = ws.idx_top.data();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n = start_pos + t + 1;
    float* s = scores_out ? scores_out + t * end_pos : ws.scores.data();
    for (int64_t j = 0; j < n; ++j) {
      const float* kj = key_cache.row(j);
      float acc = 0.f;
      for (int64_t h = 0; h < nH; ++h) {
        const float* qh = q + (t * nH + h) * hd;
        float d = 0.f;
        for (int64_t i = 0; i < hd; ++i) d += qh[i] * kj[i];
        acc += std::max(d, 0.f) * qw[t * nH + h];
      }
      s[j] = acc * kj[hd];
    }
    if (scores_out)
      for (int64_t j = n; j < end_pos; ++j) s[j] = kNegInf;
    uint8_t* a = allowed + t * end_pos;
    std::memset(a, 0, size_t(end_pos));
    const int64_t k_sel = std::min(p.topk, n);
    topk(top, s, n, k_sel);
    for (int64_t i = 0; i < k_sel; ++i) a[top[i]] = 1;
  }
}

}  // namespace dseek
