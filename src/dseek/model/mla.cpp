#include "dseek/model/mla.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>

#include "dseek/core/error.h"
#include "dseek/kernels/attention_decode.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/gemm.h"
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

// Sequences with at most this many tokens in a call (decode, MTP verification, a server's batched
// step) attend with the decode kernel instead (kernels/attention_decode.h): every cache row is read
// once for all heads, nothing is gathered or repacked. The GEMM path copied and transposed the whole
// context per token and layer: v2lite-5l Q8_0 decode fell from 59 to 23 tokens/s at 4096 positions.
constexpr int64_t kDecodeTokens = 8;
// From this many tokens in a call, absorbed MLA's q_nope · W_UK runs as a GEMM per head.
constexpr int64_t kAbsorbGemmTokens = 32;
// A sequence with at least this many tokens in a call attends per head over its context expanded
// through kv_b_proj (attend_prefill_heads) instead of in latent space: per query and key that is
// qk_head_dim + v_head_dim multiply-adds (320 at V2/V3 shapes) instead of latent_dim +
// kv_lora_rank (1088), for one expansion of the context (kv_lora_rank x H (nope + vd) per key,
// through the weights' fast kernels) shared by all the chunk's queries; and q_nope · W_UK and
// W_UV · o_lat drop out. Below ~100 tokens the expansion costs more than it saves.
constexpr int64_t kPrefillHeadsTokens = 128;
// Bound on the expanded context buffers (prefill_ckv + prefill_kvb): longer contexts (and larger
// head counts) attend in latent space.
constexpr int64_t kPrefillHeadsBytes = int64_t(256) << 20;

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

// fn(scratch, h) for every head, heads split across the pool; scratch is the thread's slice.
template <class Fn>
void run_heads(Workspace& ws, int64_t H, const Fn& fn) {
  auto body = [&](int tid, int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) fn(ws.thread_scratch(tid), h);
  };
  if (ws.pool && H > 1)
    ws.pool->parallel_for_tid(H, body);
  else
    body(0, 0, H);
}

}  // namespace

void mla_project(const float* x, const TokenBatch& b, const MlaWeights& w, const MlaParams& p, const LayerRows* rows,
                 Workspace& ws) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim;
  const int64_t qkd = p.qk_head_dim(), half = rope / 2, T = b.T;
  DSEEK_CHECK(T <= ws.max_tokens, "workspace too small for this call");
  ThreadPool* pool = ws.pool;
  float* q = ws.q.data();  // (T, H, qkd)
  float* cos = ws.rope_cs.data();
  float* sin = cos + half;

  // Queries: q = W_UQ·norm(W_DQ·x) with q-LoRA (V2, V3), else q = W_Q·x (V2-Lite).
  if (p.q_lora_rank > 0) {
    matmul(ws.q_a.data(), x, w.q_a_proj, T, pool, ws.kernel);
    rmsnorm(ws.q_a.data(), ws.q_a.data(), w.q_a_layernorm.data(), T, p.q_lora_rank, p.rms_norm_eps);
    matmul(q, ws.q_a.data(), w.q_b_proj, T, pool, ws.kernel);
  } else {
    matmul(q, x, w.q_proj, T, pool, ws.kernel);
  }

  mla_write_latent(x, b, w, p, rows, ws);
  for (int64_t t = 0; t < T; ++t) {
    rope_cos_sin(cos, sin, b.pos[t], p.inv_freq.data(), half, p.rope_attn_factor);
    for (int64_t h = 0; h < H; ++h) rope_apply_interleaved(q + (t * H + h) * qkd + nope, cos, sin, half);
  }
}

