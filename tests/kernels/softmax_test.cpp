// softmax_inplace, sigmoid_inplace and swiglu against double-precision formulas and edge cases.
#include "dseek/kernels/softmax.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace dseek {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// exp of a float32 argument and one float32 multiply by 1/sum: a few ulps of the result.
constexpr double kActRelTol = 2e-6;
// softmax's argument x - max is rounded to float32 first: exp(a (1 + d)) = exp(a) (1 + a d), so the
// relative error grows by |x - max| * 2^-24.
constexpr double kFloatEps = 5.96e-8;

std::vector<double> softmax_double(const std::vector<float>& x) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max(mx, double(v));
  std::vector<double> e(x.size());
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += e[i] = std::exp(double(x[i]) - mx);
  for (auto& v : e) v /= sum;
  return e;
}

TEST(Softmax, HandCaseAndSumsToOne) {
  float x[] = {1, 2, 3};
  softmax_inplace(x, 3);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(x[0], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(x[1], std::exp(2.0) / z, 1e-7);
  EXPECT_NEAR(x[2], std::exp(3.0) / z, 1e-7);
  EXPECT_NEAR(double(x[0]) + x[1] + x[2], 1.0, 1e-6);
  float one[] = {-5};
  softmax_inplace(one, 1);
  EXPECT_EQ(one[0], 1.f);
}

TEST(Softmax, RandomRowsAgainstDouble) {
  const uint32_t seed = 99;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-20.f, 20.f);
  for (int64_t n : {1, 2, 7, 16, 255, 256, 257, 4096}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = uni(rng);
    const std::vector<double> want = softmax_double(x);
    const std::vector<float> x0 = x;
    const double mx = *std::max_element(x.begin(), x.end());
    softmax_inplace(x.data(), n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += x[size_t(i)];
      const double arg = std::fabs(double(x0[size_t(i)]) - mx);
      ASSERT_NEAR(x[size_t(i)], want[size_t(i)], (kActRelTol + arg * kFloatEps) * want[size_t(i)] + 1e-30)
          << "seed " << seed << " n " << n << " i " << i;
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << "n " << n;
  }
}

TEST(Softmax, MinusInfinityEntriesBecomeZero) {
  float x[] = {0, -kInf, 0, -kInf};
  softmax_inplace(x, 4);
  EXPECT_EQ(x[0], 0.5f);
  EXPECT_EQ(x[1], 0.f);
  EXPECT_EQ(x[2], 0.5f);
  EXPECT_EQ(x[3], 0.f);
}

TEST(Softmax, AllMinusInfinityRowIsZeros) {
  float x[] = {-kInf, -kInf, -kInf};
  softmax_inplace(x, 3);
  for (float v : x) {
    EXPECT_FALSE(std::isnan(v));
    EXPECT_EQ(v, 0.f);
  }
  softmax_inplace(x, 0);  // n = 0 touches nothing
}

TEST(Softmax, LargeValuesDoNotOverflow) {
  float x[] = {1000, 999, 1000, -1000};
  softmax_inplace(x, 4);
  const double z = 2 + std::exp(-1.0);
  EXPECT_NEAR(x[0], 1 / z, 1e-7);
  EXPECT_NEAR(x[1], std::exp(-1.0) / z, 1e-7);
  EXPECT_NEAR(x[2], 1 / z, 1e-7);
  EXPECT_EQ(x[3], 0.f);
  float big[] = {3e38f, 3e38f};
  softmax_inplace(big, 2);
  EXPECT_EQ(big[0], 0.5f);
  EXPECT_EQ(big[1], 0.5f);
}

// attention_softmax (the AVX-512 kernel where the CPU has it) and its scalar version against a double
// softmax of scale * s over the allowed entries: lengths around the vector width, masked entries,
// everything masked, and large scores (the max is subtracted first).
TEST(AttentionSoftmax, AgainstDoubleWithMasks) {
  std::mt19937 rng(77);
  std::normal_distribution<float> nd(0.f, 4.f);
  for (int64_t n : {1, 15, 16, 17, 100, 4097})
    for (int mask_mode : {0, 1, 2})
      for (float shift : {0.f, 500.f}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = nd(rng) + shift;
        std::vector<uint8_t> allowed(static_cast<size_t>(n), 1);
        if (mask_mode == 1)
          for (int64_t j = 0; j < n; ++j) allowed[size_t(j)] = uint8_t(j % 4 != 2);
        if (mask_mode == 2) std::fill(allowed.begin(), allowed.end(), 0);
        const uint8_t* al = mask_mode ? allowed.data() : nullptr;
        const float scale = 0.125f;
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < n; ++j)
          if (!al || al[j]) mx = std::max(mx, double(x[size_t(j)]) * scale);
        for (int64_t j = 0; j < n; ++j)
          if (!al || al[j]) sum += std::exp(double(x[size_t(j)]) * scale - mx);
        for (auto fn : {&attention_softmax, &attention_softmax_ref}) {
          std::vector<float> s = x;
          fn(s.data(), n, scale, al);
          for (int64_t j = 0; j < n; ++j) {
            const double want = (al && !al[j]) || mask_mode == 2 ? 0.0 : std::exp(double(x[size_t(j)]) * scale - mx) / sum;
            ASSERT_NEAR(s[size_t(j)], want, 1e-6 * want + 1e-12)
                << (fn == &attention_softmax ? "attention_softmax" : "attention_softmax_ref") << " n " << n
                << " mask " << mask_mode << " shift " << shift << " j " << j;
          }
        }
      }
}

