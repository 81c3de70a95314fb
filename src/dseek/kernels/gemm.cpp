#include "dseek/kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/gemm_kernels.h"

namespace dseek {

namespace {

using gemm::kKC;
using gemm::kMR;
using gemm::kNR;

// Columns per packed B block: kKC × kNC floats = 256 KB, a quarter of Zen 5's L2, so the block
// stays in L2 while every A tile of the thread's rows streams past it.
constexpr int64_t kNC = 256;

// One call in general strides: a(m, k) = A[m * ars + k * acs], b(k, n) = B[k * brs + n * bcs].
struct Operands {
  float* C;  // (M, N), row stride ldc
  int64_t ldc;
  const float* A;
  int64_t ars, acs;
  const float* B;
  int64_t brs, bcs;
  int64_t M, K, N;
};

// Portable micro-kernel: the same tiling as gemm_avx512.cpp, scalar code the compiler may vectorize.
void block_portable(const gemm::Block& b) {
  for (int64_t m0 = 0; m0 < b.rows; m0 += kMR) {
    const int64_t mr = std::min(kMR, b.rows - m0);
    for (int64_t n0 = 0; n0 < b.cols; n0 += kNR) {
      const int64_t nr = std::min(kNR, b.cols - n0);
      const float* bp = b.Bp + (n0 / kNR) * b.kc * kNR;
      float acc[kMR][kNR] = {};
      for (int64_t k = 0; k < b.kc; ++k) {
        const float* bk = bp + k * kNR;
        for (int64_t i = 0; i < mr; ++i) {
          const float ai = b.A[(m0 + i) * b.ars + k * b.acs];
          for (int64_t j = 0; j < kNR; ++j) acc[i][j] += ai * bk[j];
        }
      }
      for (int64_t i = 0; i < mr; ++i) {
        float* c = b.C + (m0 + i) * b.ldc + n0;
        if (b.accumulate)
          for (int64_t j = 0; j < nr; ++j) c[j] += acc[i][j];
        else
          for (int64_t j = 0; j < nr; ++j) c[j] = acc[i][j];
      }
    }
  }
}

using BlockFn = void (*)(const gemm::Block&);

bool has_avx512() { return cpu_features().avx512_fma(); }

GemmKernel resolve(GemmKernel k) {
  if (k == GemmKernel::kAuto)
    return gemm_kernel_supported(GemmKernel::kAmx) ? GemmKernel::kAmx
           : has_avx512()                          ? GemmKernel::kAvx512
                                                   : GemmKernel::kPortable;
  if (!gemm_kernel_supported(k)) throw Error(std::string("gemm: kernel ") + gemm_kernel_name(k) + " is not supported by this CPU");
  return k;
}

// Packs columns [n0, n1) and rows [k0, k0 + kc) of b into panels of kNR columns, zero-padded.
void pack_b(float* dst, const Operands& o, int64_t k0, int64_t kc, int64_t n0, int64_t n1, bool simd) {
  if (o.bcs == 1 && simd) {
    gemm::pack_b_rows_avx512(dst, o.B + k0 * o.brs + n0, o.brs, kc, n1 - n0);
    return;
  }
  if (o.brs == 1 && simd) {
    gemm::pack_b_cols_avx512(dst, o.B + n0 * o.bcs + k0, o.bcs, kc, n1 - n0);
    return;
  }
  for (int64_t p0 = n0; p0 < n1; p0 += kNR) {
    const int64_t nr = std::min(kNR, n1 - p0);
    float* d = dst + ((p0 - n0) / kNR) * kc * kNR;
    if (o.bcs == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        std::memcpy(d + k * kNR, o.B + (k0 + k) * o.brs + p0, size_t(nr) * sizeof(float));
        std::memset(d + k * kNR + nr, 0, size_t(kNR - nr) * sizeof(float));
      }
    } else {  // B stored (N, K) (the nt forward): read each stored row along k, write a column
      for (int64_t j = 0; j < nr; ++j) {
        const float* src = o.B + (p0 + j) * o.bcs + k0 * o.brs;
        for (int64_t k = 0; k < kc; ++k) d[k * kNR + j] = src[k * o.brs];
      }
      if (nr < kNR)
        for (int64_t k = 0; k < kc; ++k) std::memset(d + k * kNR + nr, 0, size_t(kNR - nr) * sizeof(float));
    }
  }
}

// Rows [m0, m1) × columns [n0, n1) of C, all of K, packing B into `pack` (kKC × kNC, padded).
void run_part(const Operands& o, bool accumulate, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float* pack,
              bool simd, bool bf16, bool amx) {
  const BlockFn block = bf16   ? (amx ? gemm::block_bf16_amx : gemm::block_bf16_avx512)
                        : simd ? gemm::block_avx512
                               : block_portable;
  if (m0 >= m1 || n0 >= n1) return;
  for (int64_t nc0 = n0; nc0 < n1; nc0 += kNC) {
    const int64_t nc1 = std::min(n1, nc0 + kNC);
    for (int64_t k0 = 0; k0 < o.K; k0 += kKC) {
      const int64_t kc = std::min(kKC, o.K - k0);
      if (bf16)
        gemm::pack_b_bf16_avx512(pack, o.B + k0 * o.brs + nc0 * o.bcs, o.brs, o.bcs, kc, nc1 - nc0);
      else
        pack_b(pack, o, k0, kc, nc0, nc1, simd);
      gemm::Block b;
      b.A = o.A + m0 * o.ars + k0 * o.acs;
      b.ars = o.ars;
      b.acs = o.acs;
      b.Bp = pack;
      b.C = o.C + m0 * o.ldc + nc0;
      b.ldc = o.ldc;
      b.rows = m1 - m0;
      b.cols = nc1 - nc0;
      b.kc = kc;
      b.accumulate = accumulate || k0 > 0;
      block(b);
    }
  }
}

void run(const Operands& o, bool accumulate, ThreadPool* pool, GemmKernel kernel, GemmPrecision precision) {
  if (o.M <= 0 || o.N <= 0) return;
  if (o.K <= 0) {
    if (!accumulate)
      for (int64_t m = 0; m < o.M; ++m) std::memset(o.C + m * o.ldc, 0, size_t(o.N) * sizeof(float));
    return;
  }
  const GemmKernel resolved = resolve(kernel);
  const bool simd = resolved == GemmKernel::kAvx512 || resolved == GemmKernel::kAmx;
  const bool bf16 = precision == GemmPrecision::kBf16, amx = resolved == GemmKernel::kAmx;
  if (bf16 && !(simd && gemm_bf16_supported()))
    throw Error("gemm: bf16 precision needs the AVX-512 BF16 kernel, which this CPU or kernel choice lacks");
  const int64_t np = (o.N + kNR - 1) / kNR, mp = (o.M + kMR - 1) / kMR;
  // Below ~256k multiply-adds a fork/join costs more than the second thread saves.
  const int64_t T = (pool && o.M * o.N * o.K >= (int64_t(1) << 18)) ? pool->size() : 1;
  // Split whichever of columns and rows balances the tiles better; on a tie, the one that packs
  // less: a column split packs a 1/T share of B but every thread reads (transposes) all of A, a
  // row split the reverse (config S's 4096 x 256 activations against 256 x 256 weights: rows).
  const int64_t tiles_n = ((np + T - 1) / T) * mp, tiles_m = ((mp + T - 1) / T) * np;
  const bool split_n = tiles_n < tiles_m || (tiles_n == tiles_m && o.M + o.N / T <= o.M / T + o.N);
  const int64_t panels = split_n ? (np + T - 1) / T : np;
  const int64_t pack_floats = kKC * std::min(panels * kNR, kNC);
  std::unique_ptr<float[]> pack(new float[size_t(pack_floats * T)]);
  auto part = [&](int t) {
    float* p = pack.get() + t * pack_floats;
    if (split_n) {
      const int64_t p0 = t * np / T, p1 = (t + 1) * np / T;
      run_part(o, accumulate, 0, o.M, p0 * kNR, std::min(o.N, p1 * kNR), p, simd, bf16, amx);
    } else {
      const int64_t r0 = t * mp / T, r1 = (t + 1) * mp / T;
      run_part(o, accumulate, r0 * kMR, std::min(o.M, r1 * kMR), 0, o.N, p, simd, bf16, amx);
    }
  };
  if (T == 1)
    part(0);
  else
    pool->parallel_for_tid(T, [&](int, int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) part(int(t));
    });
}

}  // namespace