void mla_write_latent(const float* x, const TokenBatch& b, const MlaWeights& w, const MlaParams& p,
                      const LayerRows* rows, Workspace& ws) {
  const int64_t R = p.kv_lora_rank, L = p.latent_dim(), half = p.qk_rope_head_dim / 2, T = b.T;
  DSEEK_CHECK(T <= ws.max_tokens, "workspace too small for this call");
  float* cos = ws.rope_cs.data();
  float* sin = cos + half;
  // The latent row of each new token: [norm(c_kv) | rope(k_pe)], written straight into the cache.
  matmul(ws.kv_a.data(), x, w.kv_a_proj_with_mqa, T, ws.pool, ws.kernel);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = b.pos[t];
    const LayerRows& lr = rows[b.seq[t]];
    float* kv = ws.kv_a.data() + t * L;
    float* row = lr.bf16() ? kv : lr.row(pos);  // bf16: formed in place, then rounded into the cache
    rmsnorm(row, kv, w.kv_a_layernorm.data(), 1, R, p.rms_norm_eps);
    if (row != kv) std::memcpy(row + R, kv + R, size_t(p.qk_rope_head_dim) * sizeof(float));
    rope_cos_sin(cos, sin, pos, p.inv_freq.data(), half, p.rope_attn_factor);
    rope_apply_interleaved(row + R, cos, sin, half);
    if (lr.bf16()) lr.write(pos, row);
  }
}

namespace {

// The cache rows [0, end) of one sequence as float32, contiguous in dst (end, latent_dim): one copy
// (or bf16 widening) per run of rows that are contiguous in memory (one run for a contiguous cache,
// one per block for a paged one).
float* gather_rows(const LayerRows& rows, int64_t end, float* dst) {
  const int64_t run = rows.blocks ? rows.block_size : end;
  for (int64_t j0 = 0; j0 < end; j0 += run) rows.read(j0, std::min(run, end - j0), dst + j0 * rows.dim);
  return dst;
}

}  // namespace

