// Linear layers: y = x · Wᵀ for weights in any stored dtype (F32, BF16, F16, FP8-E4M3 with block scales).
//
// B = tokens, K = in_features (w.cols), N = out_features (w.rows). Activations are float32.
// Weights are read where they lie (memory-mapped); FP8 is dequantized on the fly, per block.
#pragma once

#include <cstdint>

#include "dseek/core/tensor.h"
#include "dseek/core/thread_pool.h"

namespace dseek {

// y (B, N) = x (B, K) · Wᵀ. Splits output rows across `pool` when given.
void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool = nullptr);
// Scalar reference of matmul: one output at a time, float32 accumulation in index order.
void matmul_ref(float* y, const float* x, const MatView& w, int64_t B);

// y (B, K) = x (B, N) · W: the transposed product, used by absorbed MLA to fold W_UK into the query.
void matmul_transposed(float* y, const float* x, const MatView& w, int64_t B);

// Row r of w as float32: out (K).
void dequantize_row(float* out, const MatView& w, int64_t r);
// Columns [k0, k0 + n) of row r as float32: out (n).
void dequantize_row_range(float* out, const MatView& w, int64_t r, int64_t k0, int64_t n);

// Bytes read by one pass over w (for roofline accounting).
int64_t mat_bytes(const MatView& w);

}  // namespace dseek
