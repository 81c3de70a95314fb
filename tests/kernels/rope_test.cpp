// RoPE and YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language
// Models"): frequency tables recomputed here in double from the paper's formulas, pair layouts checked
// on hand cases, and rotation invariants.
#include "dseek/kernels/rope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace dseek {
namespace {

constexpr double kPi = 3.14159265358979323846;
// inv_freq is float32: a few float roundings (pow, division, the ramp blend).
constexpr double kInvFreqRelTol = 1e-6;
// cos/sin of a float32 angle times attn_factor, stored as float32.
constexpr double kTrigAbsTol = 1e-6;

RopeParams deepseek_v3_yarn() {
  RopeParams p;
  p.dim = 64;
  p.theta = 10000;
  p.yarn = true;
  p.factor = 40;
  p.original_max_position_embeddings = 4096;
  p.beta_fast = 32;
  p.beta_slow = 1;
  return p;
}

// The dimension index whose wavelength makes `rotations` turns over the original context:
// d * ln(L / (rotations * 2π)) / (2 ln θ).
double correction_dim(double rotations, double d, double theta, double L) {
  return d * std::log(L / (rotations * 2 * kPi)) / (2 * std::log(theta));
}

TEST(Rope, InvFreqWithoutYarnIsThetaPower) {
  for (int64_t dim : {2, 4, 6, 8, 64, 128}) {
    for (double theta : {10000.0, 500000.0}) {
      RopeParams p;
      p.dim = dim;
      p.theta = theta;
      std::vector<float> f(size_t(dim / 2));
      rope_inv_freq(f.data(), p);
      for (int64_t i = 0; i < dim / 2; ++i) {
        const double want = std::pow(theta, -2.0 * double(i) / double(dim));
        EXPECT_NEAR(f[size_t(i)], want, kInvFreqRelTol * want) << "dim " << dim << " theta " << theta << " i " << i;
      }
    }
  }
  // YaRN with factor 1 changes nothing.
  RopeParams p = deepseek_v3_yarn();
  p.factor = 1.0;
  std::vector<float> f(32);
  rope_inv_freq(f.data(), p);
  for (int64_t i = 0; i < 32; ++i)
    EXPECT_NEAR(f[size_t(i)], std::pow(10000.0, -2.0 * double(i) / 64), kInvFreqRelTol * f[size_t(i)]) << i;
}

TEST(Rope, YarnInvFreqMatchesPaperFormulas) {
  const RopeParams p = deepseek_v3_yarn();
  const double d = 64, theta = 10000, factor = 40, L = 4096;
  double low = std::floor(correction_dim(32, d, theta, L));  // beta_fast
  double high = std::ceil(correction_dim(1, d, theta, L));   // beta_slow
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  // Hand values: 64 ln(4096 / 64π) / (2 ln 10^4) = 10.47 -> 10; 64 ln(4096 / 2π) / (2 ln 10^4) = 22.5 -> 23.
  ASSERT_EQ(low, 10);
  ASSERT_EQ(high, 23);
  std::vector<float> got(32);
  rope_inv_freq(got.data(), p);
  for (int i = 0; i < 32; ++i) {
    const double f = std::pow(theta, -2.0 * i / d);
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double smooth = 1 - ramp;  // 1: extrapolate (keep f), 0: interpolate (f / factor)
    const double want = f / factor * (1 - smooth) + f * smooth;
    EXPECT_NEAR(got[size_t(i)], want, kInvFreqRelTol * want) << "i " << i << " ramp " << ramp;
  }
  // High-frequency dims (i <= low) are unchanged; low-frequency ones (i >= high) are divided by 40.
  for (int i = 0; i <= 10; ++i) {
    const double f = std::pow(theta, -2.0 * i / d);
    EXPECT_NEAR(got[size_t(i)], f, kInvFreqRelTol * f) << i;
  }
  for (int i = 23; i < 32; ++i) {
    const double f = std::pow(theta, -2.0 * i / d) / 40;
    EXPECT_NEAR(got[size_t(i)], f, kInvFreqRelTol * f) << i;
  }
  // In between, strictly between the two.
  for (int i = 11; i < 23; ++i) {
    const double f = std::pow(theta, -2.0 * i / d);
    EXPECT_LT(got[size_t(i)], f) << i;
    EXPECT_GT(got[size_t(i)], f / 40) << i;
  }
}

TEST(Rope, YarnSmallRopeDimClampsCorrectionRange) {
  // qk_rope_head_dim 8 (the golden tiny models): low = floor(1.31) = 1, high = ceil(2.81) = 3 (< d-1 = 7).
  RopeParams p = deepseek_v3_yarn();
  p.dim = 8;
  const double d = 8;
  const double low = std::max(std::floor(correction_dim(32, d, 10000, 4096)), 0.0);
  const double high = std::min(std::ceil(correction_dim(1, d, 10000, 4096)), d - 1);
  ASSERT_EQ(low, 1);
  ASSERT_EQ(high, 3);
  float got[4];
  rope_inv_freq(got, p);
  for (int i = 0; i < 4; ++i) {
    const double f = std::pow(10000.0, -2.0 * i / d);
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double want = f / 40 * ramp + f * (1 - ramp);
    EXPECT_NEAR(got[i], want, kInvFreqRelTol * want) << i;
  }
}

TEST(Rope, YarnMscale) {
  EXPECT_NEAR(yarn_get_mscale(40, 1.0), 0.1 * std::log(40.0) + 1, 1e-15);
  EXPECT_NEAR(yarn_get_mscale(40, 0.707), 0.1 * 0.707 * std::log(40.0) + 1, 1e-15);
  EXPECT_EQ(yarn_get_mscale(1.0, 1.0), 1.0);
  EXPECT_EQ(yarn_get_mscale(0.5, 1.0), 1.0);
  EXPECT_EQ(yarn_get_mscale(40, 0.0), 1.0);
}

TEST(Rope, CosSinTable) {
  const float inv_freq[] = {1.0f, 0.01f, 0.25f};
  float c[3], s[3];
  rope_cos_sin(c, s, 0, inv_freq, 3, 1.0f);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c[i], 1.0f);
    EXPECT_EQ(s[i], 0.0f);
  }
  rope_cos_sin(c, s, 7, inv_freq, 3, 1.5f);
  for (int i = 0; i < 3; ++i) {
    const double angle = 7.0 * double(inv_freq[i]);
    EXPECT_NEAR(c[i], 1.5 * std::cos(angle), kTrigAbsTol) << i;
    EXPECT_NEAR(s[i], 1.5 * std::sin(angle), kTrigAbsTol) << i;
  }
}

