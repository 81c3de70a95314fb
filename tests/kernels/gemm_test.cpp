// The training GEMM (kernels/gemm.h): every layout (nt, nn, tn), overwrite and accumulate, every
// micro-kernel this CPU supports, 1 and 2 threads, against the double-precision gemm_f32_ref on
// sizes that are not multiples of the 12 × 32 register tile or the 256-deep k block, with
// misaligned pointers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "dseek/core/thread_pool.h"
#include "dseek/core/dtype.h"
#include "dseek/core/error.h"
#include "dseek/kernels/gemm.h"

namespace dseek {
namespace {

constexpr uint32_t kSeed = 7070701;

// Tolerance, per output c = c0 + Σ_k a_k b_k: a float32 sum of K products in any order (FMA or not,
// split into k blocks added into C) errs by at most γ = (K + 1) · 2⁻²⁴ / (1 − (K + 1) · 2⁻²⁴) times
// S = |c0| + Σ_k |a_k b_k| (Higham, Accuracy and Stability, §3.1); the reference's double sum and
// final rounding add 2⁻²⁴ |c|. Used exactly, so a wrong index or a dropped k block (an error of
// order S) fails.
double tolerance(int64_t K, double S, double c) {
  const double u = std::ldexp(1.0, -24);
  const double g = double(K + 1) * u / (1.0 - double(K + 1) * u);
  return g * S + u * std::fabs(c) + 1e-30;
}

struct Case {
  int64_t M, K, N;
};

const char* layout_name(GemmLayout l) { return l == GemmLayout::kNT ? "nt" : l == GemmLayout::kNN ? "nn" : "tn"; }

// GemmPrecision::kBf16 is checked against the reference on operands rounded to bf16 first (what
// the kernel multiplies), with the same float32 tolerance: exact up to summation order.
void run_case(GemmLayout layout, GemmKernel kernel, const Case& c, bool accumulate, ThreadPool* pool,
              std::mt19937& rng, GemmPrecision precision = GemmPrecision::kF32) {
  const int64_t M = c.M, K = c.K, N = c.N;
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  // One float of slack in front of each operand: pointers off the 64-byte (and 8-byte) grid.
  std::vector<float> a(size_t(M * K) + 1), b(size_t(K * N) + 1), c0(size_t(M * N) + 1);
  for (auto& v : a) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  for (auto& v : c0) v = dist(rng);
  const float* A = a.data() + 1;
  const float* B = b.data() + 1;
  std::vector<float> got(c0), want(c0);
  float* C = got.data() + 1;
  const int64_t lda = layout == GemmLayout::kTN ? M : K, ldb = layout == GemmLayout::kNT ? K : N;
  gemm_f32(layout, C, N, A, lda, B, ldb, M, K, N, accumulate, pool, kernel, precision);
  if (precision == GemmPrecision::kBf16) {
    for (size_t i = 1; i < a.size(); ++i) a[i] = bf16_to_f32(f32_to_bf16(a[i]));
    for (size_t i = 1; i < b.size(); ++i) b[i] = bf16_to_f32(f32_to_bf16(b[i]));
  }
  gemm_f32_ref(layout, want.data() + 1, A, B, M, K, N, accumulate);
  EXPECT_EQ(got[0], c0[0]) << "wrote before C";
  double worst = 0.0;
  int64_t worst_i = -1;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double S = accumulate ? std::fabs(double(c0[size_t(1 + m * N + n)])) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double av = layout == GemmLayout::kTN ? A[k * M + m] : A[m * K + k];
        const double bv = layout == GemmLayout::kNT ? B[n * K + k] : B[k * N + n];
        S += std::fabs(av * bv);
      }
      const double w = want[size_t(1 + m * N + n)], g = got[size_t(1 + m * N + n)];
      const double ratio = std::fabs(g - w) / tolerance(K, S, w);
      if (!(ratio <= worst)) {  // also catches NaN
        worst = std::isnan(ratio) ? INFINITY : ratio;
        worst_i = m * N + n;
      }
    }
  EXPECT_LE(worst, 1.0) << layout_name(layout) << " " << gemm_kernel_name(kernel)
                        << (precision == GemmPrecision::kBf16 ? " bf16" : "") << " M " << M << " K " << K
                        << " N " << N << (accumulate ? " accumulate" : "") << " threads " << (pool ? pool->size() : 1)
                        << ": worst error / tolerance " << worst << " at (" << worst_i / N << ", " << worst_i % N
                        << ") got " << got[size_t(1 + worst_i)] << " want " << want[size_t(1 + worst_i)]
                        << " (seed " << kSeed << ")";
}

