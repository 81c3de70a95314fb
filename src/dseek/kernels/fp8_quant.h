// Activation quantization to FP8-E4M3 with one scale per block (DeepSeek's act_quant), and the
// Hadamard rotation the V3.2 indexer applies before it.
#pragma once

#include <cstdint>

namespace dseek {

// For each block of `block` values of x (n): scale = max(amax, 1e-4) / 448 (rounded up to a power
// of two when ue8m0), q = E4M3(x / scale) (ties to even). q (n) holds the E4M3 values as floats,
// scales (ceil(n / block)). q may alias x.
void act_quant_e4m3(float* q, float* scales, const float* x, int64_t n, int64_t block, bool ue8m0);

// x (n) <- x · H_n / sqrt(n), H_n the Sylvester-order Hadamard matrix; n a power of two.
void hadamard_rotate(float* x, int64_t n);

// LayerNorm over n values: out = (x - mean) / sqrt(var + eps) * weight + bias. out may alias x.
void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t n, float eps);

}  // namespace dseek
