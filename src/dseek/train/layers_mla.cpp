// Multi-head Latent Attention forward/backward (DeepSeek-V2 report §2.1; V3 report §2.1.1).
//
// Training uses the decompressed ("naive") form: k_nope and v of every token come from kv_b_proj(c_kv).
// Inference's absorbed form (model/mla.cpp) computes the same function; the loss-equality test checks
// the two agree.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "dseek/kernels/gemm.h"
#include "dseek/kernels/softmax.h"
#include "dseek/kernels/vec.h"
#include "dseek/train/layers.h"
#include "dseek/train/ops.h"

namespace dseek {

namespace {

// Query rows per causal block: a block of rows only multiplies the keys up to its last row, which
// skips 3/8 of the (T, T) products at T = 256 (half in the limit of small blocks, whose GEMMs get
// less efficient).
constexpr int64_t kCausalBlock = 64;

// Sequence b, head h's keys k_h = [k_nope_h | k_pe] (T, qkd) and values v_h (T, vd), gathered contiguous
// for the GEMMs: the two parts of k_h live in different buffers, and every causal block re-packs v_h,
// whose rows in place are H (nope + vd) floats apart, a power of two at config S that maps them onto a
// few L1 sets (reading them in place was ~5 % slower). Queries, outputs and dQ, dV are used in place.
void gather_head(float* kh, float* vh, const MlaActs& a, const MlaDims& d, int64_t b, int64_t h, int64_t T) {
  const int64_t H = d.H, nope = d.nope, rope = d.rope, vd = d.vd, qkd = d.qk_head_dim(), kvd = nope + vd;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n = b * T + t;
    std::memcpy(kh + t * qkd, a.kv + (n * H + h) * kvd, size_t(nope) * sizeof(float));
    std::memcpy(kh + t * qkd + nope, a.k_pe + n * rope, size_t(rope) * sizeof(float));
    std::memcpy(vh + t * vd, a.kv + (n * H + h) * kvd + nope, size_t(vd) * sizeof(float));
  }
}

}  // namespace

void plan_mla_acts(MlaActs& a, FloatArena& arena, const MlaDims& d, int64_t B, int64_t T) {
  const int64_t N = B * T, H = d.H;
  if (d.q_lora_rank > 0) {
    a.q_a = arena.take(N * d.q_lora_rank);
    a.q_a_rstd = arena.take(N);
    a.q_an = arena.take(N * d.q_lora_rank);
  }
  a.q = arena.take(N * H * d.qk_head_dim());
  a.kv_a = arena.take(N * (d.kv_lora_rank + d.rope));
  a.kv_rstd = arena.take(N);
  a.c_kv = arena.take(N * d.kv_lora_rank);
  a.k_pe = arena.take(N * d.rope);
  a.kv = arena.take(N * H * (d.nope + d.vd));
  a.probs = arena.take(B * H * T * T);
  a.o = arena.take(N * H * d.vd);
}