namespace {

// The cache rows [0, end) of one sequence, contiguous in ws.prefill_kv (end, latent_dim).
float* gather_context(const LayerRows& rows, int64_t end, int64_t L, Workspace& ws) {
  DSEEK_CHECK(rows.dim == L, "attention: cache row width");
  return gather_rows(rows, end, ws.prefill_kv.data());
}

// Scores S (mt rows of n_keys) to probabilities: row i belongs to token token_of(i), which sees keys
// [0, pos] (and, with V3.2's sparse attention, only its allowed ones); the keys past pos get 0.
template <class TokenOf>
void causal_softmax(float* S, int64_t mt, int64_t n_keys, const TokenBatch& b, const MlaParams& p,
                    const uint8_t* const* allowed, const TokenOf& token_of) {
  for (int64_t i = 0; i < mt; ++i) {
    const int64_t t = token_of(i), n = b.pos[t] + 1;
    float* s = S + i * n_keys;
    attention_softmax(s, n, p.softmax_scale, allowed ? allowed[t] : nullptr);
    std::fill(s + n, s + n_keys, 0.f);
  }
}

// How prefill attention multiplies: Workspace::attn_precision resolved for these weights, on the
// GEMM kernel of the workspace's family (AMX tiles only where `kernel` allows them). kAuto: bf16
// for weights other than F32 / F16 (their products at prefill already round to bf16 on these
// families, matmul.h) on the families that multiply bf16 faster than float32: AMX tiles (v2lite-5l
// Q8_0_R16 / BF16 pp512 at 4096 positions 1.1-1.2x on a Xeon) and AVX-512 BF16 on CPUs without
// AMX (vdpbf16ps: Zen 5 1.02-1.5x, docs/performance.md). Float32 on the other families. (A Xeon
// forced to kAvx512Bf16 would take bf16 too, where vdpbf16ps ran below FMA: 61 vs 109 GMAC/s per
// thread; its default family is kAmx.)
struct AttnGemm {
  GemmKernel kernel;
  GemmPrecision precision;
};
AttnGemm attn_gemm(DType kv_b_dtype, MatmulKernel kernel, AttnPrecision precision) {
  const MatmulKernel k = kernel == MatmulKernel::kAuto ? matmul_best_kernel() : kernel;
  const GemmKernel gk = k == MatmulKernel::kAmx                                      ? GemmKernel::kAmx
                        : k == MatmulKernel::kScalar || k == MatmulKernel::kAvx2 ? GemmKernel::kAuto
                                                                                  : GemmKernel::kAvx512;
  switch (precision) {
    case AttnPrecision::kF32: return {gk, GemmPrecision::kF32};
    case AttnPrecision::kBf16: return {gk, GemmPrecision::kBf16};
    case AttnPrecision::kAuto: break;
  }
  const DType t = kv_b_dtype;
  const bool bf16 = (k == MatmulKernel::kAmx || k == MatmulKernel::kAvx512Bf16) && t != DType::kF32 && t != DType::kF16;
  return {gk, bf16 ? GemmPrecision::kBf16 : GemmPrecision::kF32};
}

DecodeProducts decode_products(const AttnGemm& g) {
  return g.precision != GemmPrecision::kBf16 ? DecodeProducts::kFloat32
         : g.kernel == GemmKernel::kAmx      ? DecodeProducts::kAmx
         : cpu_features().avx512bf16         ? DecodeProducts::kBf16Dot
                                             : DecodeProducts::kFloat32;
}

// Prefill attention of sequence sq as GEMMs (absorbed MLA): its cache rows [0, end) are gathered
// contiguous, then per tile of query rows (t, h): scores = q_lat · c_kvᵀ + q_pe · k_peᵀ, causal
// (and V3.2-sparse) softmax, o_lat = P · c_kv. Scores above a row's position are computed and
// discarded: cheaper than splitting the tile.
void attend_prefill_gemm(int64_t sq, const TokenBatch& b, const MlaParams& p, const LayerRows& rows, Workspace& ws,
                         const uint8_t* const* allowed, const AttnGemm& g) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim;
  const int64_t R = p.kv_lora_rank, L = p.latent_dim(), qkd = p.qk_head_dim();
  const int64_t t0 = b.seq_first[sq], t1 = b.seq_first[sq + 1];
  const int64_t end = b.pos[t1 - 1] + 1;
  const float* kv = gather_context(rows, end, L, ws);
  const float* q = ws.q.data();
  for (int64_t r0 = t0 * H; r0 < t1 * H; r0 += ws.prefill_tile) {
    const int64_t mt = std::min(ws.prefill_tile, t1 * H - r0);
    const int64_t n_keys = b.pos[(r0 + mt - 1) / H] + 1;
    float* S = ws.prefill_scores.data();  // (mt, n_keys)
    gemm_f32(GemmLayout::kNT, S, n_keys, ws.q_lat.data() + r0 * R, R, kv, L, mt, R, n_keys, false, ws.pool, g.kernel,
             g.precision);
    gemm_f32(GemmLayout::kNT, S, n_keys, q + r0 * qkd + nope, qkd, kv + R, L, mt, rope, n_keys, true, ws.pool, g.kernel,
             g.precision);
    causal_softmax(S, mt, n_keys, b, p, allowed, [&](int64_t i) { return (r0 + i) / H; });
    gemm_f32(GemmLayout::kNN, ws.o_lat.data() + r0 * R, R, S, n_keys, kv, L, mt, n_keys, R, false, ws.pool, g.kernel,
             g.precision);
  }
}

bool prefill_heads_fits(int64_t end, const MlaParams& p) {
  const int64_t per_row = p.kv_lora_rank + p.n_heads * (p.qk_nope_head_dim + p.v_head_dim);
  return end * per_row * int64_t(sizeof(float)) <= kPrefillHeadsBytes;
}

