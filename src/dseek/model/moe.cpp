#include "dseek/model/moe.h"

#include <cstring>

#include "dseek/kernels/matmul.h"
#include "dseek/kernels/softmax.h"

namespace dseek {

void mlp_forward(float* out, const float* x, int64_t T, const MlpWeights& w, Workspace& ws) {
  const int64_t I = w.inter();
  float* gate = ws.ffn_gate.data();  // (T, I)
  float* up = ws.ffn_up.data();      // (T, I)
  matmul(gate, x, w.gate_proj, T, ws.pool);
  matmul(up, x, w.up_proj, T, ws.pool);
  swiglu(gate, gate, up, T * I);
  matmul(out, gate, w.down_proj, T, ws.pool);
}

void moe_forward(float* out, const float* x, int64_t T, const MoeWeights& w, const RouterParams& rp, Workspace& ws) {
  const int64_t E = rp.n_routed_experts, k = rp.num_experts_per_tok, D = w.gate.cols;
  float* logits = ws.router_logits.data();  // (T, E)
  matmul(logits, x, w.gate, T, ws.pool);
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

  std::memset(out, 0, size_t(T * D) * sizeof(float));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    const int32_t* r = rows + start[e];
    for (int64_t i = 0; i < n; ++i) std::memcpy(ws.expert_x.data() + i * D, x + (r[i] / k) * D, size_t(D) * sizeof(float));
    mlp_forward(ws.expert_y.data(), ws.expert_x.data(), n, w.experts[size_t(e)], ws);
    for (int64_t i = 0; i < n; ++i) {
      const float g = weights[r[i]];
      float* o = out + (r[i] / k) * D;
      const float* y = ws.expert_y.data() + i * D;
      for (int64_t d = 0; d < D; ++d) o[d] += g * y[d];
    }
  }
  if (w.has_shared()) {
    mlp_forward(ws.expert_y.data(), x, T, w.shared_experts, ws);
    for (int64_t i = 0; i < T * D; ++i) out[i] += ws.expert_y[size_t(i)];
  }
}

}  // namespace dseek
