#include "dseek/train/ops.h"

#include <cmath>
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/kernels/rope.h"
#include "dseek/kernels/vec.h"
#include "dseek/train/ops_gemm.h"

namespace dseek {

void parallel_rows(ThreadPool* pool, int64_t n, int64_t work_per_row, const std::function<void(int64_t, int64_t)>& fn) {
  // Below ~64k multiply-adds a fork/join costs more than it saves.
  if (pool && pool->size() > 1 && n > 1 && n * work_per_row >= (1 << 16))
    pool->parallel_for(n, fn);
  else
    fn(0, n);
}

void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N, int64_t V, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    if (tokens[n] < 0 || tokens[n] >= V)
      throw Error("token id " + std::to_string(tokens[n]) + " at row " + std::to_string(n) +
                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    std::memcpy(out + n * C, table + int64_t(tokens[n]) * C, size_t(C) * sizeof(float));
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) vec_axpy(dtable + int64_t(tokens[n]) * C, 1.f, dout + n * C, C);  // exact adds
}

namespace {

// Rows per block of rmsnorm_backward's dweight partial sums: fixed, so the sum (block partials added
// in block order) is the same for every thread count.
constexpr int64_t kNormRowBlock = 32;

// Σ a[i] b[i] c[i] (c null: Σ a[i] b[i]) in double over 8 partial sums, which the compiler vectorizes
// (a single double accumulator is a serial chain).
[[gnu::always_inline]] inline double dot_double(const float* a, const float* b, const float* c, int64_t n) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += double(a[i + j]) * b[i + j] * (c ? c[i + j] : 1.f);
  double s = 0.0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += double(a[i]) * b[i] * (c ? c[i] : 1.f);
  return s;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void rmsnorm_forward_rows(float* out, float* rstd, const float* x, const float* weight, int64_t n0, int64_t n1,
                          int64_t C, float eps) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* xn = x + n * C;
    float* on = out + n * C;
    // As kernels/rmsnorm.cpp: double sum of squares (here in 8 partial sums), float scale.
    const double ss = dot_double(xn, xn, nullptr, C);
    const float r = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    rstd[n] = r;
    for (int64_t i = 0; i < C; ++i) on[i] = (xn[i] * r) * weight[i];
  }
}

// Rows [n0, n1); dweight contributions go to dw_part (C), which the caller sums.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void rmsnorm_backward_rows(float* dx, float* dw_part, const float* dout, const float* x, const float* weight,
                           const float* rstd, int64_t n0, int64_t n1, int64_t C, int64_t ld_x, int64_t ld_dout) {
  // y_i = x_i r w_i, r = (mean(x²) + eps)^(-1/2), dr/dx_j = -r³ x_j / C:
  // dx_j = r w_j dy_j - (r³ / C) x_j Σ_i dy_i w_i x_i.
  for (int64_t n = n0; n < n1; ++n) {
    const float* xn = x + n * ld_x;
    const float* g = dout + n * ld_dout;
    float* dxn = dx + n * ld_x;
    const float r = rstd[n];
    const double dot = dot_double(g, weight, xn, C);
    const float k = float(dot * double(r) * double(r) * double(r) / double(C));
    for (int64_t i = 0; i < C; ++i) {
      dxn[i] += r * weight[i] * g[i] - k * xn[i];
      dw_part[i] += g[i] * xn[i] * r;
    }
  }
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t N, int64_t C, float eps,
                     ThreadPool* pool) {
  parallel_rows(pool, N, 3 * C, [&](int64_t n0, int64_t n1) { rmsnorm_forward_rows(out, rstd, x, weight, n0, n1, C, eps); });
}

void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t N, int64_t C, ThreadPool* pool, int64_t ld_x, int64_t ld_dout) {
  if (ld_x == 0) ld_x = C;
  if (ld_dout == 0) ld_dout = C;
  if (N <= kNormRowBlock) {
    rmsnorm_backward_rows(dx, dweight, dout, x, weight, rstd, 0, N, C, ld_x, ld_dout);
    return;
  }
  const int64_t blocks = (N + kNormRowBlock - 1) / kNormRowBlock;
  std::vector<float> part(size_t(blocks * C), 0.f);  // (blocks, C), a few KB
  parallel_rows(pool, blocks, kNormRowBlock * 5 * C, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      rmsnorm_backward_rows(dx, part.data() + b * C, dout, x, weight, rstd, b * kNormRowBlock,
                            std::min(N, (b + 1) * kNormRowBlock), C, ld_x, ld_dout);
  });
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < C; ++i) dweight[i] += part[size_t(b * C + i)];
}