// dim 4, theta 10^4: inv_freq = [1, 0.01]. At pos 1 the angles are 1 and 0.01 rad.
TEST(Rope, InterleavedAndHalfSplitRotateTheirPairs) {
  RopeParams p;
  p.dim = 4;
  float inv_freq[2], c[2], s[2];
  rope_inv_freq(inv_freq, p);
  ASSERT_NEAR(inv_freq[0], 1.0, 1e-7);
  ASSERT_NEAR(inv_freq[1], 0.01, 1e-9);
  rope_cos_sin(c, s, 1, inv_freq, 2, 1.0f);
  const double c1 = std::cos(1.0), s1 = std::sin(1.0), c2 = std::cos(0.01), s2 = std::sin(0.01);

  // Interleaved pairs (x0, x1), (x2, x3): (1, 0) by 1 rad, (0, 1) by 0.01 rad.
  float a[4] = {1, 0, 0, 1};
  rope_apply_interleaved(a, c, s, 2);
  EXPECT_NEAR(a[0], c1, kTrigAbsTol);
  EXPECT_NEAR(a[1], s1, kTrigAbsTol);
  EXPECT_NEAR(a[2], -s2, kTrigAbsTol);
  EXPECT_NEAR(a[3], c2, kTrigAbsTol);

  // Half-split pairs (x0, x2), (x1, x3): (1, 0) by 1 rad, (0, 1) by 0.01 rad.
  float b[4] = {1, 0, 0, 1};
  rope_apply_half_split(b, c, s, 2);
  EXPECT_NEAR(b[0], c1, kTrigAbsTol);
  EXPECT_NEAR(b[2], s1, kTrigAbsTol);
  EXPECT_NEAR(b[1], -s2, kTrigAbsTol);
  EXPECT_NEAR(b[3], c2, kTrigAbsTol);

  // A general vector, against the 2x2 rotation written out per layout.
  const double x[4] = {0.5, -2.0, 3.0, 0.25};
  float ai[4], ah[4];
  for (int i = 0; i < 4; ++i) ai[i] = ah[i] = float(x[i]);
  rope_apply_interleaved(ai, c, s, 2);
  rope_apply_half_split(ah, c, s, 2);
  EXPECT_NEAR(ai[0], x[0] * c1 - x[1] * s1, kTrigAbsTol * 4);
  EXPECT_NEAR(ai[1], x[0] * s1 + x[1] * c1, kTrigAbsTol * 4);
  EXPECT_NEAR(ai[2], x[2] * c2 - x[3] * s2, kTrigAbsTol * 4);
  EXPECT_NEAR(ai[3], x[2] * s2 + x[3] * c2, kTrigAbsTol * 4);
  EXPECT_NEAR(ah[0], x[0] * c1 - x[2] * s1, kTrigAbsTol * 4);
  EXPECT_NEAR(ah[2], x[0] * s1 + x[2] * c1, kTrigAbsTol * 4);
  EXPECT_NEAR(ah[1], x[1] * c2 - x[3] * s2, kTrigAbsTol * 4);
  EXPECT_NEAR(ah[3], x[1] * s2 + x[3] * c2, kTrigAbsTol * 4);
}

