// SwiGLU MLP and DeepSeekMoE forward/backward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/kernels/softmax.h"
#include "dseek/kernels/vec.h"
#include "dseek/train/layers.h"
#include "dseek/train/ops.h"

namespace dseek {

void plan_mlp_acts(MlpActs& a, FloatArena& arena, int64_t N, int64_t I) {
  a.gate = arena.take(N * I);
  a.up = arena.take(N * I);
  a.act = arena.take(N * I);
}

void mlp_forward(float* out, const MlpActs& a, const float* x, const MlpTensors& w, int64_t N, int64_t D,
                 ThreadPool* pool) {
  const int64_t I = w.inter;
  linear_forward(a.gate, x, w.gate_proj, N, D, I, pool, w.matmul);
  linear_forward(a.up, x, w.up_proj, N, D, I, pool, w.matmul);
  swiglu_forward(a.act, a.gate, a.up, N * I, pool);
  linear_forward(out, a.act, w.down_proj, N, I, D, pool, w.matmul);
}

namespace {

// mlp_backward with its two (N, I) temporaries given: dact (becomes dgate) and dup.
// accumulate_dx false: dx is overwritten (its first product does not add).
void mlp_backward_into(float* dx, const MlpTensors& dw, const float* dout, const float* x, const MlpActs& a,
                       const MlpTensors& w, int64_t N, int64_t D, float* dact, float* dup, ThreadPool* pool,
                       bool accumulate_dx) {
  const int64_t I = w.inter;
  linear_backward(dact, dw.down_proj, dout, a.act, w.down_proj, N, I, D, pool, w.matmul, false);
  swiglu_backward_overwrite(dact, dup, a.gate, a.up, N * I, pool);
  linear_backward(dx, dw.gate_proj, dact, x, w.gate_proj, N, D, I, pool, w.matmul, accumulate_dx);
  linear_backward(dx, dw.up_proj, dup, x, w.up_proj, N, D, I, pool, w.matmul);
}

// Runs fn(e, inner_pool) for every routed expert e with rows (start (E + 1): row ranges). An expert
// with at least 1/(2 · threads) of the rows (routing collapsed onto it) runs alone with the pool
// inside its GEMMs; the others run whole on one thread each, assigned largest first to the least
// loaded thread, all in one fork/join: per-expert GEMMs are small (~N·k/E rows), and splitting each
// over the threads cost a fork/join per product and left threads idle at every one.
void for_each_expert(const int32_t* start, int64_t E, ThreadPool* pool,
                     const std::function<void(int64_t, ThreadPool*)>& fn) {
  const int64_t T = pool ? pool->size() : 1, total = start[E];
  std::vector<int64_t> rest;  // E at most
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    if (T == 1 || n * 2 * T >= total)
      fn(e, pool);
    else
      rest.push_back(e);
  }
  if (rest.empty()) return;
  std::stable_sort(rest.begin(), rest.end(), [&](int64_t a, int64_t b) {
    return start[a + 1] - start[a] > start[b + 1] - start[b];
  });
  std::vector<int64_t> owner(rest.size()), busy(size_t(T), 0);
  for (size_t i = 0; i < rest.size(); ++i) {
    const size_t t = size_t(std::min_element(busy.begin(), busy.end()) - busy.begin());
    owner[i] = int64_t(t);
    busy[t] += start[rest[i] + 1] - start[rest[i]];
  }
  pool->parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (size_t i = 0; i < rest.size(); ++i)
        if (owner[i] == t) fn(rest[i], nullptr);
  });
}

}  // namespace

void mlp_backward(float* dx, const MlpTensors& dw, const float* dout, const float* x, const MlpActs& a,
                  const MlpTensors& w, int64_t N, int64_t D, FloatArena& scratch, ThreadPool* pool,
                  bool accumulate_dx) {
  const int64_t I = w.inter;
  const int64_t mark = scratch.mark();
  float* dact = scratch.take(N * I);  // (N, I), becomes dgate
  float* dup = scratch.take(N * I);   // (N, I)
  mlp_backward_into(dx, dw, dout, x, a, w, N, D, dact, dup, pool, accumulate_dx);
  scratch.rewind(mark);
}