TEST(Sigmoid, HandValuesAndExtremes) {
  float x[] = {0, 1, -1, 1000, -1000, 88.8f, -80.f, -kInf, kInf};
  sigmoid_inplace(x, 9);
  EXPECT_EQ(x[0], 0.5f);
  EXPECT_NEAR(x[1], 1 / (1 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(x[2], 1 / (1 + std::exp(1.0)), 1e-7);
  EXPECT_EQ(x[3], 1.f);
  EXPECT_EQ(x[4], 0.f);
  EXPECT_EQ(x[5], 1.f);
  EXPECT_NEAR(x[6], std::exp(-80.0), kActRelTol * std::exp(-80.0));
  EXPECT_EQ(x[7], 0.f);
  EXPECT_EQ(x[8], 1.f);
  for (float v : x) EXPECT_FALSE(std::isnan(v));
}

TEST(Sigmoid, RandomAgainstDouble) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uni(-30.f, 30.f);
  std::vector<float> x(1000);
  for (auto& v : x) v = uni(rng);
  std::vector<float> y = x;
  sigmoid_inplace(y.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = 1 / (1 + std::exp(-double(x[i])));
    ASSERT_NEAR(y[i], want, kActRelTol * want) << "seed 5 x " << x[i];
  }
}

// The dispatched version (AVX-512 here) and the scalar one.
using SwigluFn = void (*)(float*, const float*, const float*, int64_t);
const SwigluFn kSwiglus[] = {swiglu, swiglu_ref};

TEST(Swiglu, HandValues) {
  for (SwigluFn swiglu : kSwiglus) {
    // silu(g) * u = g / (1 + e^-g) * u
    const float gate[] = {0, 1, -1, 2, -1000, 1000, 20};
    const float up[] = {5, 2, 3, -1, 4, 3, 0.5f};
    float out[7];
    swiglu(out, gate, up, 7);
    EXPECT_EQ(out[0], 0.f);
    EXPECT_NEAR(out[1], 2 / (1 + std::exp(-1.0)), 1e-6);   // 1.4621172
    EXPECT_NEAR(out[2], -3 / (1 + std::exp(1.0)), 1e-6);   // -0.8068243
    EXPECT_NEAR(out[3], -2 / (1 + std::exp(-2.0)), 1e-6);  // -1.7615942
    EXPECT_EQ(out[4], 0.f);                                // -1000 * e^-1000 * 4 underflows to -0
    EXPECT_FALSE(std::isnan(out[4]));
    EXPECT_EQ(out[5], 3000.f);
    EXPECT_NEAR(out[6], 20 / (1 + std::exp(-20.0)) * 0.5, 1e-5);
    // In place on the gate (out aliases gate) is fine element-wise.
    float g[] = {1, 2}, u[] = {1, 1};
    swiglu(g, g, u, 2);
    EXPECT_NEAR(g[0], 1 / (1 + std::exp(-1.0)), 1e-6);
    EXPECT_NEAR(g[1], 2 / (1 + std::exp(-2.0)), 1e-6);
    // Past the exp's range: -0, not NaN; lengths off the vector width.
    std::vector<float> big(19, -90.f), one(19, 1.f), o(19, 1.f);
    swiglu(o.data(), big.data(), one.data(), 19);
    for (float v : o) EXPECT_EQ(v, 0.f);
  }
}

TEST(Swiglu, RandomAgainstDouble) {
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> uni(-10.f, 10.f);
  std::vector<float> g(777), u(777), out(777);
  for (auto& v : g) v = uni(rng);
  for (auto& v : u) v = uni(rng);
  for (SwigluFn swiglu : kSwiglus) {
    swiglu(out.data(), g.data(), u.data(), 777);
    for (size_t i = 0; i < g.size(); ++i) {
      const double want = double(g[i]) / (1 + std::exp(-double(g[i]))) * u[i];
      ASSERT_NEAR(out[i], want, kActRelTol * std::fabs(want) + 1e-30) << "seed 6 i " << i;
    }
  }
}

}  // namespace
}  // namespace dseek