// Prefill attention of sequence sq per head, MHA-style: the context's latents c_kv expanded through
// kv_b_proj into k_nope | v per head (one product over all of them, in the weights' dtype kernels),
// then per head and tile of queries: scores = q_nope · k_noperᵀ + q_pe · k_peᵀ (k_pe from the
// latent rows), causal (and V3.2-sparse) softmax, attn = P · v, written straight into ws.attn.
void attend_prefill_heads(int64_t sq, const TokenBatch& b, const MlaWeights& w, const MlaParams& p,
                          const LayerRows& rows, Workspace& ws, const uint8_t* const* allowed, const AttnGemm& g) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim, vd = p.v_head_dim;
  const int64_t R = p.kv_lora_rank, L = p.latent_dim(), qkd = p.qk_head_dim(), kvd = nope + vd;
  const int64_t t0 = b.seq_first[sq], t1 = b.seq_first[sq + 1];
  const int64_t end = b.pos[t1 - 1] + 1;
  const float* kv = gather_context(rows, end, L, ws);
  if (int64_t(ws.prefill_ckv.size()) < end * R) ws.prefill_ckv.resize(size_t(end * R));
  if (int64_t(ws.prefill_kvb.size()) < end * H * kvd) ws.prefill_kvb.resize(size_t(end * H * kvd));
  float* ckv = ws.prefill_ckv.data();
  float* kvb = ws.prefill_kvb.data();
  for (int64_t j = 0; j < end; ++j) std::memcpy(ckv + j * R, kv + j * L, size_t(R) * sizeof(float));
  matmul(kvb, ckv, w.kv_b_proj, end, ws.pool, ws.kernel);
  const float* q = ws.q.data();
  const int64_t tile = ws.prefill_tile;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t r0 = t0; r0 < t1; r0 += tile) {
      const int64_t mt = std::min(tile, t1 - r0);
      const int64_t n_keys = b.pos[r0 + mt - 1] + 1;
      float* S = ws.prefill_scores.data();  // (mt, n_keys)
      const float* qh = q + (r0 * H + h) * qkd;
      gemm_f32(GemmLayout::kNT, S, n_keys, qh, H * qkd, kvb + h * kvd, H * kvd, mt, nope, n_keys, false, ws.pool, g.kernel,
               g.precision);
      gemm_f32(GemmLayout::kNT, S, n_keys, qh + nope, H * qkd, kv + R, L, mt, rope, n_keys, true, ws.pool, g.kernel,
               g.precision);
      causal_softmax(S, mt, n_keys, b, p, allowed, [&](int64_t i) { return r0 + i; });
      gemm_f32(GemmLayout::kNN, ws.attn.data() + (r0 * H + h) * vd, H * vd, S, n_keys, kvb + h * kvd + nope, H * kvd,
               mt, n_keys, vd, false, ws.pool, g.kernel, g.precision);
    }
}

// Adds rows [j0, j1) of one sequence's cache to the state of query q, kMaxRuns runs at a time
// (one run, or one per paged block); products as decode_attend_rows.
void attend_rows(float* o, float* m, float* l, const DecodeQuery& q, const LayerRows& kv, int64_t j0, int64_t j1,
                 const uint8_t* allowed, DecodeProducts products) {
  constexpr int64_t kMaxRuns = 64;
  LatentRun runs[kMaxRuns];
  int64_t nr = 0;
  for (int64_t j = j0; j < j1;) {
    const int64_t run_end = kv.blocks ? std::min(j1, (j / kv.block_size + 1) * kv.block_size) : j1;
    runs[nr++] = LatentRun{kv.row_data(j), run_end - j, allowed ? allowed + j : nullptr};
    j = run_end;
    if (nr == kMaxRuns || j == j1) {
      decode_attend_rows(o, m, l, q, runs, nr, kv.dim, kv.bf16(), products);
      nr = 0;
    }
  }
}

