#include "dseek/model/moe.h"

#include <cstring>

#include "dseek/kernels/matmul.h"
#include "dseek/kernels/softmax.h"

namespace dseek {

namespace {

// fn(begin, end) over [0, n) items of `bytes_each` bytes: across the pool for prefill-sized work,
// inline below ~256 KiB (a decode step's fork/join would cost more than it saves). Chunks start at
// multiples of `grain`.
template <class Fn>
void split(ThreadPool* pool, int64_t n, int64_t bytes_each, const Fn& fn, int64_t grain = 1) {
  if (!pool || pool->size() == 1 || n * bytes_each < (int64_t(1) << 18)) return fn(int64_t(0), n);
  pool->parallel_for(n, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

// SwiGLU of n values across the pool in 16-value steps (the AVX-512 kernel's vectors, so each value
// is computed as it would be in one call).
void swiglu_split(float* out, const float* gate, const float* up, int64_t n, ThreadPool* pool) {
  split(pool, n, 3 * sizeof(float), [&](int64_t b, int64_t e) { swiglu(out + b, gate + b, up + b, e - b); }, 16);
}

}  // namespace

void mlp_forward(float* out, const float* x, int64_t T, const MlpWeights& w, Workspace& ws) {
  const int64_t I = w.inter();
  float* gate = ws.ffn_gate.data();  // (T, I)
  float* up = ws.ffn_up.data();      // (T, I)
  matmul(gate, x, w.gate_proj, T, ws.pool, ws.kernel);
  matmul(up, x, w.up_proj, T, ws.pool, ws.kernel);
  swiglu_split(gate, gate, up, T * I, ws.pool);
  matmul(out, gate, w.down_proj, T, ws.pool, ws.kernel);
}

void moe_forward(float* out, const float* x, int64_t T, const MoeWeights& w, const RouterParams& rp, Workspace& ws) {
  const int64_t E = rp.n_routed_experts, k = rp.num_experts_per_tok, D = w.gate.cols;
  float* logits = ws.router_logits.data();  // (T, E)
  matmul(logits, x, w.gate, T, ws.pool, ws.kernel);
  int32_t* ids = ws.topk_ids.data();        // (T, k)
  float* weights = ws.topk_weights.data();  // (T, k)
  for (int64_t t = 0; t < T; ++t)
    route_token(ids + t * k, weights + t * k, logits + t * E, rp, ws.router_scratch.data());

  // Counting sort of (token, slot) pairs by expert id.
  int32_t* start = ws.expert_count.data();  // (E + 1)
  std::memset(start, 0, size_t(E + 1) * sizeof(int32_t));
  for (int64_t i = 0; i < T * k; ++i) start[ids[i] + 1]++;
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  int32_t* rows = ws.expert_rows.data();  // (T * k): flat index t * k + slot
  int32_t* cursor = ws.expert_cursor.data();  // (E) next free slot of each expert
  std::memcpy(cursor, start, size_t(E) * sizeof(int32_t));
  for (int64_t i = 0; i < T * k; ++i) rows[cursor[ids[i]]++] = int32_t(i);

  // Every routed row gathered, grouped by expert; then the gate and up products of all active
  // experts (and the shared experts) in one pool dispatch, SwiGLU, and all down products in another.
  const int64_t I = w.experts[0].inter(), n_rows = T * k;
  float* xs = ws.expert_x.data();   // (T * k, D)
  float* g = ws.ffn_gate.data();    // (T * k, I), then the shared experts' (T, I_shared)
  float* u = ws.ffn_up.data();
  float* ys = ws.expert_y.data();   // (T * k, D), then the shared experts' (T, D)
  split(ws.pool, n_rows, D * int64_t(sizeof(float)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(xs + i * D, x + (rows[i] / k) * D, size_t(D) * sizeof(float));
  });
  std::vector<MatmulTask>& tasks = ws.moe_tasks;
  const int64_t I_sh = w.has_shared() ? w.shared_experts.inter() : 0;
  float* g_sh = g + n_rows * I;
  float* u_sh = u + n_rows * I;
  tasks.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    tasks.push_back({g + start[e] * I, xs + start[e] * D, w.experts[size_t(e)].gate_proj, n});
    tasks.push_back({u + start[e] * I, xs + start[e] * D, w.experts[size_t(e)].up_proj, n});
  }
  if (w.has_shared()) {
    tasks.push_back({g_sh, x, w.shared_experts.gate_proj, T});
    tasks.push_back({u_sh, x, w.shared_experts.up_proj, T});
  }
  matmul_many(tasks, ws.pool, ws.kernel);
  swiglu_split(g, g, u, n_rows * I, ws.pool);
  if (w.has_shared()) swiglu_split(g_sh, g_sh, u_sh, T * I_sh, ws.pool);
  tasks.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n > 0) tasks.push_back({ys + start[e] * D, g + start[e] * I, w.experts[size_t(e)].down_proj, n});
  }
  if (w.has_shared()) tasks.push_back({ys + n_rows * D, g_sh, w.shared_experts.down_proj, T});
  matmul_many(tasks, ws.pool, ws.kernel);

  // out = sum over each token's experts of weight * y (in expert order), then + shared. Token by
  // token (across the pool for prefill): the rows are grouped by expert, so listing each token's
  // rows as they come gives the same additions in the same order as walking them all.
  int32_t* tok_rows = ws.token_rows.data();  // (T, k)
  int32_t* fill = ws.token_fill.data();      // (T)
  std::memset(fill, 0, size_t(T) * sizeof(int32_t));
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t t = rows[i] / k;
    tok_rows[t * k + fill[t]++] = int32_t(i);
  }
  split(ws.pool, T, D * (k + 2) * int64_t(sizeof(float)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* o = out + t * D;
      std::memset(o, 0, size_t(D) * sizeof(float));
      for (int64_t s = 0; s < k; ++s) {
        const int64_t i = tok_rows[t * k + s];
        const float gw = weights[rows[i]];
        const float* y = ys + i * D;
        for (int64_t d = 0; d < D; ++d) o[d] += gw * y[d];
      }
      if (w.has_shared()) {
        const float* y = ys + (n_rows + t) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += y[d];
      }
    }
  });
}

}  // namespace dseek