void plan_moe_acts(MoeActs& a, FloatArena& arena, IntArena& ints, const MoeDims& d, int64_t N, int64_t I,
                   int64_t I_shared) {
  const int64_t E = d.router.n_routed_experts, k = d.router.num_experts_per_tok;
  a.logits = arena.take(N * E);
  a.scores = arena.take(N * E);
  a.ids = ints.take(N * k);
  a.weights = arena.take(N * k);
  a.expert_start = ints.take(E + 1);
  a.rows = ints.take(N * k);
  a.pos = ints.take(N * k);
  a.xg = arena.take(N * k * d.D);
  plan_mlp_acts(a.expert, arena, N * k, I);
  a.expert_y = arena.take(N * k * d.D);
  if (I_shared > 0) plan_mlp_acts(a.shared, arena, N, I_shared);
}

namespace {

// The sub-struct of expert e's activations: rows [start, start + n) of the grouped (N * k, I) buffers.
MlpActs expert_rows(const MlpActs& a, int64_t start, int64_t I) {
  return MlpActs{a.gate + start * I, a.up + start * I, a.act + start * I};
}

// Sequence-wise balance loss of sequence b (V3 report eq. 17-20):
//   L = α Σ_i f_i P_i,  f_i = E / (k T) Σ_t 1[i ∈ topk(t)],  P_i = 1/T Σ_t s'_{i,t},  s' = s / Σ_j s_j.
// f is a count (no gradient); fills f (E).
void balance_counts(double* f, const int32_t* ids, int64_t T, int64_t E, int64_t k) {
  for (int64_t e = 0; e < E; ++e) f[e] = 0.0;
  for (int64_t i = 0; i < T * k; ++i) f[ids[i]] += 1.0;
  for (int64_t e = 0; e < E; ++e) f[e] *= double(E) / double(k * T);
}

}  // namespace