// groups: (first token, count) pairs; a group's tokens are one sequence's, at consecutive positions.
// A group attends as one query of count * H heads over the rows its first token sees, so each row
// is read once for all of them (an MTP verification, a server step's few tokens); token i of the
// group then adds its own last i rows. Each group's context splits across the threads when there
// are fewer groups than threads, each part an online-softmax state (ws.decode_state), merged per
// group into o_lat. products: where the prefill attention GEMMs take bf16 (AttnGemm), decode attention
// over a bf16 cache takes bf16 products too, on AMX tiles or as vdpbf16ps as they do (decode_attend_rows).
void attend_decode(const std::vector<int64_t>& groups, const TokenBatch& b, const MlaParams& p, const LayerRows* rows,
                   Workspace& ws, const uint8_t* const* allowed, DecodeProducts products) {
  const int64_t H = p.n_heads, R = p.kv_lora_rank, qkd = p.qk_head_dim();
  const int threads = ws.pool ? ws.pool->size() : 1;
  const int64_t n_groups = int64_t(groups.size()) / 2;
  const int64_t parts = n_groups >= threads ? 1 : threads;
  const int64_t per = H * R + 2 * H;  // o, m, l of one token's state
  DSEEK_CHECK(ws.decode_capacity >= parts, "attention: workspace sized for fewer threads than its pool has");
  for (int64_t g0 = 0; g0 < n_groups;) {
    // A round: the groups whose states (count x parts each) fit the workspace.
    int64_t g1 = g0, used = 0;
    while (g1 < n_groups && used + groups[size_t(2 * g1 + 1)] * parts <= ws.decode_capacity)
      used += groups[size_t(2 * g1++ + 1)] * parts;
    DSEEK_CHECK(g1 > g0, "attention: a decode group larger than the workspace's states");
    auto state = [&](int64_t g, int64_t part) {  // the item's state: count tokens' o, then m, then l
      int64_t off = 0;
      for (int64_t k = g0; k < g; ++k) off += groups[size_t(2 * k + 1)] * parts;
      return ws.decode_state.data() + (off + part * groups[size_t(2 * g + 1)]) * per;
    };
    auto run = [&](int64_t a, int64_t e) {
      for (int64_t i = a; i < e; ++i) {
        const int64_t g = g0 + i / parts, part = i % parts;
        const int64_t t0 = groups[size_t(2 * g)], cnt = groups[size_t(2 * g + 1)], n = b.pos[t0] + 1;
        float* o = state(g, part);
        float *m = o + cnt * H * R, *l = m + cnt * H;
        decode_state_init(o, m, l, cnt * H, R);
        DecodeQuery q;
        q.q_lat = ws.q_lat.data() + t0 * H * R;
        q.q_pe = ws.q.data() + t0 * H * qkd + p.qk_nope_head_dim;
        q.q_pe_stride = qkd;
        q.H = cnt * H;
        q.R = R;
        q.rope = p.qk_rope_head_dim;
        q.scale = p.softmax_scale;
        const LayerRows& kv = rows[b.seq[t0]];
        attend_rows(o, m, l, q, kv, n * part / parts, n * (part + 1) / parts, allowed ? allowed[t0] : nullptr,
                    products);
        if (part + 1 < parts) continue;
        for (int64_t k = 1; k < cnt; ++k) {  // token k's rows past the group's first token
          DecodeQuery qk = q;
          qk.q_lat += k * H * R;
          qk.q_pe += k * H * qkd;
          qk.H = H;
          attend_rows(o + k * H * R, m + k * H, l + k * H, qk, kv, n, n + k, nullptr, products);
        }
      }
    };
    const int64_t items = (g1 - g0) * parts;
    if (ws.pool && items > 1)
      ws.pool->parallel_for(items, [&](int64_t a, int64_t e) { run(a, e); });
    else
      run(0, items);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t t0 = groups[size_t(2 * g)], cnt = groups[size_t(2 * g + 1)], hs = cnt * H;
      float* o = state(g, 0);
      float *m = o + hs * R, *l = m + hs;
      for (int64_t k = 1; k < parts; ++k) {
        const float* o2 = state(g, k);
        decode_state_merge(o, m, l, o2, o2 + hs * R, o2 + hs * R + hs, hs, R);
      }
      decode_state_finish(o, l, hs, R);
      std::memcpy(ws.o_lat.data() + t0 * H * R, o, size_t(hs * R) * sizeof(float));
    }
    g0 = g1;
  }
}

}  // namespace

DecodeProducts decode_attn_products(DType kv_b_dtype, MatmulKernel kernel, AttnPrecision precision) {
  return decode_products(attn_gemm(kv_b_dtype, kernel, precision));
}

