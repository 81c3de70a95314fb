// Rotary position embedding with YaRN frequency scaling (Peng et al. 2023), as DeepSeek uses it.
//
// Two pair layouts exist in DeepSeek models: MLA rotates interleaved pairs (x[2i], x[2i+1]);
// the V3.2 lightning indexer rotates half-split pairs (x[i], x[i + d/2]) (NeoX style).
#pragma once

#include <cstdint>

namespace dseek {

struct RopeParams {
  int64_t dim = 0;       // rotated width (qk_rope_head_dim), even
  double theta = 10000;  // rope_theta
  bool yarn = false;
  double factor = 1.0;   // rope_scaling.factor
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32;
  double beta_slow = 1;
  // Multiplier of cos/sin: HF's yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim).
  float attn_factor = 1.0f;
};

// YaRN's mscale: 0.1 * mscale * ln(scale) + 1 for scale > 1, else 1.
double yarn_get_mscale(double scale, double mscale);

// inv_freq (dim/2): theta^(-2i/dim), blended with inv_freq/factor by YaRN's linear ramp between the
// correction dims of beta_fast and beta_slow rotations.
void rope_inv_freq(float* inv_freq, const RopeParams& p);

// cos, sin (dim/2) for position `pos`, scaled by attn_factor.
void rope_cos_sin(float* cos, float* sin, int64_t pos, const float* inv_freq, int64_t half, float attn_factor);

// Rotates one vector x (2*half) in place.
void rope_apply_interleaved(float* x, const float* cos, const float* sin, int64_t half);
void rope_apply_half_split(float* x, const float* cos, const float* sin, int64_t half);

}  // namespace dseek
