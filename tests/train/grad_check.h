// Finite-difference gradient checks for tests/train.
//
// The forwards are float32 (the code under test); the loss is accumulated in double and the central
// difference (L(x + h) - L(x - h)) / (x+h - (x-h)) uses the float-rounded step actually taken. With
// h = 1e-3 and O(1) losses, float32 rounding of the forward contributes ~1e-7 / 1e-3 = 1e-4 relative
// noise and the truncation error is O(h²) = 1e-6, hence the default tolerance
// |num - ana| <= 1e-2 * max(|num|, |ana|) + atol.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace dseek::test {

inline std::vector<float> randn(int64_t n, uint64_t seed, float std = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, std);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

// Σ out[i] * r[i] in double: a random linear functional of an output, whose gradient is r.
inline double project(const float* out, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += double(out[i]) * r[i];
  return s;
}

struct GradCheck {
  double eps = 1e-3;
  double rtol = 1e-2;
  double atol = 1e-4;
  // Also allow this fraction of the tensor's largest |grad| as absolute error: float32 accumulation
  // error of both sides scales with the tensor's gradient, not with each (possibly tiny) entry.
  double atol_of_max = 0.0;
};

// Checks grad (n) against central differences of loss() in x (n) at `samples` indices (all when
// samples <= 0 or >= n). Returns the worst relative error seen; fails the test on any mismatch.
inline double check_gradient(const std::string& label, float* x, const float* grad, int64_t n,
                             const std::function<double()>& loss, const GradCheck& gc = {}, int64_t samples = 0,
                             uint64_t seed = 1) {
  std::vector<int64_t> idx;
  if (samples <= 0 || samples >= n) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int64_t> u(0, n - 1);
    for (int64_t s = 0; s < samples; ++s) idx.push_back(u(g));
  }
  double gmax = 0;
  for (int64_t i = 0; i < n; ++i) gmax = std::max(gmax, double(std::fabs(grad[i])));
  const double atol = std::max(gc.atol, gc.atol_of_max * gmax);
  double worst = 0;
  int failures = 0;
  for (int64_t i : idx) {
    const float x0 = x[i];
    const float xp = float(x0 + gc.eps), xm = float(x0 - gc.eps);
    x[i] = xp;
    const double lp = loss();
    x[i] = xm;
    const double lm = loss();
    x[i] = x0;
    const double num = (lp - lm) / (double(xp) - double(xm));
    const double ana = grad[i];
    const double err = std::fabs(num - ana);
    const double scale = std::max(std::fabs(num), std::fabs(ana));
    if (scale > 0) worst = std::max(worst, err / std::max(scale, atol / gc.rtol));
    if (err > gc.rtol * scale + atol && failures++ < 5)
      ADD_FAILURE() << label << "[" << i << "]: analytic " << ana << ", numeric " << num << ", |diff| " << err;
  }
  return worst;
}

}  // namespace dseek::test
