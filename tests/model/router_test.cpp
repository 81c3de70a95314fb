// DeepSeekMoE routing (route_token) on hand-built logits for each topk_method, plus randomized
// comparison with a double-precision re-implementation written here from the papers / reference code:
//   DeepSeek-V2 (arXiv 2405.04434) sec. 2.1.2 and 2.2.1: softmax gates, device-limited (group) routing
//   with group score = max; DeepSeek-V3 (arXiv 2412.19437) eq. 15-16: sigmoid affinities, bias used
//   only for selection, gates normalised among the selected experts; group score = sum of the top-2
//   biased scores, non-selected groups masked to -inf (inference/model.py Gate.forward).
#include "dseek/model/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/io/config.h"

namespace dseek {
namespace {

// Softmax / sigmoid in float32 then a float32 normalisation and scale: a few ulps.
constexpr double kWeightRelTol = 2e-6;

double sig(double x) { return 1 / (1 + std::exp(-x)); }

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

// Runs route_token with exactly route_scratch_size floats of scratch followed by guard values.
Routed run_router(const std::vector<float>& logits, const RouterParams& p) {
  const int64_t need = route_scratch_size(p);
  std::vector<float> scratch(size_t(need) + 4, 12345.f);
  Routed r;
  r.ids.assign(size_t(p.num_experts_per_tok), -1);
  r.weights.assign(size_t(p.num_experts_per_tok), NAN);
  route_token(r.ids.data(), r.weights.data(), logits.data(), p, scratch.data());
  for (int64_t i = need; i < need + 4; ++i) EXPECT_EQ(scratch[size_t(i)], 12345.f) << "scratch overrun at " << i;
  return r;
}

struct Expected {
  std::vector<int32_t> ids;
  std::vector<double> weights;
};

// Double-precision routing from the definitions (see the file comment).
Expected route_reference(const std::vector<float>& logits, const RouterParams& p) {
  const int64_t E = p.n_routed_experts, k = p.num_experts_per_tok;
  std::vector<double> scores(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  if (p.scoring_func == ScoringFunc::kSoftmax) {
    double mx = -INFINITY, z = 0;
    for (float l : logits) mx = std::max(mx, double(l));
    for (int64_t e = 0; e < E; ++e) z += scores[size_t(e)] = std::exp(double(logits[size_t(e)]) - mx);
    for (auto& s : scores) s /= z;
  } else {
    for (int64_t e = 0; e < E; ++e) scores[size_t(e)] = sig(logits[size_t(e)]);
  }
  for (int64_t e = 0; e < E; ++e)
    choice[size_t(e)] = scores[size_t(e)] + (p.e_score_correction_bias ? double(p.e_score_correction_bias[e]) : 0.0);
  auto order_desc = [](const std::vector<double>& v) {
    std::vector<int32_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[size_t(a)] > v[size_t(b)]; });
    return idx;
  };
  if (p.topk_method != TopKMethod::kGreedy && p.n_group > 1) {
    const int64_t per = E / p.n_group;
    std::vector<double> gscore(size_t(p.n_group));
    for (int64_t g = 0; g < p.n_group; ++g) {
      std::vector<double> members(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(members.begin(), members.end(), std::greater<>());
      gscore[size_t(g)] =
          p.topk_method == TopKMethod::kNoauxTc ? members[0] + (per > 1 ? members[1] : 0.0) : members[0];
    }
    const std::vector<int32_t> gorder = order_desc(gscore);
    for (int64_t r = p.topk_group; r < p.n_group; ++r)
      for (int64_t i = 0; i < per; ++i) choice[size_t(gorder[size_t(r)] * per + i)] = -INFINITY;
  }
  Expected out;
  const std::vector<int32_t> order = order_desc(choice);
  out.ids.assign(order.begin(), order.begin() + k);
  double sum = 0;
  for (int32_t id : out.ids) sum += scores[size_t(id)];
  for (int32_t id : out.ids) {
    double w = scores[size_t(id)];
    if (p.norm_topk_prob && k > 1) w /= sum;
    out.weights.push_back(w * p.routed_scaling_factor);
  }
  return out;
}

void expect_routed(const Routed& got, const std::vector<int32_t>& ids, const std::vector<double>& weights,
                   const std::string& label) {
  EXPECT_EQ(got.ids, ids) << label;
  ASSERT_EQ(got.weights.size(), weights.size()) << label;
  for (size_t i = 0; i < weights.size(); ++i)
    EXPECT_NEAR(got.weights[i], weights[i], kWeightRelTol * std::fabs(weights[i]) + 1e-12) << label << " weight " << i;
}

// (a) DeepSeek-V2-Lite: softmax over all experts, plain top-k, weights = probabilities * scale.
TEST(Router, SoftmaxGreedyNotRenormalised) {
  RouterParams p;
  p.n_routed_experts = 4;
  p.num_experts_per_tok = 2;
  p.topk_method = TopKMethod::kGreedy;
  p.scoring_func = ScoringFunc::kSoftmax;
  p.norm_topk_prob = false;
  p.routed_scaling_factor = 2.0f;
  const std::vector<float> logits = {1, 3, 2, 0};
  const double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.0);
  const Routed r = run_router(logits, p);
  expect_routed(r, {1, 2}, {2 * std::exp(3.0) / z, 2 * std::exp(2.0) / z}, "greedy");
  EXPECT_LT(double(r.weights[0]) + r.weights[1], 2.0 * 0.95) << "weights must not be renormalised";