void mla_forward(float* out, const MlaActs& a, const float* x, const MlaTensors& w, const MlaDims& d, int64_t B,
                 int64_t T, ThreadPool* pool) {
  const int64_t N = B * T, D = d.D, H = d.H, nope = d.nope, rope = d.rope, vd = d.vd, R = d.kv_lora_rank;
  const int64_t qkd = d.qk_head_dim(), L = R + rope, kvd = nope + vd, half = rope / 2;
  // Queries: q = W_UQ · norm(W_DQ · x) with q-LoRA, else q = W_Q · x.
  if (d.q_lora_rank > 0) {
    linear_forward(a.q_a, x, w.q_a_proj, N, D, d.q_lora_rank, pool, d.matmul);
    rmsnorm_forward(a.q_an, a.q_a_rstd, a.q_a, w.q_a_layernorm, N, d.q_lora_rank, d.eps, pool);
    linear_forward(a.q, a.q_an, w.q_b_proj, N, d.q_lora_rank, H * qkd, pool, d.matmul);
  } else {
    linear_forward(a.q, x, w.q_proj, N, D, H * qkd, pool, d.matmul);
  }
  // Latent: [c_kv | k_pe] = kv_a_proj_with_mqa(x); c_kv normed, k_pe rotated (decoupled RoPE).
  linear_forward(a.kv_a, x, w.kv_a_proj_with_mqa, N, D, L, pool, d.matmul);
  parallel_rows(pool, N, 2 * R + (H + 1) * rope * 3, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t t = n % T;
      const float* cs = d.cos + t * half;
      const float* sn = d.sin + t * half;
      rmsnorm_forward(a.c_kv + n * R, a.kv_rstd + n, a.kv_a + n * L, w.kv_a_layernorm, 1, R, d.eps);
      std::memcpy(a.k_pe + n * rope, a.kv_a + n * L + R, size_t(rope) * sizeof(float));
      rope_forward(a.k_pe + n * rope, cs, sn, half);
      for (int64_t h = 0; h < H; ++h) rope_forward(a.q + (n * H + h) * qkd + nope, cs, sn, half);
    }
  });
  linear_forward(a.kv, a.c_kv, w.kv_b_proj, N, R, H * kvd, pool, d.matmul);

  // Causal attention per (sequence, head) as two GEMMs: scores = q_h · k_hᵀ (T, T) with
  // k_h = [k_nope_h | k_pe] gathered, o_h = probs · v_h, in blocks of kCausalBlock rows; the part of a
  // block above the diagonal is computed, then zeroed. q_h, v_h and o_h are strided views of a.q, a.kv, a.o.
  const int64_t ldq = H * qkd, ldo = H * vd;
  parallel_rows(pool, B * H, T * T * (qkd + vd), [&](int64_t i0, int64_t i1) {
    std::unique_ptr<float[]> buf(new float[size_t(T * (qkd + vd))]);
    float* kh = buf.get();     // (T, qkd)
    float* vh = kh + T * qkd;  // (T, vd)
    for (int64_t bh = i0; bh < i1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      gather_head(kh, vh, a, d, b, h, T);
      const float* qh = a.q + (b * T * H + h) * qkd;  // (T, qkd), row stride ldq
      float* oh = a.o + (b * T * H + h) * vd;           // (T, vd), row stride ldo
      float* P = a.probs + bh * T * T;  // (T, T)
      for (int64_t r0 = 0; r0 < T; r0 += kCausalBlock) {  // rows [r0, r1) see keys [0, r1)
        const int64_t r1 = std::min(T, r0 + kCausalBlock);
        gemm_f32(GemmLayout::kNT, P + r0 * T, T, qh + r0 * ldq, ldq, kh, qkd, r1 - r0, qkd, r1, false, nullptr,
                 GemmKernel::kAuto, d.matmul);
      }
      for (int64_t t = 0; t < T; ++t) {
        float* p = P + t * T;
        softmax_scaled_inplace(p, t + 1, d.softmax_scale);
        // Zero above the diagonal up to the end of t's causal block: what the block products read
        // (here and in the backward); the rest of the row is never read.
        for (int64_t j = t + 1, j1 = std::min(T, (t / kCausalBlock + 1) * kCausalBlock); j < j1; ++j) p[j] = 0.f;
      }
      for (int64_t r0 = 0; r0 < T; r0 += kCausalBlock) {
        const int64_t r1 = std::min(T, r0 + kCausalBlock);
        gemm_f32(GemmLayout::kNN, oh + r0 * ldo, ldo, P + r0 * T, T, vh, vd, r1 - r0, r1, vd, false, nullptr,
                 GemmKernel::kAuto, d.matmul);
      }
    }
  });
  linear_forward(out, a.o, w.o_proj, N, H * vd, D, pool, d.matmul);
}

