// Short float32 vector primitives used by attention (dot products, scaled accumulation), with
// AVX-512 / AVX2 variants chosen once at run time and a scalar reference.
#pragma once

#include <cstdint>

namespace dseek {

// Σ a[i] b[i] over n values.
float vec_dot(const float* a, const float* b, int64_t n);
float vec_dot_ref(const float* a, const float* b, int64_t n);
// Σ x[i]: a pure streaming read (the memory-bandwidth probe of `dseek bench`).
float vec_sum(const float* x, int64_t n);
float vec_sum_ref(const float* x, int64_t n);
// y[i] += alpha * x[i].
void vec_axpy(float* y, float alpha, const float* x, int64_t n);
void vec_axpy_ref(float* y, float alpha, const float* x, int64_t n);

}  // namespace dseek
