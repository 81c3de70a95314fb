// RMSNorm: out = x / sqrt(mean(x²) + eps) * weight, row by row.
#pragma once

#include <cstdint>

namespace dseek {

// out (B, n) = rmsnorm(x (B, n)) * weight (n). out may alias x.
void rmsnorm(float* out, const float* x, const float* weight, int64_t B, int64_t n, float eps);
void rmsnorm_ref(float* out, const float* x, const float* weight, int64_t B, int64_t n, float eps);

}  // namespace dseek
