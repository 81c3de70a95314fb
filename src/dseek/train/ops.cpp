#include "dseek/train/ops.h"

#include <cmath>
#include <cstring>
#include <string>

#include "dseek/core/error.h"
#include "dseek/kernels/rope.h"
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
  for (int64_t n = 0; n < N; ++n) {
    float* d = dtable + int64_t(tokens[n]) * C;
    const float* g = dout + n * C;
    for (int64_t c = 0; c < C; ++c) d[c] += g[c];
  }
}

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t N, int64_t C, float eps) {
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * C;
    float* on = out + n * C;
    double ss = 0.0;  // as kernels/rmsnorm.cpp: double sum of squares, float scale
    for (int64_t i = 0; i < C; ++i) ss += double(xn[i]) * xn[i];
    const float r = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    rstd[n] = r;
    for (int64_t i = 0; i < C; ++i) on[i] = (xn[i] * r) * weight[i];
  }
}

void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t N, int64_t C) {
  // y_i = x_i r w_i, r = (mean(x²) + eps)^(-1/2), dr/dx_j = -r³ x_j / C:
  // dx_j = r w_j dy_j - (r³ / C) x_j Σ_i dy_i w_i x_i.
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * C;
    const float* g = dout + n * C;
    float* dxn = dx + n * C;
    const float r = rstd[n];
    double dot = 0.0;
    for (int64_t i = 0; i < C; ++i) dot += double(g[i]) * weight[i] * xn[i];
    const float k = float(dot * double(r) * double(r) * double(r) / double(C));
    for (int64_t i = 0; i < C; ++i) {
      dxn[i] += r * weight[i] * g[i] - k * xn[i];
      dweight[i] += g[i] * xn[i] * r;
    }
  }
}

void linear_forward(float* y, const float* x, const float* W, int64_t N, int64_t in, int64_t out, ThreadPool* pool) {
  gemm_nt(y, x, W, N, in, out, pool);
}

void linear_backward(float* dx, float* dW, const float* dy, const float* x, const float* W, int64_t N, int64_t in,
                     int64_t out, ThreadPool* pool) {
  if (dx) gemm_nn_acc(dx, dy, W, N, out, in, pool);
  gemm_tn_acc(dW, dy, x, out, N, in, pool);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.f + std::exp(-g))) * up[i];  // as kernels/softmax.cpp swiglu
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
  // silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))).
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.f / (1.f + std::exp(-g));
    const float d = dout[i];
    dup[i] += d * g * s;
    dgate[i] += d * up[i] * s * (1.f + g * (1.f - s));
  }
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
      const float* l = logits + n * V;
      float* p = probs + n * V;
      float mx = l[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, l[v]);
      const int32_t y = targets[n];
      DSEEK_CHECK(y >= 0 && y < V, "softmax_cross_entropy_forward: target outside the vocabulary");
      const float ly = l[y];  // read before probs (which may alias logits) overwrites it
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        p[v] = std::exp(l[v] - mx);
        sum += p[v];
      }
      // -log p_y = log Σ exp(l - mx) - (l_y - mx), in double from the logit (not from the rounded p_y).
      losses[n] = float(std::log(sum) - double(ly - mx));
      const float inv = float(1.0 / sum);
      for (int64_t v = 0; v < V; ++v) p[v] *= inv;
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
