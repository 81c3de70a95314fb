// Primitive forward/backward pairs of training (llm.c style): each _forward saves what its
// _backward needs; gradients d<x> are accumulated with += unless a comment says "overwrites".
//
// N = rows (tokens, B*T flattened), C = channels of the op, V = vocab_size.
// The forwards compute what the inference kernels (kernels/rmsnorm, softmax, rope) compute, but not
// bit for bit: products run on the training GEMM (FMA, blocked sums), exp is a vectorized polynomial
// in SwiGLU, the attention softmax and the cross-entropy, RMSNorm sums in 8 partial double sums. The loss-equality tests
// (tests/train/train_model_test.cpp) bound training vs `dseek run` on the same checkpoint (≤ 1e-4).
#pragma once

#include <cstdint>
#include <functional>

#include "dseek/core/thread_pool.h"
#include "dseek/kernels/gemm.h"

namespace dseek {

// out (N, C) = table[tokens[n]] for table (V, C). Throws dseek::Error for ids outside [0, V).
void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N, int64_t V, int64_t C);
// dtable (V, C) += scatter of dout (N, C) by token id.
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N, int64_t C);

// out (N, C) = x * rstd * weight (C), rstd (N) = 1 / sqrt(mean(x²) + eps) saved for backward.
// out may alias x only when backward is not needed (x is read by backward).
// Rows run on pool when given.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t N, int64_t C, float eps,
                     ThreadPool* pool = nullptr);
// dx (N, C) += ..., dweight (C) += ... for dout (N, C). dweight's row sum is taken in fixed blocks of
// rows, so it does not depend on the pool's size. ld_x: row stride of x and dx, ld_dout: of dout
// (0: C), for rows that are part of wider rows (MLA's latent [c_kv | k_pe], MTP's concatenation).
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t N, int64_t C, ThreadPool* pool = nullptr, int64_t ld_x = 0,
                      int64_t ld_dout = 0);

// y (N, out) = x (N, in) · Wᵀ, W (out, in). Overwrites y. `precision`: see ops_gemm.h.
void linear_forward(float* y, const float* x, const float* W, int64_t N, int64_t in, int64_t out, ThreadPool* pool,
                    GemmPrecision precision = GemmPrecision::kF32);
// dx (N, in) += dy · W (skipped when dx is null), dW (out, in) += dyᵀ · x.
// accumulate_dx false: dx = dy · W, overwritten (a fresh gradient buffer needs no memset first).
void linear_backward(float* dx, float* dW, const float* dy, const float* x, const float* W, int64_t N, int64_t in,
                     int64_t out, ThreadPool* pool, GemmPrecision precision = GemmPrecision::kF32,
                     bool accumulate_dx = true);

// out (n) = silu(gate) * up. Overwrites out.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, ThreadPool* pool = nullptr);
// dgate (n) += ..., dup (n) += ... . silu's exp is a vectorized polynomial (≤ ~2 ulp, ops.cpp),
// not the libm exp of kernels/softmax.cpp swiglu; the loss-equality tests bound the difference.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     ThreadPool* pool = nullptr);

// The MLP's fused form: dact (n) holds d(silu(gate) * up) on entry and dgate on return; dup (n) is
// overwritten.
void swiglu_backward_overwrite(float* dact, float* dup, const float* gate, const float* up, int64_t n,
                               ThreadPool* pool = nullptr);

// x (n) <- softmax(scale · x) for finite x (scale > 0), exp as SwiGLU's; the attention rows.
void softmax_scaled_inplace(float* x, int64_t n, float scale);

// Interleaved RoPE of one vector x (2 * half) in place: pairs (x[2i], x[2i+1]) rotated by the angle
// whose (scaled) cos/sin are given, as kernels/rope.h rope_apply_interleaved.
void rope_forward(float* x, const float* cos, const float* sin, int64_t half);
// The adjoint: rotation by -angle (same scale), in place on the gradient dx (2 * half).
void rope_backward(float* dx, const float* cos, const float* sin, int64_t half);
// cos, sin (T, half) for positions 0 .. T-1 (kernels/rope.h rope_cos_sin per position).
void rope_table(float* cos, float* sin, int64_t T, const float* inv_freq, int64_t half, float attn_factor);

// Softmax cross-entropy of logits (N, V) against targets (N): probs (N, V) (may alias logits) and
// losses (N) = -log probs[target]. Returns the sum of the losses (double).
double softmax_cross_entropy_forward(float* probs, float* losses, const float* logits, const int32_t* targets,
                                     int64_t N, int64_t V, ThreadPool* pool);
// dlogits (N, V) = dloss * (probs - onehot(target)), for one dloss for every row (a mean over rows
// passes 1/N). Overwrites dlogits; may alias probs.
void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int64_t N,
                                    int64_t V, ThreadPool* pool);

// Elementwise helpers the compiler vectorizes (-O2 leaves such loops scalar): out (n) = a + b, out (n) = s · x.
// out may alias an input. add_vectors runs over rows of 4096 values on pool when given and worth it.
void add_vectors(float* out, const float* a, const float* b, int64_t n, ThreadPool* pool = nullptr);
void scale_vector(float* out, float s, const float* x, int64_t n);
// The attention softmax's backward of one causal row in place: ds (n) <- p ∘ (ds − Σ p ∘ ds) · scale,
// the sum in 16 partial float sums (a single accumulator is a serial chain of adds).
void softmax_backward_row(float* ds, const float* p, int64_t n, float scale);

// Row-parallel helper: fn(begin, end) over [0, n) on pool when given and worth it.
void parallel_rows(ThreadPool* pool, int64_t n, int64_t work_per_row, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace dseek