  // With norm_topk_prob the two selected probabilities are renormalised to sum 1 before scaling.
  p.norm_topk_prob = true;
  const double s = std::exp(3.0) + std::exp(2.0);
  expect_routed(run_router(logits, p), {1, 2}, {2 * std::exp(3.0) / s, 2 * std::exp(2.0) / s}, "greedy norm");

  // k = 1: no renormalisation even with norm_topk_prob (HF: `if self.top_k > 1 and self.norm_topk_prob`).
  p.num_experts_per_tok = 1;
  expect_routed(run_router(logits, p), {1}, {2 * std::exp(3.0) / z}, "greedy k=1");
}

RouterParams v2_groups(int64_t topk_group, int64_t k) {
  RouterParams p;
  p.n_routed_experts = 8;
  p.n_group = 4;  // groups {0,1} {2,3} {4,5} {6,7}
  p.topk_group = topk_group;
  p.num_experts_per_tok = k;
  p.topk_method = TopKMethod::kGroupLimitedGreedy;
  p.scoring_func = ScoringFunc::kSoftmax;
  p.norm_topk_prob = false;
  p.routed_scaling_factor = 3.0f;
  return p;
}

std::vector<double> softmax_of(const std::vector<float>& l) {
  double z = 0;
  for (float v : l) z += std::exp(double(v));
  std::vector<double> p;
  for (float v : l) p.push_back(std::exp(double(v)) / z);
  return p;
}

// (b) DeepSeek-V2 group_limited_greedy, group score = max. With topk_group = 2 the global 2nd-best
// expert always sits in a kept group (its group's max is the highest among the other groups), so the
// dropped-group cases are: the global 3rd-best with topk_group 2, and the 2nd-best with topk_group 1.
TEST(Router, GroupLimitedGreedyDropsGroups) {
  {
    // maxes: G0 5, G1 4, G2 3, G3 0.5 -> keep G0, G1. Global ranking 0 (5), 2 (4), 4 (3, in G2: dropped).
    const std::vector<float> logits = {5, 0, 4, 1, 3, 2.5f, 0.5f, 0.2f};
    const auto pr = softmax_of(logits);
    const Routed r = run_router(logits, v2_groups(2, 3));
    expect_routed(r, {0, 2, 3}, {3 * pr[0], 3 * pr[2], 3 * pr[3]}, "topk_group 2, k 3");
    EXPECT_EQ(std::count(r.ids.begin(), r.ids.end(), 4), 0) << "expert 4 is in a dropped group";
  }
  {
    // topk_group 1: only G0 survives; global 2nd-best (expert 2, 4.5) is dropped.
    const std::vector<float> logits = {5, 1, 4.5f, 0, 0.3f, -1, 2, 2};
    const auto pr = softmax_of(logits);
    expect_routed(run_router(logits, v2_groups(1, 2)), {0, 1}, {3 * pr[0], 3 * pr[1]}, "topk_group 1, k 2");
  }
  {
    // Group score is the max, not the sum: G1 = {4, 4} has the larger sum of probabilities
    // (2 e^4 > e^4.5) but the smaller max, so G0 and G2 win.
    const std::vector<float> logits = {5, -10, 4, 4, 4.5f, -10, -10, -10};
    const auto pr = softmax_of(logits);
    expect_routed(run_router(logits, v2_groups(2, 2)), {0, 4}, {3 * pr[0], 3 * pr[4]}, "max not sum");
  }
}

RouterParams v3_params(int64_t E, int64_t n_group, int64_t topk_group, int64_t k, const float* bias) {
  RouterParams p;
  p.n_routed_experts = E;
  p.n_group = n_group;
  p.topk_group = topk_group;
  p.num_experts_per_tok = k;
  p.topk_method = TopKMethod::kNoauxTc;
  p.scoring_func = ScoringFunc::kSigmoid;
  p.norm_topk_prob = true;
  p.routed_scaling_factor = 2.5f;
  p.e_score_correction_bias = bias;
  return p;
}

// (c) noaux_tc: the bias moves experts 2 and 3 (group G1) into the selection, but their weights come
// from the unbiased sigmoid scores, normalised among the selected, times 2.5.
TEST(Router, NoauxTcBiasSelectsButDoesNotWeigh) {
  const std::vector<float> logits = {2.0f, -2.0f, -1.0f, -1.5f, 1.5f, -3.0f, 0.3f, 0.2f};
  const float bias[8] = {0, 0, 0.45f, 0.5f, 0, 0, 0, 0};
  // biased: .881 .119 | .719 .682 | .818 .047 | .574 .550
  // group top-2 sums: G0 1.000, G1 1.401, G2 .865, G3 1.124 -> keep G1, G3 (max would keep G0, G2)
  const double s2 = sig(-1.0), s3 = sig(-1.5);
  const Routed r = run_router(logits, v3_params(8, 4, 2, 2, bias));
  expect_routed(r, {2, 3}, {2.5 * s2 / (s2 + s3), 2.5 * s3 / (s2 + s3)}, "with bias");
  EXPECT_NEAR(double(r.weights[0]) + r.weights[1], 2.5, 1e-5);

  // The same logits without the bias: sums G0 1.000, G1 .451, G2 .865, G3 1.124 -> G3, G0 -> experts 0, 6.
  const double s0 = sig(2.0), s6 = sig(0.3);
  expect_routed(run_router(logits, v3_params(8, 4, 2, 2, nullptr)), {0, 6},
                {2.5 * s0 / (s0 + s6), 2.5 * s6 / (s0 + s6)}, "without bias");
}

// logit(s): the logit whose sigmoid is s.
float logit_of(double s) { return float(std::log(s / (1 - s))); }

// (c) group score = sum of the TOP-2 biased scores: max, top-2 sum and whole-group sum all disagree.
TEST(Router, NoauxTcGroupScoreIsTopTwoSum) {
  const double s[16] = {0.95, 0.10, 0.10, 0.10,   // G0: max .95, top-2 1.05, all 1.25
                        0.60, 0.60, 0.05, 0.05,   // G1: max .60, top-2 1.20, all 1.30
                        0.50, 0.50, 0.50, 0.50,   // G2: max .50, top-2 1.00, all 2.00
                        0.90, 0.20, 0.01, 0.01};  // G3: max .90, top-2 1.10, all 1.12
  std::vector<float> logits;
  for (double v : s) logits.push_back(logit_of(v));
  // top-2 sum keeps G1, G3 -> experts 12 (.90), 4 (.60; 5 ties and loses on index).
  // (max would keep G0, G3 -> 0, 12; whole-group sum would keep G2, G1 -> 4, 5.)
  const double a = sig(logits[12]), b = sig(logits[4]);
  expect_routed(run_router(logits, v3_params(16, 4, 2, 2, nullptr)), {12, 4}, {2.5 * a / (a + b), 2.5 * b / (a + b)},
                "top-2 sum");
}

// (d) n_group 1: no group stage; (e) ids in descending SELECTION-score order (biased), which here differs
// from the order of the unbiased scores that give the weights.
TEST(Router, NoauxTcSingleGroupOrderBySelectionScore) {
  const std::vector<float> logits = {2, 1, 0, -1};
  const float bias[4] = {-1, 0, 0.5f, 0};
  // biased: -.119, .731, 1.0, .269 -> 2 then 1, although sigmoid(1) > sigmoid(0).
  const double s1 = sig(1.0), s2 = sig(0.0);
  RouterParams p = v3_params(4, 1, 1, 2, bias);
  expect_routed(run_router(logits, p), {2, 1}, {2.5 * s2 / (s1 + s2), 2.5 * s1 / (s1 + s2)}, "n_group 1");
  // Without the bias the order follows the scores.
  p.e_score_correction_bias = nullptr;
  const double s0 = sig(2.0);
  expect_routed(run_router(logits, p), {0, 1}, {2.5 * s0 / (s0 + s1), 2.5 * s1 / (s0 + s1)}, "n_group 1 no bias");
}

// Kept groups whose biased scores are all negative: non-selected groups are masked to -inf (not 0, as
// a masked_fill(0.0) would do), so the chosen experts still come from the kept groups.
TEST(Router, NoauxTcNegativeBiasedScoresStayInKeptGroups) {
  const std::vector<float> logits = {1, 0.5f, -1, -2, 0, 0, -3, -3};
  const float bias[8] = {-2, -2, -2, -2, -2, -2, -2, -2};
  // biased: -1.27 -1.38 | -1.73 -1.88 | -1.5 -1.5 | -1.95 -1.95 -> sums G0 -2.65, G2 -3.0 kept
  const Routed r = run_router(logits, v3_params(8, 4, 2, 3, bias));
  const double s0 = sig(1.0), s1 = sig(0.5), s4 = sig(0.0);
  const double z = s0 + s1 + s4;
  expect_routed(r, {0, 1, 4}, {2.5 * s0 / z, 2.5 * s1 / z, 2.5 * s4 / z}, "negative biased");
}

TEST(Router, RandomAgainstDoubleReference) {
  const uint32_t seed = 4242;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::uniform_real_distribution<float> bdist(-0.3f, 0.3f);
  struct Case {
    TopKMethod method;
    ScoringFunc scoring;
    int64_t E, n_group, topk_group, k;
    bool norm, bias;
  };
  const Case cases[] = {
      {TopKMethod::kGreedy, ScoringFunc::kSoftmax, 64, 1, 1, 6, false, false},               // V2-Lite
      {TopKMethod::kGroupLimitedGreedy, ScoringFunc::kSoftmax, 160, 8, 3, 6, false, false},  // V2
      {TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, 256, 8, 4, 8, true, true},               // V3
      {TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, 16, 4, 2, 4, true, true},                // golden tiny
      {TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, 12, 1, 1, 3, true, true},
      {TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, 12, 12, 5, 3, true, true},  // one expert per group
      {TopKMethod::kGroupLimitedGreedy, ScoringFunc::kSoftmax, 12, 3, 2, 8, true, false},
  };
  for (const Case& c : cases) {
    std::vector<float> bias(size_t(c.E));
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> logits(size_t(c.E));
      for (auto& l : logits) l = normal(rng);
      for (auto& b : bias) b = bdist(rng);
      RouterParams p;
      p.n_routed_experts = c.E;
      p.num_experts_per_tok = c.k;
      p.n_group = c.n_group;
      p.topk_group = c.topk_group;
      p.topk_method = c.method;
      p.scoring_func = c.scoring;
      p.norm_topk_prob = c.norm;
      p.routed_scaling_factor = 2.5f;
      p.e_score_correction_bias = c.bias ? bias.data() : nullptr;
      const Expected want = route_reference(logits, p);
      std::ostringstream label;
      label << "seed " << seed << " method " << topk_method_name(c.method) << " E " << c.E << " n_group " << c.n_group
            << " trial " << trial;
      expect_routed(run_router(logits, p), want.ids, want.weights, label.str());
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(Router, FromConfig) {
  const ModelConfig v3 = load_config(test::golden_model_dir("v3"));
  const float bias[16] = {};
  const RouterParams p = RouterParams::from_config(v3, bias);
  EXPECT_EQ(p.n_routed_experts, 16);
  EXPECT_EQ(p.num_experts_per_tok, 4);
  EXPECT_EQ(p.n_group, 4);
  EXPECT_EQ(p.topk_group, 2);
  EXPECT_EQ(p.topk_method, TopKMethod::kNoauxTc);
  EXPECT_EQ(p.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(p.norm_topk_prob);
  EXPECT_EQ(p.routed_scaling_factor, 2.5f);
  EXPECT_EQ(p.e_score_correction_bias, bias);

  const RouterParams q = RouterParams::from_config(load_config(test::golden_model_dir("v2")), nullptr);
  EXPECT_EQ(q.topk_method, TopKMethod::kGroupLimitedGreedy);
  EXPECT_EQ(q.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(q.norm_topk_prob);
  EXPECT_EQ(q.routed_scaling_factor, 4.0f);
  EXPECT_EQ(q.e_score_correction_bias, nullptr);
}

}  // namespace
}  // namespace dseek
