#include "dseek/model/mla.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "dseek/core/error.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/rmsnorm.h"
#include "dseek/kernels/rope.h"
#include "dseek/kernels/softmax.h"

namespace dseek {

MlaParams MlaParams::from_config(const ModelConfig& c) {
  MlaParams p;
  p.n_heads = c.num_attention_heads;
  p.q_lora_rank = c.q_lora_rank;
  p.kv_lora_rank = c.kv_lora_rank;
  p.qk_nope_head_dim = c.qk_nope_head_dim;
  p.qk_rope_head_dim = c.qk_rope_head_dim;
  p.v_head_dim = c.v_head_dim;
  p.rms_norm_eps = float(c.rms_norm_eps);

  RopeParams rp;
  rp.dim = c.qk_rope_head_dim;
  rp.theta = c.rope_theta;
  const RopeScaling& rs = c.rope_scaling;
  rp.yarn = rs.yarn;
  rp.factor = rs.factor;
  rp.original_max_position_embeddings = rs.original_max_position_embeddings;
  rp.beta_fast = rs.beta_fast;
  rp.beta_slow = rs.beta_slow;
  p.inv_freq.resize(size_t(c.qk_rope_head_dim / 2));
  rope_inv_freq(p.inv_freq.data(), rp);

  p.softmax_scale = float(1.0 / std::sqrt(double(c.qk_head_dim())));
  if (rs.yarn) {
    // HF DeepseekV3Attention: the softmax scale absorbs mscale_all_dim twice (q and k sides);
    // cos/sin carry only the ratio, which is 1 for every released config.
    if (rs.mscale_all_dim != 0.0) {
      const double m = yarn_get_mscale(rs.factor, rs.mscale_all_dim);
      p.softmax_scale = float(double(p.softmax_scale) * m * m);
    }
    p.rope_attn_factor = float(yarn_get_mscale(rs.factor, rs.mscale) / yarn_get_mscale(rs.factor, rs.mscale_all_dim));
  }
  return p;
}

namespace {

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Softmax over the scores of keys [0, n) that are visible (allowed); returns in place.
void masked_softmax(float* s, int64_t n, const uint8_t* allowed) {
  if (allowed)
    for (int64_t j = 0; j < n; ++j)
      if (!allowed[j]) s[j] = -std::numeric_limits<float>::infinity();
  softmax_inplace(s, n);
}

}  // namespace

void mla_project(const float* x, int64_t T, int64_t start_pos, const MlaWeights& w, const MlaParams& p, float* cache,
                 Workspace& ws) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim;
  const int64_t R = p.kv_lora_rank, L = p.latent_dim(), qkd = p.qk_head_dim(), half = rope / 2;
  const int64_t end_pos = start_pos + T;
  DSEEK_CHECK(T <= ws.max_tokens && end_pos <= ws.max_context, "workspace too small for this call");
  ThreadPool* pool = ws.pool;
  float* q = ws.q.data();  // (T, H, qkd)
  float* cos = ws.rope_cs.data();
  float* sin = cos + half;

  // Queries: q = W_UQ·norm(W_DQ·x) with q-LoRA (V2, V3), else q = W_Q·x (V2-Lite).
  if (p.q_lora_rank > 0) {
    matmul(ws.q_a.data(), x, w.q_a_proj, T, pool);
    rmsnorm(ws.q_a.data(), ws.q_a.data(), w.q_a_layernorm.data(), T, p.q_lora_rank, p.rms_norm_eps);
    matmul(q, ws.q_a.data(), w.q_b_proj, T, pool);
  } else {
    matmul(q, x, w.q_proj, T, pool);
  }

  // The latent row of each new token: [norm(c_kv) | rope(k_pe)], written straight into the cache.
  matmul(ws.kv_a.data(), x, w.kv_a_proj_with_mqa, T, pool);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = start_pos + t;
    float* row = cache + pos * L;
    const float* kv = ws.kv_a.data() + t * L;
    rmsnorm(row, kv, w.kv_a_layernorm.data(), 1, R, p.rms_norm_eps);
    std::memcpy(row + R, kv + R, size_t(rope) * sizeof(float));
    rope_cos_sin(cos, sin, pos, p.inv_freq.data(), half, p.rope_attn_factor);
    rope_apply_interleaved(row + R, cos, sin, half);
    for (int64_t h = 0; h < H; ++h) rope_apply_interleaved(q + (t * H + h) * qkd + nope, cos, sin, half);
  }

}