void mla_backward(float* dx, const MlaTensors& dw, const float* dout, const float* x, const MlaActs& a,
                  const MlaTensors& w, const MlaDims& d, int64_t B, int64_t T, FloatArena& scratch, ThreadPool* pool,
                  bool accumulate_dx) {
  const int64_t N = B * T, D = d.D, H = d.H, nope = d.nope, rope = d.rope, vd = d.vd, R = d.kv_lora_rank;
  const int64_t qkd = d.qk_head_dim(), L = R + rope, kvd = nope + vd, half = rope / 2;
  const int64_t mark = scratch.mark();
  float* d_o = scratch.take(N * H * vd);   // (N, H, vd)
  float* dq = scratch.take(N * H * qkd);   // (N, H, qkd)
  float* dkv = scratch.take(N * H * kvd);  // (N, H, nope + vd)
  float* dkv_a = scratch.take(N * L);      // (N, R + rope): [dc_kv before norm | dk_pe before rope]
  float* dc_kv = scratch.take(N * R);      // (N, R) after norm
  // d_o, dc_kv and dq_an are overwritten by their first product, dq and dkv by the attention loop
  // (each (token, head) slot once); dkv_a's rope part sums the heads and its latent part is
  // accumulated by the norm's backward, so only it starts at zero.
  std::memset(dkv_a, 0, size_t(N * L) * sizeof(float));
  linear_backward(d_o, dw.o_proj, dout, a.o, w.o_proj, N, H * vd, D, pool, d.matmul, false);

  // Attention: one sequence per task (k_pe is shared by the heads, so heads of one sequence stay
  // on one thread and dkv_a needs no reduction). Per head, with dS = P ∘ (dP − rowsum(P ∘ dP)) · scale:
  //   dP = dO · Vᵀ,  dV = Pᵀ · dO,  dQ = dS · K,  dK = dSᵀ · Q   (K = [k_nope | k_pe]).
  const int64_t ldq = H * qkd, ldkv = H * kvd;
  parallel_rows(pool, B, H * T * T * (qkd + vd), [&](int64_t b0, int64_t b1) {
    std::unique_ptr<float[]> buf(new float[size_t(T * (2 * qkd + 2 * vd + T))]);
    float* kh = buf.get();      // (T, qkd)
    float* dkh = kh + T * qkd;  // (T, qkd)
    float* vh = dkh + T * qkd;  // (T, vd)
    float* doh = vh + T * vd;   // (T, vd)
    float* dS = doh + T * vd;   // (T, T): dP, then the score gradient
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t h = 0; h < H; ++h) {
        gather_head(kh, vh, a, d, b, h, T);
        for (int64_t t = 0; t < T; ++t)  // dO_h, re-read by every block as v_h (rows 2^k floats apart in place)
          std::memcpy(doh + t * vd, d_o + ((b * T + t) * H + h) * vd, size_t(vd) * sizeof(float));
        // Strided views, (T, ·): q_h read, dQ_h and dV_h written (each slot once).
        const float* qh = a.q + (b * T * H + h) * qkd;
        float* dqh = dq + (b * T * H + h) * qkd;
        float* dvh = dkv + (b * T * H + h) * kvd + nope;
        const float* P = a.probs + (b * H + h) * T * T;  // (T, T), zero above the diagonal in each causal block
        for (int64_t r0 = 0; r0 < T; r0 += kCausalBlock) {
          const int64_t r1 = std::min(T, r0 + kCausalBlock);
          gemm_f32(GemmLayout::kNT, dS + r0 * T, T, doh + r0 * vd, vd, vh, vd, r1 - r0, vd, r1, false, nullptr,
                   GemmKernel::kAuto, d.matmul);
        }
        for (int64_t t = 0; t < T; ++t) {
          const float* p = P + t * T;
          float* ds = dS + t * T;
          softmax_backward_row(ds, p, t + 1, d.softmax_scale);
          for (int64_t j = t + 1, j1 = std::min(T, (t / kCausalBlock + 1) * kCausalBlock); j < j1; ++j) ds[j] = 0.f;
        }
        for (int64_t r0 = 0; r0 < T; r0 += kCausalBlock) {
          // Key rows [r0, r1) get gradient from query rows [r0, T); query rows [r0, r1) from keys [0, r1).
          const int64_t r1 = std::min(T, r0 + kCausalBlock);
          gemm_f32(GemmLayout::kTN, dvh + r0 * ldkv, ldkv, P + r0 * T + r0, T, doh + r0 * vd, vd, r1 - r0, T - r0, vd,
                   false, nullptr, GemmKernel::kAuto, d.matmul);
          gemm_f32(GemmLayout::kTN, dkh + r0 * qkd, qkd, dS + r0 * T + r0, T, qh + r0 * ldq, ldq, r1 - r0, T - r0, qkd,
                   false, nullptr, GemmKernel::kAuto, d.matmul);
          gemm_f32(GemmLayout::kNN, dqh + r0 * ldq, ldq, dS + r0 * T, T, kh, qkd, r1 - r0, r1, qkd, false, nullptr,
                   GemmKernel::kAuto, d.matmul);
        }
        for (int64_t t = 0; t < T; ++t) {
          const int64_t n = b * T + t;
          std::memcpy(dkv + (n * H + h) * kvd, dkh + t * qkd, size_t(nope) * sizeof(float));
          vec_axpy(dkv_a + n * L + R, 1.f, dkh + t * qkd + nope, rope);
        }
      }
  });

  // Undo the rotations (k_pe and each head's q_pe) and the kv_a_layernorm.
  linear_backward(dc_kv, dw.kv_b_proj, dkv, a.c_kv, w.kv_b_proj, N, R, H * kvd, pool, d.matmul, false);
  parallel_rows(pool, N, (H + 1) * rope * 3, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t t = n % T;
      const float* cs = d.cos + t * half;
      const float* sn = d.sin + t * half;
      rope_backward(dkv_a + n * L + R, cs, sn, half);
      for (int64_t h = 0; h < H; ++h) rope_backward(dq + (n * H + h) * qkd + nope, cs, sn, half);
    }
  });
  // The latent's rows are the first R of each (R + rope) row of kv_a / dkv_a.
  rmsnorm_backward(dkv_a, dw.kv_a_layernorm, dc_kv, a.kv_a, w.kv_a_layernorm, a.kv_rstd, N, R, pool, L);
  linear_backward(dx, dw.kv_a_proj_with_mqa, dkv_a, x, w.kv_a_proj_with_mqa, N, D, L, pool, d.matmul, accumulate_dx);
  if (d.q_lora_rank > 0) {
    const int64_t Q = d.q_lora_rank;
    float* dq_an = scratch.take(N * Q);  // (N, q_lora_rank)
    float* dq_a = scratch.take(N * Q);   // (N, q_lora_rank)
    std::memset(dq_a, 0, size_t(N * Q) * sizeof(float));
    linear_backward(dq_an, dw.q_b_proj, dq, a.q_an, w.q_b_proj, N, Q, H * qkd, pool, d.matmul, false);
    rmsnorm_backward(dq_a, dw.q_a_layernorm, dq_an, a.q_a, w.q_a_layernorm, a.q_a_rstd, N, Q, pool);
    linear_backward(dx, dw.q_a_proj, dq_a, x, w.q_a_proj, N, D, Q, pool, d.matmul);
  } else {
    linear_backward(dx, dw.q_proj, dq, x, w.q_proj, N, D, H * qkd, pool, d.matmul);
  }
  scratch.rewind(mark);
}

}  // namespace dseek
