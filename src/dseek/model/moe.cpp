#include "dseek/model/moe.h"

#include <cstring>

#include "dseek/kernels/matmul.h"
#include "dseek/kernels/softmax.h"

namespace dseek {

void mlp_forward(float* out, const float* x, int64_t T, const MlpWeights& w, Workspace& ws) {
  const int64_t I = w.inter();
  float* gate = ws.ffn_gate.data();  // (T, I)
  float* up = ws.ffn_up.data();      // (T, I)
  matmul(gate, x, w.gate_proj, T, ws.pool, ws.kernel);
  matmul(up, x, w.up_proj, T, ws.pool, ws.kernel);
  swiglu(gate, gate, up, T * I);
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
  for (int64_t i = 0; i < n_rows; ++i) std::memcpy(xs + i * D, x + (rows[i] / k) * D, size_t(D) * sizeof(float));
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
  swiglu(g, g, u, n_rows * I);
  if (w.has_shared()) swiglu(g_sh, g_sh, u_sh, T * I_sh);
  tasks.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n > 0) tasks.push_back({ys + start[e] * D, g + start[e] * I, w.experts[size_t(e)].down_proj, n});
  }
  if (w.has_shared()) tasks.push_back({ys + n_rows * D, g_sh, w.shared_experts.down_proj, T});
  matmul_many(tasks, ws.pool, ws.kernel);

  // out = sum over each token's experts of weight * y (in expert order), then + shared.
  std::memset(out, 0, size_t(T * D) * sizeof(float));
  for (int64_t i = 0; i < n_rows; ++i) {
    const float gw = weights[rows[i]];
    float* o = out + (rows[i] / k) * D;
    const float* y = ys + i * D;
    for (int64_t d = 0; d < D; ++d) o[d] += gw * y[d];
  }
  if (w.has_shared()) {
    const float* y = ys + n_rows * D;
    for (int64_t i = 0; i < T * D; ++i) out[i] += y[i];
  }
}

}  // namespace dseek