double moe_forward(float* out, const MoeActs& a, const float* x, const MoeTensors& w, const MoeDims& d, int64_t B,
                   int64_t T, int64_t* load, FloatArena& scratch, ThreadPool* pool) {
  const RouterParams& rp = d.router;
  const int64_t E = rp.n_routed_experts, k = rp.num_experts_per_tok, D = d.D, N = B * T;
  const int64_t mark = scratch.mark();
  linear_forward(a.logits, x, w.gate, N, D, E, pool);
  // Tokens are routed independently: one route scratch per thread, each thread a contiguous range.
  const int64_t rs = route_scratch_size(rp), threads = pool ? pool->size() : 1;
  float* route_scratch = scratch.take(rs * threads);
  auto route = [&](float* rscratch, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* l = a.logits + t * E;
      route_token(a.ids + t * k, a.weights + t * k, l, rp, rscratch);
      float* s = a.scores + t * E;  // the unbiased scores route_token used for the weights
      std::memcpy(s, l, size_t(E) * sizeof(float));
      if (rp.scoring_func == ScoringFunc::kSoftmax)
        softmax_inplace(s, E);
      else
        sigmoid_inplace(s, E);
    }
  };
  if (threads > 1 && N * E >= 4096)
    pool->parallel_for_tid(N, [&](int tid, int64_t t0, int64_t t1) { route(route_scratch + tid * rs, t0, t1); });
  else
    route(route_scratch, 0, N);

  // Counting sort of (token, slot) pairs by expert.
  int32_t* start = a.expert_start;
  std::memset(start, 0, size_t(E + 1) * sizeof(int32_t));
  for (int64_t i = 0; i < N * k; ++i) start[a.ids[i] + 1]++;
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  for (int64_t e = 0; e < E; ++e) load[e] += start[e + 1] - start[e];
  {
    std::vector<int32_t> cursor(start, start + E);  // E ints, once per layer call
    for (int64_t i = 0; i < N * k; ++i) a.rows[cursor[size_t(a.ids[i])]++] = int32_t(i);
  }
  for (int64_t i = 0; i < N * k; ++i) a.pos[a.rows[i]] = int32_t(i);

  float* xg = a.xg;  // (N * k, D) tokens gathered by expert
  parallel_rows(pool, N * k, D, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(xg + i * D, x + (a.rows[i] / k) * D, size_t(D) * sizeof(float));
  });
  for_each_expert(start, E, pool, [&](int64_t e, ThreadPool* p) {
    const int64_t s0 = start[e], n = start[e + 1] - start[e];
    const MlpTensors& we = w.experts[size_t(e)];
    mlp_forward(a.expert_y + s0 * D, expert_rows(a.expert, s0, we.inter), xg + s0 * D, we, n, D, p);
  });
  // Combine per token (slots in order), so tokens can run in parallel.
  parallel_rows(pool, N, k * D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* o = out + t * D;
      for (int64_t j = 0; j < k; ++j) {
        const float g = a.weights[t * k + j];
        const float* y = a.expert_y + int64_t(a.pos[t * k + j]) * D;
        if (j == 0)
          scale_vector(o, g, y, D);
        else
          vec_axpy(o, g, y, D);
      }
    }
  });
  if (w.shared_experts.inter > 0) {
    float* ys = scratch.take(N * D);  // (N, D)
    mlp_forward(ys, a.shared, x, w.shared_experts, N, D, pool);
    add_vectors(out, out, ys, N * D, pool);
  }

  double balance = 0.0;
  if (d.balance_alpha > 0.f) {
    std::vector<double> f(static_cast<size_t>(E)), P(static_cast<size_t>(E));
    for (int64_t b = 0; b < B; ++b) {
      balance_counts(f.data(), a.ids + b * T * k, T, E, k);
      std::fill(P.begin(), P.end(), 0.0);
      for (int64_t t = 0; t < T; ++t) {
        const float* s = a.scores + (b * T + t) * E;
        double sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += s[e];
        for (int64_t e = 0; e < E; ++e) P[size_t(e)] += s[e] / sum / double(T);
      }
      for (int64_t e = 0; e < E; ++e) balance += f[size_t(e)] * P[size_t(e)];
    }
    balance *= double(d.balance_alpha) / double(B);
  }
  scratch.rewind(mark);
  return balance;
}