std::vector<GemmKernel> kernels() {
  std::vector<GemmKernel> ks{GemmKernel::kPortable};
  if (gemm_kernel_supported(GemmKernel::kAvx512)) ks.push_back(GemmKernel::kAvx512);
  if (gemm_kernel_supported(GemmKernel::kAmx)) ks.push_back(GemmKernel::kAmx);
  return ks;
}

TEST(Gemm, AwkwardSizesAllLayoutsKernelsAndThreads) {
  // Edges in every dimension: 1, tile ± 1 (12, 32), k block ± 1 (256), a few of each at once, and
  // the config-S shapes that have partial tiles (80 = kv_lora + rope columns, 16 routed experts),
  // and more than one 256-column block of B.
  const std::vector<Case> cases = {{1, 1, 1},    {1, 5, 40},    {13, 7, 33},    {11, 255, 31},  {12, 256, 32},
                                   {25, 257, 17}, {37, 300, 65}, {100, 513, 80}, {130, 70, 200}, {257, 64, 16},
                                   {3, 600, 97},  {64, 33, 129}, {50, 270, 300}};
  ThreadPool pool2(2);
  std::mt19937 rng(kSeed);
  for (GemmKernel kernel : kernels())
    for (GemmLayout layout : {GemmLayout::kNT, GemmLayout::kNN, GemmLayout::kTN})
      for (const Case& c : cases)
        for (bool accumulate : {false, true}) {
          run_case(layout, kernel, c, accumulate, nullptr, rng);
          run_case(layout, kernel, c, accumulate, &pool2, rng);
        }
}

