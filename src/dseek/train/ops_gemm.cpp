#include "dseek/train/ops_gemm.h"

#include "dseek/kernels/gemm.h"

namespace dseek {

// The products run on the training GEMM (kernels/gemm.h): cache-blocked, FMA, threaded. The
// forward is not the inference matmul (bit-exact with matmul_ref, no FMA contraction), so the
// training forward rounds differently from inference; the loss-equality tests bound the difference.
void gemm_nt(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
             GemmPrecision precision) {
  gemm_f32(GemmLayout::kNT, C, N, A, K, B, K, M, K, N, false, pool, GemmKernel::kAuto, precision);
}

void gemm_nn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
             GemmPrecision precision) {
  gemm_f32(GemmLayout::kNN, C, N, A, K, B, N, M, K, N, false, pool, GemmKernel::kAuto, precision);
}

void gemm_nn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
                 GemmPrecision precision) {
  gemm_f32(GemmLayout::kNN, C, N, A, K, B, N, M, K, N, true, pool, GemmKernel::kAuto, precision);
}

void gemm_tn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool,
                 GemmPrecision precision) {
  gemm_f32(GemmLayout::kTN, C, N, A, M, B, N, M, K, N, true, pool, GemmKernel::kAuto, precision);
}

void gemm_nn_acc_ref(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(A[m * K + k]) * B[k * N + n];
      C[m * N + n] += float(s);
    }
}

void gemm_tn_acc_ref(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(A[k * M + m]) * B[k * N + n];
      C[m * N + n] += float(s);
    }
}

}  // namespace dseek