namespace dseek {
namespace {

// exp_shifted (the sampler's softmax weights) against exp in double of the float32 argument
// (x - shift) * scale, as the reference forms it; exact 1 at the shift, exact 0 at -inf and below
// the -87 exponent floor; an infinite scale (denormal temperature) keeps the argmax at 1.
TEST(ExpShifted, AgainstDoubleAndEdgeValues) {
  std::mt19937 rng(20261207);
  std::normal_distribution<float> nd(0.f, 4.f);
  for (int64_t n : {1, 15, 16, 17, 1000, 129280}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = nd(rng);
    const float shift = *std::max_element(x.begin(), x.end());
    x[0] = -kInf;
    if (n > 3) x[2] = shift - 200.f;  // exponent -250: 0
    for (float scale : {1.25f, 0.5f}) {
      std::vector<float> got(x.size(), NAN), ref(x.size(), NAN);
      exp_shifted(got.data(), x.data(), n, shift, scale);
      exp_shifted_ref(ref.data(), x.data(), n, shift, scale);
      for (int64_t i = 0; i < n; ++i) {
        const float d = x[size_t(i)] - shift, e = d == 0.f ? 0.f : d * scale;
        const double want = e < -87.f ? 0.0 : std::exp(double(e));
        ASSERT_NEAR(got[size_t(i)], want, kActRelTol * want) << "n " << n << " i " << i << " x " << x[size_t(i)];
        ASSERT_NEAR(ref[size_t(i)], want, kActRelTol * want) << "ref, n " << n << " i " << i;
        if (x[size_t(i)] == shift) {
          ASSERT_EQ(got[size_t(i)], 1.f);
        }
        if (e < -87.f) {
          ASSERT_EQ(got[size_t(i)], 0.f);
        }
      }
    }
  }
  const std::vector<float> x = {1.f, 3.f, -kInf, 2.9f};
  std::vector<float> got(4);
  exp_shifted(got.data(), x.data(), 4, 3.f, kInf);  // temperature 1/inf: greedy weights
  EXPECT_EQ(got, (std::vector<float>{0.f, 1.f, 0.f, 0.f}));
}

}  // namespace
}  // namespace dseek
