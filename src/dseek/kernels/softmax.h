// Softmax, sigmoid and SwiGLU activations on float32 rows.
#pragma once

#include <cstdint>

namespace dseek {

// x (n) <- softmax(x), max-subtracted; -inf entries become 0. All -inf rows become all 0.
void softmax_inplace(float* x, int64_t n);
// Attention's softmax of one query row: s (n) <- softmax_j(scale * s_j) over the allowed j (allowed
// null: all), 0 for the others; all masked: all 0. AVX-512 (F/BW/VL) where the CPU has it (exp within
// ~2 ulp of libm's, float sums), else the scalar softmax_inplace.
void attention_softmax(float* s, int64_t n, float scale, const uint8_t* allowed);
void attention_softmax_ref(float* s, int64_t n, float scale, const uint8_t* allowed);
void attention_softmax_avx512(float* s, int64_t n, float scale, const uint8_t* allowed);
// out[i] = exp((x[i] - shift) * scale): the unnormalised softmax weights of sampling at temperature
// 1 / scale, with x[i] == shift giving exactly 1 (also for an infinite scale) and -inf, or anything
// whose exponent is below -87, exactly 0. AVX-512 (exp within ~2 ulp of libm's) where the CPU has it:
// libm's expf over a 129,280-token vocabulary was ~0.5 ms per sampled token.
void exp_shifted(float* out, const float* x, int64_t n, float shift, float scale);
void exp_shifted_ref(float* out, const float* x, int64_t n, float shift, float scale);
void exp_shifted_avx512(float* out, const float* x, int64_t n, float shift, float scale);
// x (n) <- 1 / (1 + exp(-x)).
void sigmoid_inplace(float* x, int64_t n);
// out (n) = silu(gate (n)) * up (n): the SwiGLU of DeepSeek's MLPs and experts. AVX-512 (exp within
// ~2 ulp of libm's) where the CPU has it: with libm's expf per element it was ~2 % of prefill.
void swiglu(float* out, const float* gate, const float* up, int64_t n);
void swiglu_ref(float* out, const float* gate, const float* up, int64_t n);
void swiglu_avx512(float* out, const float* gate, const float* up, int64_t n);

}  // namespace dseek
