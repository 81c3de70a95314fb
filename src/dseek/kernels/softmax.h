// Softmax, sigmoid and SwiGLU activations on float32 rows.
#pragma once

#include <cstdint>

namespace dseek {

// x (n) <- softmax(x), max-subtracted; -inf entries become 0. All -inf rows become all 0.
void softmax_inplace(float* x, int64_t n);
// x (n) <- 1 / (1 + exp(-x)).
void sigmoid_inplace(float* x, int64_t n);
// out (n) = silu(gate (n)) * up (n): the SwiGLU of DeepSeek's MLPs and experts.
void swiglu(float* out, const float* gate, const float* up, int64_t n);

}  // namespace dseek