void mla_attend(float* out, int64_t T, int64_t start_pos, const MlaWeights& w, const MlaParams& p, const float* cache,
                AttnImpl impl, Workspace& ws, const uint8_t* allowed) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim, vd = p.v_head_dim;
  const int64_t R = p.kv_lora_rank, L = p.latent_dim(), qkd = p.qk_head_dim();
  const int64_t end_pos = start_pos + T;
  ThreadPool* pool = ws.pool;
  const float* q = ws.q.data();  // (T, H, qkd)
  float* scores = ws.scores.data();
  const int64_t allowed_stride = end_pos;
  if (impl == AttnImpl::kAbsorb) {
    for (int64_t h = 0; h < H; ++h) {
      // kv_b_proj rows of head h: nope rows of W_UK, then vd rows of W_UV, each (R) wide.
      const MatView w_uk = w.kv_b_proj.slice_rows(h * (nope + vd), nope);
      const MatView w_uv = w.kv_b_proj.slice_rows(h * (nope + vd) + nope, vd);
      float* q_nope = ws.head_in.data();  // (T, nope)
      for (int64_t t = 0; t < T; ++t) std::memcpy(q_nope + t * nope, q + (t * H + h) * qkd, size_t(nope) * sizeof(float));
      float* q_lat = ws.head_lat.data();  // (T, R) = q_nope · W_UK
      matmul_transposed(q_lat, q_nope, w_uk, T);
      float* o_lat = ws.head_in.data();  // (T, R), reuses head_in once q_nope is consumed
      for (int64_t t = 0; t < T; ++t) {
        const int64_t n = start_pos + t + 1;
        const float* q_pe = q + (t * H + h) * qkd + nope;
        for (int64_t j = 0; j < n; ++j) {
          const float* row = cache + j * L;
          scores[j] = (dot(q_lat + t * R, row, R) + dot(q_pe, row + R, rope)) * p.softmax_scale;
        }
        masked_softmax(scores, n, allowed ? allowed + t * allowed_stride : nullptr);
        float* o = o_lat + t * R;
        for (int64_t c = 0; c < R; ++c) o[c] = 0.f;
        for (int64_t j = 0; j < n; ++j) {
          const float pj = scores[j];
          const float* row = cache + j * L;
          for (int64_t c = 0; c < R; ++c) o[c] += pj * row[c];
        }
      }
      matmul(ws.head_out.data(), o_lat, w_uv, T);  // (T, vd)
      for (int64_t t = 0; t < T; ++t)
        std::memcpy(ws.attn.data() + (t * H + h) * vd, ws.head_out.data() + t * vd, size_t(vd) * sizeof(float));
    }
  } else {
    // Decompress every cached latent into per-head k_nope | v: (end_pos, H, nope + vd).
    DSEEK_CHECK(int64_t(ws.ctx_kv.size()) >= end_pos * H * (nope + vd), "workspace was sized without naive attention");
    float* ckv = ws.ctx_ckv.data();
    for (int64_t j = 0; j < end_pos; ++j) std::memcpy(ckv + j * R, cache + j * L, size_t(R) * sizeof(float));
    float* kv = ws.ctx_kv.data();
    matmul(kv, ckv, w.kv_b_proj, end_pos, pool);
    const int64_t kvd = nope + vd;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = start_pos + t + 1;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q + (t * H + h) * qkd;
        for (int64_t j = 0; j < n; ++j)
          scores[j] = (dot(qh, kv + (j * H + h) * kvd, nope) + dot(qh + nope, cache + j * L + R, rope)) * p.softmax_scale;
        masked_softmax(scores, n, allowed ? allowed + t * allowed_stride : nullptr);
        float* o = ws.attn.data() + (t * H + h) * vd;
        for (int64_t d = 0; d < vd; ++d) o[d] = 0.f;
        for (int64_t j = 0; j < n; ++j) {
          const float* v = kv + (j * H + h) * kvd + nope;
          for (int64_t d = 0; d < vd; ++d) o[d] += scores[j] * v[d];
        }
      }
    }
  }
  matmul(out, ws.attn.data(), w.o_proj, T, pool);
}

void mla_forward(float* out, const float* x, int64_t T, int64_t start_pos, const MlaWeights& w, const MlaParams& p,
                 float* cache, AttnImpl impl, Workspace& ws) {
  mla_project(x, T, start_pos, w, p, cache, ws);
  mla_attend(out, T, start_pos, w, p, cache, impl, ws);
}

}  // namespace dseek
