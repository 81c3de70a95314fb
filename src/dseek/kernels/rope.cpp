#include "dseek/kernels/rope.h"

#include <algorithm>
#include <cmath>

namespace dseek {

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

namespace {
// The dimension whose wavelength completes `num_rotations` turns over the original context.
double correction_dim(double num_rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (num_rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}
}  // namespace

void rope_inv_freq(float* inv_freq, const RopeParams& p) {
  const int64_t half = p.dim / 2;
  for (int64_t i = 0; i < half; ++i)
    // float32 like the reference's torch.arange(0, dim, 2, dtype=float32) / dim
    inv_freq[i] = float(1.0 / std::pow(p.theta, double(float(2 * i) / float(p.dim))));
  if (!p.yarn || p.factor <= 1.0) return;
  const double d = double(p.dim), mp = double(p.original_max_position_embeddings);
  double low = std::floor(correction_dim(p.beta_fast, d, p.theta, mp));
  double high = std::ceil(correction_dim(p.beta_slow, d, p.theta, mp));
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const float smooth = float(1.0 - ramp);  // 1: keep the original frequency (extrapolate)
    const float f = inv_freq[i];
    inv_freq[i] = f / float(p.factor) * (1.0f - smooth) + f * smooth;
  }
}

void rope_cos_sin(float* cos, float* sin, int64_t pos, const float* inv_freq, int64_t half, float attn_factor) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];  // float32 product, as torch.outer in the reference
    cos[i] = float(std::cos(double(angle))) * attn_factor;
    sin[i] = float(std::sin(double(angle))) * attn_factor;
  }
}

void rope_apply_interleaved(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * cos[i] - b * sin[i];
    x[2 * i + 1] = a * sin[i] + b * cos[i];
  }
}

void rope_apply_half_split(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = a * sin[i] + b * cos[i];
  }
}

}  // namespace dseek
