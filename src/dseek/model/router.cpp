#include "dseek/model/router.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "dseek/core/error.h"
#include "dseek/kernels/softmax.h"
#include "dseek/kernels/topk.h"

namespace dseek {

RouterParams RouterParams::from_config(const ModelConfig& c, const float* bias) {
  RouterParams p;
  p.n_routed_experts = c.n_routed_experts;
  p.num_experts_per_tok = c.num_experts_per_tok;
  p.n_group = c.n_group;
  p.topk_group = c.topk_group;
  p.topk_method = c.topk_method;
  p.scoring_func = c.scoring_func;
  p.norm_topk_prob = c.norm_topk_prob;
  p.routed_scaling_factor = float(c.routed_scaling_factor);
  p.e_score_correction_bias = bias;
  return p;
}

int64_t route_scratch_size(const RouterParams& p) { return 2 * p.n_routed_experts + 2 * p.n_group + 2; }

void route_token(int32_t* ids, float* weights, const float* logits, const RouterParams& p, float* scratch) {
  const int64_t E = p.n_routed_experts, k = p.num_experts_per_tok;
  float* scores = scratch;          // (E) routing probabilities, what the combine weights use
  float* choice = scratch + E;      // (E) selection scores: + bias, groups masked
  float* group_scores = scratch + 2 * E;  // (n_group)
  auto* group_ids = reinterpret_cast<int32_t*>(scratch + 2 * E + p.n_group);  // (n_group)
  auto* top2 = reinterpret_cast<int32_t*>(scratch + 2 * E + 2 * p.n_group);  // (2)

  std::memcpy(scores, logits, size_t(E) * sizeof(float));
  if (p.scoring_func == ScoringFunc::kSoftmax)
    softmax_inplace(scores, E);
  else
    sigmoid_inplace(scores, E);
  for (int64_t e = 0; e < E; ++e)
    choice[e] = scores[e] + (p.e_score_correction_bias ? p.e_score_correction_bias[e] : 0.f);

  if (p.topk_method != TopKMethod::kGreedy && p.n_group > 1) {
    const int64_t per = E / p.n_group;
    for (int64_t g = 0; g < p.n_group; ++g) {
      const float* gs = choice + g * per;
      if (p.topk_method == TopKMethod::kNoauxTc) {
        // Sum of the two best biased scores: a group is chosen for its strongest pair of experts.
        const int64_t m = std::min<int64_t>(2, per);
        topk(top2, gs, per, m);
        float s = 0.f;
        for (int64_t i = 0; i < m; ++i) s += gs[top2[i]];
        group_scores[g] = s;
      } else {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < per; ++i) mx = std::max(mx, gs[i]);
        group_scores[g] = mx;
      }
    }
    topk(group_ids, group_scores, p.n_group, p.topk_group);
    for (int64_t g = 0; g < p.n_group; ++g) {
      bool keep = false;
      for (int64_t i = 0; i < p.topk_group; ++i) keep |= group_ids[i] == g;
      if (!keep)
        for (int64_t i = 0; i < per; ++i) choice[g * per + i] = -std::numeric_limits<float>::infinity();
    }
  }

  topk(ids, choice, E, k);
  float sum = 0.f;
  for (int64_t i = 0; i < k; ++i) {
    weights[i] = scores[ids[i]];
    sum += weights[i];
  }
  if (p.norm_topk_prob && k > 1)
    for (int64_t i = 0; i < k; ++i) weights[i] /= (sum + 1e-20f);
  for (int64_t i = 0; i < k; ++i) weights[i] *= p.routed_scaling_factor;
}

}  // namespace dseek