void mla_attend(float* out, const TokenBatch& b, const MlaWeights& w, const MlaParams& p, const LayerRows* rows,
                AttnImpl impl, Workspace& ws, const uint8_t* const* allowed) {
  const int64_t H = p.n_heads, nope = p.qk_nope_head_dim, rope = p.qk_rope_head_dim, vd = p.v_head_dim;
  const int64_t R = p.kv_lora_rank, qkd = p.qk_head_dim(), T = b.T;
  ThreadPool* pool = ws.pool;
  const float* q = ws.q.data();  // (T, H, qkd)
  for (int64_t t = 0; t < T; ++t)
    DSEEK_CHECK(b.pos[t] < ws.max_context, "attention: position beyond the workspace's context");
  if (impl == AttnImpl::kAbsorb) {
    // Sequences with many tokens in this call attend per head (attend_prefill_heads) and need
    // neither step 1 nor step 3; when every sequence does, both are skipped.
    auto per_head = [&](int64_t sq) {
      const int64_t t0 = b.seq_first[sq], t1 = b.seq_first[sq + 1];
      return t1 - t0 >= kPrefillHeadsTokens && !ws.prefill_kv.empty() && prefill_heads_fits(b.pos[t1 - 1] + 1, p);
    };
    bool any_latent = false;
    for (int64_t sq = 0; sq < b.n_seqs; ++sq)
      any_latent = any_latent || (b.seq_first[sq + 1] > b.seq_first[sq] && !per_head(sq));
    // 1. q_lat[t, h] = q_nope[t, h] · W_UK[h]: kv_b_proj rows of head h are nope rows of W_UK, then
    //    vd rows of W_UV, each R wide.
    if (any_latent) run_heads(ws, H, [&](float* scratch, int64_t h) {
      const MatView w_uk = w.kv_b_proj.slice_rows(h * (nope + vd), nope);
      if (T >= kAbsorbGemmTokens && nope * R <= ws.thread_stride) {
        // Prefill: W_UK[h] as floats (nope x R, 256 KB at V2/V3 shapes), then one GEMM reading the
        // head's q_nope in place and writing its q_lat rows in place. The row kernel of
        // matmul_transposed re-read W_UK per token: ~6 % of v2lite-5l Q8_0 pp512.
        for (int64_t i = 0; i < nope; ++i) dequantize_row(scratch + i * R, w_uk, i);
        gemm_f32(GemmLayout::kNN, ws.q_lat.data() + h * R, H * R, q + h * qkd, H * qkd, scratch, R, T, nope, R,
                 /*accumulate=*/false, nullptr);
        return;
      }
      float* q_nope = scratch;            // (T, nope)
      float* lat = scratch + T * std::max(nope, R);  // (T, R)
      for (int64_t t = 0; t < T; ++t) std::memcpy(q_nope + t * nope, q + (t * H + h) * qkd, size_t(nope) * sizeof(float));
      matmul_transposed(lat, q_nope, w_uk, T);
      for (int64_t t = 0; t < T; ++t) std::memcpy(ws.q_lat.data() + (t * H + h) * R, lat + t * R, size_t(R) * sizeof(float));
    });
    // 2. Attention of every (query, head) against its sequence's latent cache rows [0, pos]: the
    //    decode kernel for sequences with few tokens in this call, GEMMs over the gathered rows for
    //    the others (prefill chunks; their workspace has the gather buffers, max_tokens > 1).
    auto use_decode = [&](int64_t sq) { return b.seq_first[sq + 1] - b.seq_first[sq] <= kDecodeTokens; };
    // Groups of a sequence's consecutive tokens, as many as one round's states hold (per-token row
    // masks, V3.2's sparse attention, keep one token per group).
    const int threads = ws.pool ? ws.pool->size() : 1;
    const int64_t max_group = allowed ? 1 : std::max<int64_t>(1, ws.decode_capacity / threads);
    std::vector<int64_t>& dec = ws.decode_groups;
    dec.clear();
    for (int64_t t = 0; t < T; ++t) {
      if (!use_decode(b.seq[t])) continue;
      const size_t last = dec.size();
      if (last > 0 && dec[last - 1] < max_group && b.seq[dec[last - 2]] == b.seq[t] &&
          dec[last - 2] + dec[last - 1] == t && b.pos[dec[last - 2]] + dec[last - 1] == b.pos[t])
        ++dec[last - 1];
      else
        dec.insert(dec.end(), {t, 1});
    }
    const AttnGemm g = attn_gemm(w.kv_b_proj.dtype, ws.kernel, ws.attn_precision);
    const DecodeProducts products = decode_products(g);
    if (!dec.empty()) attend_decode(dec, b, p, rows, ws, allowed, products);
    for (int64_t sq = 0; sq < b.n_seqs; ++sq)
      if (!use_decode(sq) && !per_head(sq)) {
        DSEEK_CHECK(!ws.prefill_kv.empty(), "attention: workspace without gather buffers for a multi-token call");
        attend_prefill_gemm(sq, b, p, rows[sq], ws, allowed, g);
      }
    // 3. attn[t, h] = W_UV[h] · o_lat[t, h] (then the per-head sequences overwrite their rows).
    if (any_latent) run_heads(ws, H, [&](float* scratch, int64_t h) {
      const MatView w_uv = w.kv_b_proj.slice_rows(h * (nope + vd) + nope, vd);
      float* ol = scratch;                             // (T, R)
      float* out_h = scratch + T * std::max(nope, R);  // (T, vd)
      for (int64_t t = 0; t < T; ++t) std::memcpy(ol + t * R, ws.o_lat.data() + (t * H + h) * R, size_t(R) * sizeof(float));
      matmul(out_h, ol, w_uv, T, nullptr, ws.kernel);
      for (int64_t t = 0; t < T; ++t) std::memcpy(ws.attn.data() + (t * H + h) * vd, out_h + t * vd, size_t(vd) * sizeof(float));
    });
    for (int64_t sq = 0; sq < b.n_seqs; ++sq)
      if (per_head(sq)) attend_prefill_heads(sq, b, w, p, rows[sq], ws, allowed, g);
  } else {
    // The reference path, one sequence at a time on one thread: decompress every cached latent of
    // the sequence into per-head k_nope | v (end_pos, H, nope + vd), then attend.
    float* scores = ws.scores.data();
    const int64_t kvd = nope + vd;
    for (int64_t sq = 0; sq < b.n_seqs; ++sq) {
      const int64_t t0 = b.seq_first[sq], t1 = b.seq_first[sq + 1];
      if (t0 == t1) continue;
      const LayerRows& kv_rows = rows[sq];
      const int64_t end_pos = b.pos[t1 - 1] + 1;
      DSEEK_CHECK(int64_t(ws.ctx_kv.size()) >= end_pos * H * kvd, "workspace was sized without naive attention");
      std::vector<float> latent(size_t(end_pos * kv_rows.dim));  // the rows as float32 (a bf16 cache widened)
      const float* lat = gather_rows(kv_rows, end_pos, latent.data());
      float* ckv = ws.ctx_ckv.data();
      for (int64_t j = 0; j < end_pos; ++j) std::memcpy(ckv + j * R, lat + j * kv_rows.dim, size_t(R) * sizeof(float));
      float* kv = ws.ctx_kv.data();
      matmul(kv, ckv, w.kv_b_proj, end_pos, pool, ws.kernel);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = b.pos[t] + 1;
        for (int64_t h = 0; h < H; ++h) {
          const float* qh = q + (t * H + h) * qkd;
          for (int64_t j = 0; j < n; ++j)
            scores[j] = (dot(qh, kv + (j * H + h) * kvd, nope) + dot(qh + nope, lat + j * kv_rows.dim + R, rope)) * p.softmax_scale;
          masked_softmax(scores, n, allowed ? allowed[t] : nullptr);
          float* o = ws.attn.data() + (t * H + h) * vd;
          for (int64_t d = 0; d < vd; ++d) o[d] = 0.f;
          for (int64_t j = 0; j < n; ++j) {
            const float* v = kv + (j * H + h) * kvd + nope;
            for (int64_t d = 0; d < vd; ++d) o[d] += scores[j] * v[d];
          }
        }
      }
    }
  }
  matmul(out, ws.attn.data(), w.o_proj, T, pool, ws.kernel);
}

}  // namespace dseek