TEST(Gemm, Bf16PrecisionAwkwardSizes) {
  if (!gemm_bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16";
  const std::vector<Case> cases = {{1, 1, 1},     {1, 5, 40},    {13, 7, 33},   {11, 255, 31}, {12, 256, 32},
                                   {25, 257, 17}, {37, 300, 65}, {100, 513, 80}, {3, 600, 97}, {64, 33, 129}};
  ThreadPool pool2(2);
  std::mt19937 rng(kSeed + 1);
  // Both bf16 micro-kernels where the CPU has them: vdpbf16ps (kAvx512) and AMX tiles (kAmx).
  for (GemmKernel kernel : kernels())
    if (kernel != GemmKernel::kPortable)
      for (GemmLayout layout : {GemmLayout::kNT, GemmLayout::kNN, GemmLayout::kTN})
        for (const Case& c : cases)
          for (bool accumulate : {false, true}) {
            run_case(layout, kernel, c, accumulate, nullptr, rng, GemmPrecision::kBf16);
            run_case(layout, kernel, c, accumulate, &pool2, rng, GemmPrecision::kBf16);
          }
}

TEST(Gemm, Bf16PrecisionNeedsItsKernel) {
  float c = 0.f, a = 1.f, b = 1.f;
  EXPECT_THROW(gemm_f32(GemmLayout::kNT, &c, 1, &a, 1, &b, 1, 1, 1, 1, false, nullptr, GemmKernel::kPortable,
                        GemmPrecision::kBf16),
               Error);
}

TEST(Gemm, LeadingDimensions) {
  // Sub-matrices with row strides larger than their widths (as causal attention uses): the result
  // equals the contiguous product and nothing between the rows of C is written.
  ThreadPool pool2(2);
  std::mt19937 rng(kSeed + 1);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  const std::vector<Case> cases = {{1, 1, 1}, {13, 40, 33}, {64, 256, 48}, {70, 19, 100}};
  for (GemmKernel kernel : kernels())
    for (GemmLayout layout : {GemmLayout::kNT, GemmLayout::kNN, GemmLayout::kTN})
      for (const Case& c : cases) {
        const int64_t M = c.M, K = c.K, N = c.N, pad = 5;
        // Contiguous operands in the layout's shapes, then strided copies.
        const int64_t ar = layout == GemmLayout::kTN ? K : M, ac = layout == GemmLayout::kTN ? M : K;
        const int64_t br = layout == GemmLayout::kNT ? N : K, bc = layout == GemmLayout::kNT ? K : N;
        std::vector<float> a(size_t(ar * ac)), b(size_t(br * bc));
        for (auto& v : a) v = dist(rng);
        for (auto& v : b) v = dist(rng);
        const int64_t lda = ac + pad, ldb = bc + pad, ldc = N + pad;
        std::vector<float> as(size_t(ar * lda), NAN), bs(size_t(br * ldb), NAN), cs(size_t(M * ldc), 7.f);
        for (int64_t r = 0; r < ar; ++r)
          for (int64_t q = 0; q < ac; ++q) as[size_t(r * lda + q)] = a[size_t(r * ac + q)];
        for (int64_t r = 0; r < br; ++r)
          for (int64_t q = 0; q < bc; ++q) bs[size_t(r * ldb + q)] = b[size_t(r * bc + q)];
        std::vector<float> want(size_t(M * N), 7.f);
        gemm_f32_ref(layout, want.data(), a.data(), b.data(), M, K, N, true);
        gemm_f32(layout, cs.data(), ldc, as.data(), lda, bs.data(), ldb, M, K, N, true, &pool2, kernel);
        double worst = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) {
            double S = 7.0;
            for (int64_t k = 0; k < K; ++k) {
              const double av = layout == GemmLayout::kTN ? a[size_t(k * M + m)] : a[size_t(m * K + k)];
              const double bv = layout == GemmLayout::kNT ? b[size_t(n * K + k)] : b[size_t(k * N + n)];
              S += std::fabs(av * bv);
            }
            const double w = want[size_t(m * N + n)];
            worst = std::max(worst, std::fabs(double(cs[size_t(m * ldc + n)]) - w) / tolerance(K, S, w));
          }
          for (int64_t n = N; n < ldc; ++n) EXPECT_EQ(cs[size_t(m * ldc + n)], 7.f) << "wrote between rows of C";
        }
        EXPECT_LE(worst, 1.0) << layout_name(layout) << " " << gemm_kernel_name(kernel) << " M " << M << " K " << K
                              << " N " << N << " (seed " << kSeed + 1 << ")";
      }
}

TEST(Gemm, EmptyDimensions) {
  // K = 0: C = 0 (overwrite) or unchanged (accumulate); M or N = 0: nothing is touched.
  for (GemmKernel kernel : kernels()) {
    std::vector<float> C(6, 3.f);
    gemm_f32_nn(C.data(), nullptr, nullptr, 2, 0, 3, true, nullptr, kernel);
    for (float v : C) EXPECT_EQ(v, 3.f);
    gemm_f32_tn(C.data(), nullptr, nullptr, 2, 0, 3, false, nullptr, kernel);
    for (float v : C) EXPECT_EQ(v, 0.f);
    C.assign(6, 3.f);
    gemm_f32_nt(C.data(), nullptr, nullptr, 0, 4, 3, false, nullptr, kernel);
    gemm_f32_nt(C.data(), nullptr, nullptr, 2, 4, 0, false, nullptr, kernel);
    for (float v : C) EXPECT_EQ(v, 3.f);
  }
}

TEST(Gemm, KernelNames) {
  EXPECT_STREQ(gemm_kernel_name(GemmKernel::kPortable), "portable");
  const std::string automatic = gemm_kernel_name(GemmKernel::kAuto);
  EXPECT_EQ(automatic, gemm_kernel_supported(GemmKernel::kAmx)      ? "amx"
                       : gemm_kernel_supported(GemmKernel::kAvx512) ? "avx512"
                                                                    : "portable");
}

}  // namespace
}  // namespace dseek