bool gemm_bf16_supported() { return has_avx512() && cpu_features().avx512bf16; }

bool gemm_kernel_supported(GemmKernel kernel) {
  if (kernel == GemmKernel::kAmx)
    return gemm_bf16_supported() && cpu_features().amx_bf16 && gemm::bf16_amx_built() && amx_permitted();
  return kernel != GemmKernel::kAvx512 || has_avx512();
}

const char* gemm_kernel_name(GemmKernel kernel) {
  switch (kernel == GemmKernel::kAuto ? resolve(kernel) : kernel) {
    case GemmKernel::kAmx: return "amx";
    case GemmKernel::kAvx512: return "avx512";
    default: return "portable";
  }
}

void gemm_f32(GemmLayout layout, float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
              int64_t M, int64_t K, int64_t N, bool accumulate, ThreadPool* pool, GemmKernel kernel,
              GemmPrecision precision) {
  switch (layout) {
    case GemmLayout::kNT: run(Operands{C, ldc, A, lda, 1, B, 1, ldb, M, K, N}, accumulate, pool, kernel, precision); break;
    case GemmLayout::kNN: run(Operands{C, ldc, A, lda, 1, B, ldb, 1, M, K, N}, accumulate, pool, kernel, precision); break;
    case GemmLayout::kTN: run(Operands{C, ldc, A, 1, lda, B, ldb, 1, M, K, N}, accumulate, pool, kernel, precision); break;
  }
}

void gemm_f32_nt(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel) {
  gemm_f32(GemmLayout::kNT, C, N, A, K, B, K, M, K, N, accumulate, pool, kernel);
}

void gemm_f32_nn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel) {
  gemm_f32(GemmLayout::kNN, C, N, A, K, B, N, M, K, N, accumulate, pool, kernel);
}

void gemm_f32_tn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel) {
  gemm_f32(GemmLayout::kTN, C, N, A, M, B, N, M, K, N, accumulate, pool, kernel);
}

void gemm_f32_ref(GemmLayout layout, float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N,
                  bool accumulate) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = layout == GemmLayout::kTN ? A[k * M + m] : A[m * K + k];
        const double b = layout == GemmLayout::kNT ? B[n * K + k] : B[k * N + n];
        s += a * b;
      }
      float& c = C[m * N + n];
      c = accumulate ? float(double(c) + s) : float(s);
    }
}

}  // namespace dseek
