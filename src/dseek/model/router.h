// DeepSeekMoE routing: which routed experts a token uses and with what combine weights.
//
// Three methods, as the HF configs name them (topk_method):
//   greedy                plain top-k of the scores (V2-Lite)
//   group_limited_greedy  experts split into n_group groups; keep the topk_group groups with the
//                         highest max score, then top-k inside them (V2)
//   noaux_tc              sigmoid scores + e_score_correction_bias used for selection only; group
//                         score = sum of the top-2 biased scores (V3, auxiliary-loss-free balancing)
#pragma once

#include <cstdint>

#include "dseek/io/config.h"

namespace dseek {

struct RouterParams {
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopKMethod topk_method = TopKMethod::kGreedy;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  const float* e_score_correction_bias = nullptr;  // (n_routed_experts), noaux_tc only

  static RouterParams from_config(const ModelConfig& c, const float* bias);
};

// From one token's router logits (n_routed_experts) to ids (k) in descending selection-score order
// and their combine weights (k): scores taken WITHOUT the bias, normalised when norm_topk_prob,
// times routed_scaling_factor. `scratch` holds route_scratch_size(p) floats.
void route_token(int32_t* ids, float* weights, const float* logits, const RouterParams& p, float* scratch);

// Floats of scratch route_token needs.
int64_t route_scratch_size(const RouterParams& p);

}  // namespace dseek