TEST(Rope, PositionZeroIsIdentity) {
  const RopeParams p = deepseek_v3_yarn();
  std::vector<float> f(32), c(32), s(32);
  rope_inv_freq(f.data(), p);
  rope_cos_sin(c.data(), s.data(), 0, f.data(), 32, 1.0f);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-3.f, 3.f);
  std::vector<float> x(64);
  for (auto& v : x) v = uni(rng);
  std::vector<float> a = x, b = x;
  rope_apply_interleaved(a.data(), c.data(), s.data(), 32);
  rope_apply_half_split(b.data(), c.data(), s.data(), 32);
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(a[size_t(i)], x[size_t(i)]) << i;
    EXPECT_EQ(b[size_t(i)], x[size_t(i)]) << i;
  }
}

TEST(Rope, RotationPreservesPairNormsAndRelativePosition) {
  const uint32_t seed = 11;
  const RopeParams p = deepseek_v3_yarn();
  std::vector<float> f(32), c(32), s(32);
  rope_inv_freq(f.data(), p);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-3.f, 3.f);
  for (int64_t pos : {1, 2, 17, 4095, 4096, 100000, 163839}) {
    rope_cos_sin(c.data(), s.data(), pos, f.data(), 32, 1.0f);
    std::vector<float> x(64);
    for (auto& v : x) v = uni(rng);
    std::vector<float> a = x, b = x;
    rope_apply_interleaved(a.data(), c.data(), s.data(), 32);
    rope_apply_half_split(b.data(), c.data(), s.data(), 32);
    for (int i = 0; i < 32; ++i) {
      const double n0 = std::hypot(double(x[size_t(2 * i)]), double(x[size_t(2 * i + 1)]));
      const double n1 = std::hypot(double(a[size_t(2 * i)]), double(a[size_t(2 * i + 1)]));
      EXPECT_NEAR(n1, n0, 1e-5 * (1 + n0)) << "interleaved pair " << i << " pos " << pos << " seed " << seed;
      const double h0 = std::hypot(double(x[size_t(i)]), double(x[size_t(i + 32)]));
      const double h1 = std::hypot(double(b[size_t(i)]), double(b[size_t(i + 32)]));
      EXPECT_NEAR(h1, h0, 1e-5 * (1 + h0)) << "half-split pair " << i << " pos " << pos << " seed " << seed;
    }
  }
  // The point of RoPE: <R(m) q, R(n) k> depends on n - m only.
  std::vector<float> q(64), k(64);
  for (auto& v : q) v = uni(rng);
  for (auto& v : k) v = uni(rng);
  auto score = [&](int64_t m, int64_t n) {
    std::vector<float> qm = q, kn = k;
    rope_cos_sin(c.data(), s.data(), m, f.data(), 32, 1.0f);
    rope_apply_interleaved(qm.data(), c.data(), s.data(), 32);
    rope_cos_sin(c.data(), s.data(), n, f.data(), 32, 1.0f);
    rope_apply_interleaved(kn.data(), c.data(), s.data(), 32);
    double d = 0;
    for (int i = 0; i < 64; ++i) d += double(qm[size_t(i)]) * kn[size_t(i)];
    return d;
  };
  const double base = score(0, 5);
  for (int64_t m : {1, 3, 10, 37}) EXPECT_NEAR(score(m, m + 5), base, 1e-3) << "m " << m;
}

TEST(Rope, AttnFactorScalesTheRotation) {
  const float f[] = {0.3f, 0.02f};
  float c[2], s[2];
  const float m = float(yarn_get_mscale(40, 1.0));
  rope_cos_sin(c, s, 3, f, 2, m);
  float x[4] = {1, 2, 3, 4};
  rope_apply_interleaved(x, c, s, 2);
  EXPECT_NEAR(std::hypot(x[0], x[1]), m * std::hypot(1.0, 2.0), 1e-5);
  EXPECT_NEAR(std::hypot(x[2], x[3]), m * std::hypot(3.0, 4.0), 1e-5);
}

}  // namespace
}  // namespace dseek
