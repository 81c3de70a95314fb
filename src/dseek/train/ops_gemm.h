// Dense float32 products for training: the three shapes a linear layer's forward and backward need.
//
// All matrices are row-major. For a linear layer y = x·Wᵀ with x (N, in), W (out, in):
//   forward  y  = x · Wᵀ     gemm_nt      (M = N, K = in, N = out)
//   backward dx += dy · W    gemm_nn_acc  (M = N, K = out, N = in)
//            dW += dyᵀ · x   gemm_tn_acc  (M = out, K = N, N = in)
// The accumulating forms add into C (gradients accumulate with +=, STYLE.md).
// All three run on the training GEMM of kernels/gemm.h (blocked, FMA, AVX-512 when available).
#pragma once

#include <cstdint>

#include "dseek/core/thread_pool.h"
#include "dseek/kernels/gemm.h"

namespace dseek {

// `precision` kBf16: operands rounded to bf16, float32 sums (gemm.h; the "matmul" training option).
// C (M, N) = A (M, K) · Bᵀ with B (N, K).
void gemm_nt(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
             GemmPrecision precision = GemmPrecision::kF32);
// C (M, N) = A (M, K) · B (K, N). Overwrites C (a gradient's first contribution: no memset first).
void gemm_nn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
             GemmPrecision precision = GemmPrecision::kF32);
// C (M, N) += A (M, K) · B (K, N).
void gemm_nn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
                 GemmPrecision precision = GemmPrecision::kF32);
// C (M, N) += Aᵀ · B with A (K, M), B (K, N).
void gemm_tn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
                 GemmPrecision precision = GemmPrecision::kF32);

// Scalar references (double accumulation) for tests.
void gemm_nn_acc_ref(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N);
void gemm_tn_acc_ref(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N);

}  // namespace dseek
