#include "dseek/kernels/fp8_quant.h"

#include <algorithm>
#include <cmath>

#include "dseek/core/dtype.h"
#include "dseek/core/error.h"

namespace dseek {

void act_quant_e4m3(float* q, float* scales, const float* x, int64_t n, int64_t block, bool ue8m0) {
  for (int64_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
    const int64_t b1 = std::min(n, b0 + block);
    float amax = 1e-4f;  // floor: an all-zero block must not divide by zero
    for (int64_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    float scale = amax / 448.0f;
    if (ue8m0) scale = std::exp2(std::ceil(std::log2(scale)));
    scales[bi] = scale;
    for (int64_t i = b0; i < b1; ++i) q[i] = e4m3_round(x[i] / scale);
  }
}

void hadamard_rotate(float* x, int64_t n) {
  DSEEK_CHECK(n > 0 && (n & (n - 1)) == 0, "hadamard_rotate: n must be a power of two");
  // Fast Walsh-Hadamard transform (butterflies in Sylvester order), then the 1/sqrt(n) norm.
  for (int64_t len = 1; len < n; len <<= 1)
    for (int64_t i = 0; i < n; i += 2 * len)
      for (int64_t j = i; j < i + len; ++j) {
        const float a = x[j], b = x[j + len];
        x[j] = a + b;
        x[j + len] = a - b;
      }
  const float s = float(1.0 / std::sqrt(double(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t n, float eps) {
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= double(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= double(n);
  const float r = float(1.0 / std::sqrt(var + double(eps)));
  const float m = float(mean);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - m) * r * weight[i] + bias[i];
}

}  // namespace dseek
