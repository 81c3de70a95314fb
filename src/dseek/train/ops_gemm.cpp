#include "dseek/train/ops_gemm.h"

// Let the multiply-adds of the tiles fuse into FMA where the clone's target has it (x86-64-v3/v4);
// the baseline clone keeps separate multiply and add.
#pragma GCC optimize("O3,fp-contract=fast")

#include <algorithm>
#include <cmath>

#include "dseek/core/tensor.h"
#include "dseek/kernels/matmul.h"

namespace dseek {

namespace {

constexpr int kMR = 4;   // rows of C per register tile
constexpr int kNR = 32;  // columns of C per register tile (2 AVX-512 / 4 AVX2 vectors)

// a(i, k) = A[i * ars + k * acs] covers both A (M, K) (ars = K, acs = 1) and Aᵀ (acs = M, ars = 1).
struct Operands {
  float* C;
  int64_t ldc;
  const float* A;
  int64_t ars, acs;
  const float* B;
  int64_t ldb;
  int64_t M, K, N;
};

[[gnu::always_inline]] inline void full_tile(const Operands& o, int64_t m0, int64_t n0) {
  float acc[kMR][kNR] = {};
  const float* a = o.A + m0 * o.ars;
  const float* b = o.B + n0;
  for (int64_t k = 0; k < o.K; ++k) {
    const float* bk = b + k * o.ldb;
    const float* ak = a + k * o.acs;
    for (int i = 0; i < kMR; ++i) {
      const float ai = ak[i * o.ars];
      for (int j = 0; j < kNR; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < kMR; ++i) {
    float* c = o.C + (m0 + i) * o.ldc + n0;
    for (int j = 0; j < kNR; ++j) c[j] += acc[i][j];
  }
}

// Edge tiles (mr <= kMR rows, nr <= kNR columns): same arithmetic, run-time bounds.
[[gnu::always_inline]] inline void edge_tile(const Operands& o, int64_t m0, int64_t n0, int64_t mr, int64_t nr) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < o.K; ++k) {
    const float* bk = o.B + k * o.ldb + n0;
    for (int64_t i = 0; i < mr; ++i) {
      const float ai = o.A[(m0 + i) * o.ars + k * o.acs];
      for (int64_t j = 0; j < nr; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int64_t i = 0; i < mr; ++i) {
    float* c = o.C + (m0 + i) * o.ldc + n0;
    for (int64_t j = 0; j < nr; ++j) c[j] += acc[i][j];
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void run_tiles(const Operands& o, int64_t t0, int64_t t1) {
  // Column-stripe major: consecutive tiles share B's (K, kNR) stripe, which stays in L2.
  const int64_t mt = (o.M + kMR - 1) / kMR;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t m0 = (t % mt) * kMR, n0 = (t / mt) * kNR;
    const int64_t mr = std::min<int64_t>(kMR, o.M - m0), nr = std::min<int64_t>(kNR, o.N - n0);
    if (mr == kMR && nr == kNR)
      full_tile(o, m0, n0);
    else
      edge_tile(o, m0, n0, mr, nr);
  }
}

void run(const Operands& o, ThreadPool* pool) {
  if (o.M == 0 || o.N == 0 || o.K == 0) return;
  const int64_t tiles = ((o.M + kMR - 1) / kMR) * ((o.N + kNR - 1) / kNR);
  if (pool && pool->size() > 1 && o.M * o.N * o.K >= (1 << 15))
    pool->parallel_for(tiles, [&](int64_t t0, int64_t t1) { run_tiles(o, t0, t1); });
  else
    run_tiles(o, 0, tiles);
}

}  // namespace

void gemm_nt(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool) {
  if (M == 0 || N == 0) return;
  MatView w;
  w.data = B;
  w.dtype = DType::kF32;
  w.rows = N;
  w.cols = K;
  matmul(C, A, w, M, pool);
}

void gemm_nn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool) {
  run(Operands{C, N, A, K, 1, B, N, M, K, N}, pool);
}

void gemm_tn_acc(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, ThreadPool* pool) {
  run(Operands{C, N, A, 1, M, B, N, M, K, N}, pool);
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