void moe_backward(float* dx, const MoeTensors& dw, const float* dout, const float* x, const MoeActs& a,
                  const MoeTensors& w, const MoeDims& d, int64_t B, int64_t T, float dbalance, FloatArena& scratch,
                  ThreadPool* pool, bool accumulate_dx) {
  const RouterParams& rp = d.router;
  const int64_t E = rp.n_routed_experts, k = rp.num_experts_per_tok, D = d.D, N = B * T;
  const int64_t mark = scratch.mark();
  const bool shared = w.shared_experts.inter > 0;
  if (shared)
    mlp_backward(dx, dw.shared_experts, dout, x, a.shared, w.shared_experts, N, D, scratch, pool, accumulate_dx);
  const bool dx_fresh = !accumulate_dx && !shared;  // the combine below writes dx's first contribution

  // Routed experts: out_t = Σ_slot g_slot y_slot, so dy = g dout_t and dg = dout_t · y.
  float* dweights = scratch.take(N * k);  // (N, k)
  const float* xg = a.xg;                 // (N * k, D) gathered inputs (the forward's)
  float* dyg = scratch.take(N * k * D);   // (N * k, D) gathered output gradients
  float* dxg = scratch.take(N * k * D);   // (N * k, D) gathered input gradients
  parallel_rows(pool, N * k, 3 * D, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int32_t r = a.rows[i];
      const float* g_out = dout + (r / k) * D;
      const float* y = a.expert_y + i * D;
      const float g = a.weights[r];
      scale_vector(dyg + i * D, g, g_out, D);
      dweights[r] = vec_dot(g_out, y, D);
    }
  });
  {
    // Each expert's temporaries are its own rows of (N * k, I) buffers, so experts can run at once.
    const int64_t I = w.experts.empty() ? 0 : w.experts[0].inter;
    float* dact = scratch.take(N * k * I);  // (N * k, I)
    float* dup = scratch.take(N * k * I);   // (N * k, I)
    for_each_expert(a.expert_start, E, pool, [&](int64_t e, ThreadPool* p) {
      const int64_t s0 = a.expert_start[e], n = a.expert_start[e + 1] - s0;
      const MlpTensors& we = w.experts[size_t(e)];
      mlp_backward_into(dxg + s0 * D, dw.experts[size_t(e)], dyg + s0 * D, xg + s0 * D,
                        expert_rows(a.expert, s0, we.inter), we, n, D, dact + s0 * I, dup + s0 * I, p, false);
    });
  }
  parallel_rows(pool, N, k * D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* o = dx + t * D;
      for (int64_t j = 0; j < k; ++j) {
        const float* g = dxg + int64_t(a.pos[t * k + j]) * D;
        if (j == 0 && dx_fresh)
          std::memcpy(o, g, size_t(D) * sizeof(float));
        else
          vec_axpy(o, 1.f, g, D);  // exact adds
      }
    }
  });

  // Router: weights → scores → logits. The selection (top-k on scores + bias) is piecewise constant.
  float* dlogits = scratch.take(N * E);  // (N, E), dscores first
  std::memset(dlogits, 0, size_t(N * E) * sizeof(float));
  const float rsf = rp.routed_scaling_factor;
  for (int64_t t = 0; t < N; ++t) {
    const int32_t* id = a.ids + t * k;
    const float* s = a.scores + t * E;
    const float* dg = dweights + t * k;
    float* ds = dlogits + t * E;
    if (rp.norm_topk_prob && k > 1) {
      // w_i = rsf s_i / S, S = Σ_sel s_j:  ds_i = rsf / S (dw_i - Σ_j dw_j s_j / S).
      double S = 1e-20, dot = 0.0;
      for (int64_t i = 0; i < k; ++i) S += s[id[i]];
      for (int64_t i = 0; i < k; ++i) dot += double(dg[i]) * s[id[i]];
      for (int64_t i = 0; i < k; ++i) ds[id[i]] += float(double(rsf) / S * (double(dg[i]) - dot / S));
    } else {
      for (int64_t i = 0; i < k; ++i) ds[id[i]] += rsf * dg[i];
    }
  }
  if (d.balance_alpha > 0.f && dbalance != 0.f) {
    // dL/ds'_{i,t} = α/B f_i / T; s' = s / Σ s  ⇒  ds_j = (ds'_j - Σ_i ds'_i s'_i) / Σ s.
    std::vector<double> f(static_cast<size_t>(E));
    for (int64_t b = 0; b < B; ++b) {
      balance_counts(f.data(), a.ids + b * T * k, T, E, k);
      const double c = double(dbalance) * double(d.balance_alpha) / double(B) / double(T);
      for (int64_t t = 0; t < T; ++t) {
        const float* s = a.scores + (b * T + t) * E;
        float* ds = dlogits + (b * T + t) * E;
        double S = 0, dot = 0;
        for (int64_t e = 0; e < E; ++e) S += s[e];
        for (int64_t e = 0; e < E; ++e) dot += c * f[size_t(e)] * s[e] / S;
        for (int64_t e = 0; e < E; ++e) ds[e] += float((c * f[size_t(e)] - dot) / S);
      }
    }
  }
  for (int64_t t = 0; t < N; ++t) {
    const float* s = a.scores + t * E;
    float* dl = dlogits + t * E;
    if (rp.scoring_func == ScoringFunc::kSoftmax) {
      double dot = 0;
      for (int64_t e = 0; e < E; ++e) dot += double(dl[e]) * s[e];
      for (int64_t e = 0; e < E; ++e) dl[e] = s[e] * float(dl[e] - dot);
    } else {
      for (int64_t e = 0; e < E; ++e) dl[e] *= s[e] * (1.f - s[e]);
    }
  }
  linear_backward(dx, dw.gate, dlogits, x, w.gate, N, D, E, pool);
  scratch.rewind(mark);
}

}  // namespace dseek
