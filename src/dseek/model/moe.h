// Feed-forward blocks: the dense SwiGLU MLP and DeepSeekMoE (routed + shared experts).
#pragma once

#include <cstdint>

#include "dseek/model/router.h"
#include "dseek/model/weights.h"
#include "dseek/model/workspace.h"

namespace dseek {

// out (T, hidden) = down_proj(silu(gate_proj(x)) * up_proj(x)) for x (T, hidden).
void mlp_forward(float* out, const float* x, int64_t T, const MlpWeights& w, Workspace& ws);

// out (T, hidden) = Σ_k weight_k · expert_{id_k}(x) + shared_experts(x).
// Tokens are grouped by expert so each selected expert's weights are read once per call; the
// products of all active experts (and the shared experts) run as two pool dispatches (matmul_many).
// The routing decisions are left in ws.topk_ids / ws.topk_weights (T, num_experts_per_tok).
void moe_forward(float* out, const float* x, int64_t T, const MoeWeights& w, const RouterParams& rp, Workspace& ws);

}  // namespace dseek