void linear_forward(float* y, const float* x, const float* W, int64_t N, int64_t in, int64_t out, ThreadPool* pool,
                    GemmPrecision precision) {
  gemm_nt(y, x, W, N, in, out, pool, precision);
}

void linear_backward(float* dx, float* dW, const float* dy, const float* x, const float* W, int64_t N, int64_t in,
                     int64_t out, ThreadPool* pool, GemmPrecision precision, bool accumulate_dx) {
  if (dx && accumulate_dx)
    gemm_nn_acc(dx, dy, W, N, out, in, pool, precision);
  else if (dx)
    gemm_nn(dx, dy, W, N, out, in, pool, precision);
  gemm_tn_acc(dW, dy, x, out, N, in, pool, precision);
}

namespace {

// exp(x) for the SwiGLU gates, in arithmetic the compiler vectorizes (std::exp is a libm call per
// element: ~6 % of a config-S step). Cephes expf: n = round(x / ln 2) by the 1.5 · 2²³ trick,
// r = x − n ln 2 in two parts, a degree-6 polynomial for e^r on [−ln2/2, ln2/2], then 2ⁿ through the
// exponent bits. Relative error ≤ ~2 ulp; x is clamped to [−87, 88] (e^−87 ≈ 1.6e-38, not 0, which
// changes nothing in σ(g) = 1 / (1 + e^−g)).
[[gnu::always_inline]] inline float exp_vec(float x) {
  x = std::min(std::max(x, -87.f), 88.f);
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  return p * std::bit_cast<float>((int32_t(n) + 127) << 23);
}

[[gnu::always_inline]] inline float sigmoid_vec(float g) { return 1.f / (1.f + exp_vec(-g)); }

// -O2's cost model does not vectorize these loops; O3 does (16 lanes on x86-64-v4).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void swiglu_forward_range(float* out, const float* gate, const float* up, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) out[i] = gate[i] * sigmoid_vec(gate[i]) * up[i];
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void swiglu_backward_range(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t i0,
                           int64_t i1) {
  // silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))).
  for (int64_t i = i0; i < i1; ++i) {
    const float g = gate[i], s = sigmoid_vec(g), d = dout[i];
    dup[i] += d * g * s;
    dgate[i] += d * up[i] * s * (1.f + g * (1.f - s));
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void swiglu_backward_overwrite_range(float* dact, float* dup, const float* gate, const float* up, int64_t i0,
                                     int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const float g = gate[i], s = sigmoid_vec(g), d = dact[i];
    dup[i] = d * g * s;
    dact[i] = d * up[i] * s * (1.f + g * (1.f - s));
  }
}

// max of x (n >= 1) in 16 partial maxima, so the loop vectorizes; inlined into each clone below.
__attribute__((always_inline)) inline float row_max(const float* x, int64_t n) {
  constexpr int kLanes = 16;
  float mx[kLanes];
  for (int j = 0; j < kLanes; ++j) mx[j] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) mx[j] = std::max(mx[j], x[i + j]);
  float m = mx[0];
  for (int j = 1; j < kLanes; ++j) m = std::max(m, mx[j]);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// Causal attention rows (the loop of mla_forward): x (n) <- softmax(scale · x). exp_vec and 16 partial
// maxima / sums so the loops vectorize; scores are finite (no -inf masking in training).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void softmax_scaled_range(float* x, int64_t n, float scale) {
  constexpr int kLanes = 16;
  const float m = row_max(x, n);
  float sums[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float e = exp_vec((x[i + j] - m) * scale);
      x[i + j] = e;
      sums[j] += e;
    }
  double sum = 0.0;
  for (int j = 0; j < kLanes; ++j) sum += sums[j];
  for (; i < n; ++i) {
    x[i] = exp_vec((x[i] - m) * scale);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (i = 0; i < n; ++i) x[i] *= inv;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void add_range(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void scale_range(float* out, float s, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = s * x[i];
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
void softmax_backward_range(float* ds, const float* p, int64_t n, float scale) {
  constexpr int kLanes = 16;
  float sums[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) sums[j] += p[i + j] * ds[i + j];
  float sum = 0.f;
  for (int j = 0; j < kLanes; ++j) sum += sums[j];
  for (; i < n; ++i) sum += p[i] * ds[i];
  for (i = 0; i < n; ++i) ds[i] = p[i] * (ds[i] - sum) * scale;
}

// One row of softmax_cross_entropy_forward: p (V) = softmax(l), returns -log p[y] in double. exp is
// exp_vec (as the attention softmax), the sum in 8 partial double sums so the loops vectorize.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
double cross_entropy_row(float* p, const float* l, int64_t V, int32_t y) {
  const float mx = row_max(l, V);
  const float ly = l[y];  // read before p (which may alias l) overwrites it
  constexpr int kSums = 8;
  double sums[kSums] = {};
  int64_t v = 0;
  for (; v + kSums <= V; v += kSums)
    for (int j = 0; j < kSums; ++j) {
      const float e = exp_vec(l[v + j] - mx);
      p[v + j] = e;
      sums[j] += double(e);
    }
  double sum = 0.0;
  for (int j = 0; j < kSums; ++j) sum += sums[j];
  for (; v < V; ++v) {
    p[v] = exp_vec(l[v] - mx);
    sum += double(p[v]);
  }
  const float inv = float(1.0 / sum);
  for (v = 0; v < V; ++v) p[v] *= inv;
  // -log p_y = log Σ exp(l - mx) - (l_y - mx), in double from the logit (not from the rounded p_y).
  return std::log(sum) - double(ly - mx);
}

}  // namespace

void add_vectors(float* out, const float* a, const float* b, int64_t n, ThreadPool* pool) {
  constexpr int64_t kRow = 4096;
  parallel_rows(pool, (n + kRow - 1) / kRow, kRow, [&](int64_t r0, int64_t r1) {
    const int64_t i0 = r0 * kRow, i1 = std::min(n, r1 * kRow);
    add_range(out + i0, a + i0, b + i0, i1 - i0);
  });
}

void scale_vector(float* out, float s, const float* x, int64_t n) { scale_range(out, s, x, n); }

void softmax_backward_row(float* ds, const float* p, int64_t n, float scale) {
  if (n > 0) softmax_backward_range(ds, p, n, scale);
}

void softmax_scaled_inplace(float* x, int64_t n, float scale) {
  if (n > 0) softmax_scaled_range(x, n, scale);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, ThreadPool* pool) {
  parallel_rows(pool, n, 8, [&](int64_t i0, int64_t i1) { swiglu_forward_range(out, gate, up, i0, i1); });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     ThreadPool* pool) {
  parallel_rows(pool, n, 8, [&](int64_t i0, int64_t i1) { swiglu_backward_range(dgate, dup, dout, gate, up, i0, i1); });
}

void swiglu_backward_overwrite(float* dact, float* dup, const float* gate, const float* up, int64_t n,
                               ThreadPool* pool) {
  parallel_rows(pool, n, 8, [&](int64_t i0, int64_t i1) { swiglu_backward_overwrite_range(dact, dup, gate, up, i0, i1); });
}

void rope_forward(float* x, const float* cos, const float* sin, int64_t half) {
  rope_apply_interleaved(x, cos, sin, half);
}

void rope_backward(float* dx, const float* cos, const float* sin, int64_t half) {
  // Forward is (a, b) -> (a c - b s, a s + b c), a scaled rotation M; the gradient goes through Mᵀ.
  for (int64_t i = 0; i < half; ++i) {
    const float a = dx[2 * i], b = dx[2 * i + 1];
    dx[2 * i] = a * cos[i] + b * sin[i];
    dx[2 * i + 1] = -a * sin[i] + b * cos[i];
  }
}

void rope_table(float* cos, float* sin, int64_t T, const float* inv_freq, int64_t half, float attn_factor) {
  for (int64_t t = 0; t < T; ++t) rope_cos_sin(cos + t * half, sin + t * half, t, inv_freq, half, attn_factor);
}

double softmax_cross_entropy_forward(float* probs, float* losses, const float* logits, const int32_t* targets,
                                     int64_t N, int64_t V, ThreadPool* pool) {
  parallel_rows(pool, N, V, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int32_t y = targets[n];
      DSEEK_CHECK(y >= 0 && y < V, "softmax_cross_entropy_forward: target outside the vocabulary");
      losses[n] = float(cross_entropy_row(probs + n * V, logits + n * V, V, y));
    }
  });
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) total += losses[n];
  return total;
}

void softmax_cross_entropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int64_t N,
                                    int64_t V, ThreadPool* pool) {
  parallel_rows(pool, N, V, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* p = probs + n * V;
      float* d = dlogits + n * V;
      for (int64_t v = 0; v < V; ++v) d[v] = dloss * p[v];
      d[targets[n]] -= dloss;
    }
  });
}

}  // namespace dseek
