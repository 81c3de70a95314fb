// The acceptance rule of speculative sampling must leave the output distributed exactly as the
// target p, for any draft distribution q: checked by sampling (chi-square bound) and greedy cases.
#include "dseek/runtime/speculative.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/runtime/sampler.h"

namespace dseek {
namespace {

TEST(Speculative, OutputIsDistributedAsTheTarget) {
  const std::vector<float> p = {0.5f, 0.2f, 0.15f, 0.1f, 0.05f, 0.0f};
  const std::vector<float> q = {0.1f, 0.4f, 0.1f, 0.0f, 0.2f, 0.2f};  // a poor draft, with mass where p has none
  Xoshiro256 rng(99);
  const int n = 200000;
  std::vector<double> count(p.size(), 0.0);
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t d = draw_from(q, rng.uniform());
    const DraftVerdict v = verify_draft(p, q, d, rng.uniform(), rng.uniform());
    count[size_t(v.token)] += 1;
    accepted += v.accepted;
  }
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " has target probability 0";
      continue;
    }
    const double e = p[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  // 4 degrees of freedom: P(chi2 > 25) < 1e-4; a wrong rule (e.g. always accepting) gives thousands.
  EXPECT_LT(chi2, 25.0);
  // Acceptance rate is sum_i min(p_i, q_i) = 0.1 + 0.2 + 0.1 + 0 + 0.05 + 0 = 0.45.
  EXPECT_NEAR(double(accepted) / n, 0.45, 0.01);
}

TEST(Speculative, GreedyAcceptsExactlyTheArgmax) {
  const std::vector<float> p = {0, 0, 1, 0}, q_same = {0, 0, 1, 0}, q_other = {1, 0, 0, 0};
  EXPECT_TRUE(verify_draft(p, q_same, 2, 0.999, 0.5).accepted);
  const DraftVerdict v = verify_draft(p, q_other, 0, 0.0, 0.999);
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 2);
}

TEST(Speculative, RejectsBadArguments) {
  const std::vector<float> p = {1, 0}, q = {1, 0, 0};
  EXPECT_THROW(verify_draft(p, q, 0, 0.5, 0.5), Error);
  EXPECT_THROW(verify_draft(p, p, 2, 0.5, 0.5), Error);
  EXPECT_THROW(draw_from(std::vector<float>{0, 0}, 0.5), Error);
}

}  // namespace
}  // namespace dseek
