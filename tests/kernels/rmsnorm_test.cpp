// RMSNorm against hand values and a double-precision recomputation.
#include "dseek/kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace dseek {
namespace {

// One float32 multiply by the (float) inverse rms, one by the weight: a few ulps.
constexpr double kRmsNormRelTol = 1e-6;

void expect_rmsnorm_close(const std::vector<float>& out, const std::vector<float>& x, const std::vector<float>& w,
                          int64_t B, int64_t n, float eps, uint32_t seed) {
  for (int64_t b = 0; b < B; ++b) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[size_t(b * n + i)]) * x[size_t(b * n + i)];
    const double r = 1 / std::sqrt(ss / double(n) + double(eps));
    for (int64_t i = 0; i < n; ++i) {
      const double want = double(x[size_t(b * n + i)]) * r * w[size_t(i)];
      ASSERT_NEAR(out[size_t(b * n + i)], want, kRmsNormRelTol * std::fabs(want) + 1e-30)
          << "seed " << seed << " B " << B << " n " << n << " at (" << b << ", " << i << ")";
    }
  }
}

TEST(RmsNorm, HandCase) {
  // mean(x^2) = (9 + 16) / 2 = 12.5; out = x / sqrt(12.5) * w
  const float x[] = {3, 4}, w[] = {1, 2};
  float out[2];
  rmsnorm(out, x, w, 1, 2, 0.f);
  EXPECT_NEAR(out[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[1], 8 / std::sqrt(12.5), 1e-6);
  rmsnorm_ref(out, x, w, 1, 2, 0.f);
  EXPECT_NEAR(out[0], 0.848528137423857, 1e-6);
  EXPECT_NEAR(out[1], 2.262741699796952, 1e-6);
  // eps is added to the mean of squares, inside the root: 1 / sqrt(12.5 + 3.5) = 1/4
  rmsnorm(out, x, w, 1, 2, 3.5f);
  EXPECT_FLOAT_EQ(out[0], 0.75f);
  EXPECT_FLOAT_EQ(out[1], 2.0f);
}

TEST(RmsNorm, InPlaceAliasing) {
  std::vector<float> x = {1, -2, 3, 0.5f, 7, -8}, w = {0.5f, 1, 2};
  std::vector<float> separate(6);
  rmsnorm(separate.data(), x.data(), w.data(), 2, 3, 1e-6f);
  std::vector<float> inplace = x;
  rmsnorm(inplace.data(), inplace.data(), w.data(), 2, 3, 1e-6f);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(inplace[i], separate[i]) << i;
  expect_rmsnorm_close(inplace, x, w, 2, 3, 1e-6f, 0);
}

TEST(RmsNorm, RowsAreIndependent) {
  // Row 1 is 100x row 0: normalised it is the same, and each row equals the row normalised alone.
  std::vector<float> x = {1, 2, 3, 4, 100, 200, 300, 400, 0, 0, 0, 1e-3f}, w = {1, 1, 1, 1};
  std::vector<float> out(12);
  rmsnorm(out.data(), x.data(), w.data(), 3, 4, 1e-6f);
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<float> row(x.begin() + b * 4, x.begin() + b * 4 + 4), alone(4);
    rmsnorm(alone.data(), row.data(), w.data(), 1, 4, 1e-6f);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[size_t(b * 4 + i)], alone[size_t(i)]) << b << " " << i;
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[size_t(i)], out[size_t(4 + i)], 1e-5) << i;
  expect_rmsnorm_close(out, x, w, 3, 4, 1e-6f, 0);
}

TEST(RmsNorm, ZeroVectorWithEpsGivesZerosNotNan) {
  std::vector<float> x(7168, 0.f), w(7168, 1.5f), out(7168, NAN);
  rmsnorm(out.data(), x.data(), w.data(), 1, 7168, 1e-6f);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], 0.f) << i;
  // A tiny vector: eps dominates, so the output is x / sqrt(eps), not x / rms(x).
  std::vector<float> t = {1e-5f, -1e-5f}, tw = {1, 1}, to(2);
  rmsnorm(to.data(), t.data(), tw.data(), 1, 2, 1e-6f);
  const double r = 1 / std::sqrt(1e-10 + double(1e-6f));
  EXPECT_NEAR(to[0], 1e-5 * r, 1e-6 * 1e-5 * r);
  EXPECT_LT(std::fabs(to[0]), 0.011f);  // without eps it would be 1
}

TEST(RmsNorm, RandomSizesAgainstDouble) {
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-4.f, 4.f);
  for (int64_t n : {1, 7, 8, 9, 63, 64, 65, 512, 7168})
    for (int64_t B : {1, 3}) {
      // +1 offsets: misaligned rows
      std::vector<float> xb(size_t(B * n) + 1), wb(size_t(n) + 1);
      for (auto& v : xb) v = uni(rng);
      for (auto& v : wb) v = uni(rng);
      std::vector<float> x(xb.begin() + 1, xb.end()), w(wb.begin() + 1, wb.end());
      std::vector<float> ob(size_t(B * n) + 1), oref(size_t(B * n));
      rmsnorm(ob.data() + 1, xb.data() + 1, wb.data() + 1, B, n, 1e-6f);
      std::vector<float> out(ob.begin() + 1, ob.end());
      expect_rmsnorm_close(out, x, w, B, n, 1e-6f, seed);
      rmsnorm_ref(oref.data(), x.data(), w.data(), B, n, 1e-6f);
      expect_rmsnorm_close(oref, x, w, B, n, 1e-6f, seed);
    }
}

}  // namespace
}  // namespace dseek
