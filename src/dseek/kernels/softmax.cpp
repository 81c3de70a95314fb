#include "dseek/kernels/softmax.h"

#include <cmath>
#include <limits>

#include "dseek/kernels/cpu_features.h"

namespace dseek {

void softmax_inplace(float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) x[i] = 0.f;
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void attention_softmax_ref(float* s, int64_t n, float scale, const uint8_t* allowed) {
  for (int64_t j = 0; j < n; ++j)
    s[j] = allowed && !allowed[j] ? -std::numeric_limits<float>::infinity() : s[j] * scale;
  softmax_inplace(s, n);
}

void attention_softmax(float* s, int64_t n, float scale, const uint8_t* allowed) {
  if (cpu_features().avx512_fma()) return attention_softmax_avx512(s, n, scale, allowed);
  attention_softmax_ref(s, n, scale, allowed);
}

void exp_shifted_ref(float* out, const float* x, int64_t n, float shift, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - shift;
    const float e = d == 0.f ? 0.f : d * scale;
    out[i] = e < -87.f ? 0.f : std::exp(e);  // NaN only from a NaN x
  }
}

void exp_shifted(float* out, const float* x, int64_t n, float shift, float scale) {
  if (cpu_features().avx512_fma()) return exp_shifted_avx512(out, x, n, shift, scale);
  exp_shifted_ref(out, x, n, shift, scale);
}

void sigmoid_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 1.f / (1.f + std::exp(-x[i]));
}

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
  if (cpu_features().avx512_fma()) return swiglu_avx512(out, gate, up, n);
  swiglu_ref(out, gate, up, n);
}

void swiglu_ref(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.f + std::exp(-g))) * up[i];
  }
}

}  // namespace dseek
