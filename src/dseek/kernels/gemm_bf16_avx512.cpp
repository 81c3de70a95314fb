// BF16 variant of the training GEMM's micro-kernel and packing (gemm.h, GemmPrecision::kBf16).
// Compiled with AVX-512 BF16 flags (CMakeLists.txt); gemm.cpp calls it only when cpu_features()
// reports avx512_bf16.
//
// Operands are rounded to bf16 (nearest even) as they are packed; products are summed in float32
// by vdpbf16ps, which multiplies pairs: B panels hold, per k pair, the (k, k + 1) values of 32
// columns as 32 words; A tiles hold, per k pair, the (k, k + 1) values of 12 rows as 12 words,
// broadcast one at a time. A 12 x 32 tile keeps 24 accumulators, as the float32 kernel, but each
// instruction does twice its multiply-adds.
#include "dseek/kernels/gemm_kernels.h"

#if defined(__AVX512BF16__)

#include <immintrin.h>

// GCC 12's AVX-512 headers build some results from undefined placeholders and then warn about them
// once inlined (as in matmul_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>

#include "dseek/kernels/transpose_avx512.h"

namespace dseek::gemm {

namespace {

inline __mmask16 mask16(int64_t n) { return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// Words j = (lo[j], hi[j]) as bf16 pairs, j < 16.
inline __m512 pairs_of(__m512 lo, __m512 hi) {
  const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // u16 lanes: lo 0..15, hi 0..15
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                                       20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_castsi512_ps(_mm512_permutexvar_epi16(idx, v));
}

// Word j = (x[2j], x[2j + 1]) as bf16 pairs for the first n floats of x (zeros beyond).
inline __m512 pairs_along(const float* x, int64_t n) {
  const __m512 lo = _mm512_maskz_loadu_ps(mask16(n), x), hi = _mm512_maskz_loadu_ps(mask16(n - 16), x + 16);
  return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}


constexpr __mmask16 kTileRows = __mmask16((1u << kMR) - 1);

// The A tile of rows [m0, m0 + rows) (zeros beyond, up to kMR): ap[p * kMR + i] = pair p of row i.
void pack_a(float* ap, const Block& b, int64_t m0, int64_t rows, int64_t pairs) {
  if (b.acs == 1) {  // rows contiguous along k
    for (int64_t p = 0; p < pairs; p += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? pairs_along(b.A + (m0 + i) * b.ars + 2 * p, b.kc - 2 * p) : _mm512_setzero_ps();
      transpose16(r);
      for (int q = 0; q < 16 && p + q < pairs; ++q) _mm512_mask_storeu_ps(ap + (p + q) * kMR, kTileRows, r[q]);
    }
  } else {  // ars == 1: a(·, k) contiguous along the rows
    const __mmask16 m = mask16(rows);
    for (int64_t p = 0; p < pairs; ++p) {
      const float* k0 = b.A + m0 + 2 * p * b.acs;
      const __m512 lo = _mm512_maskz_loadu_ps(m, k0);
      const __m512 hi = 2 * p + 1 < b.kc ? _mm512_maskz_loadu_ps(m, k0 + b.acs) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(ap + p * kMR, kTileRows, pairs_of(lo, hi));
    }
  }
}

// C tile (rows x nr) (+)= ap · bp over `pairs` k pairs.
inline void tile(const float* ap, const float* bp, int64_t pairs, float* C, int64_t ldc, int64_t rows, int64_t nr,
                 bool accumulate) {
  __m512 c0[kMR], c1[kMR];
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_ps(bp + p * kNR), b1 = (__m512bh)_mm512_loadu_ps(bp + p * kNR + 16);
    for (int i = 0; i < kMR; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_ps(ap[p * kMR + i]);
      c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
    }
  }
  const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
  for (int i = 0; i < kMR && i < rows; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, c));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, c + 16));
    }
    _mm512_mask_storeu_ps(c, m0, c0[i]);
    _mm512_mask_storeu_ps(c + 16, m1, c1[i]);
  }
}

}  // namespace

void block_bf16_avx512(const Block& b) {
  const int64_t pairs = (b.kc + 1) / 2;
  alignas(64) float ap[(kKC / 2) * kMR];
  for (int64_t m0 = 0; m0 < b.rows; m0 += kMR) {
    const int64_t rows = std::min(kMR, b.rows - m0);
    pack_a(ap, b, m0, rows, pairs);
    for (int64_t n0 = 0; n0 < b.cols; n0 += kNR)
      tile(ap, b.Bp + (n0 / kNR) * pairs * kNR, pairs, b.C + m0 * b.ldc + n0, b.ldc, rows, std::min(kNR, b.cols - n0),
           b.accumulate);
  }
}

void pack_b_bf16_avx512(float* dst, const float* B, int64_t brs, int64_t bcs, int64_t kc, int64_t cols) {
  const int64_t pairs = (kc + 1) / 2;
  for (int64_t p0 = 0; p0 < cols; p0 += kNR) {
    const int64_t nr = std::min(kNR, cols - p0);
    float* d = dst + (p0 / kNR) * pairs * kNR;
    if (bcs == 1) {  // rows of B contiguous along the columns: per pair, both rows' 32 columns at once,
                     // one contiguous 128-byte panel row written (a sequential read and write stream)
      const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
      for (int64_t p = 0; p < pairs; ++p) {
        const float* r0 = B + 2 * p * brs + p0;
        const bool odd = 2 * p + 1 < kc;
        const __m512 lo0 = _mm512_maskz_loadu_ps(m0, r0), lo1 = _mm512_maskz_loadu_ps(m1, r0 + 16);
        const __m512 hi0 = odd ? _mm512_maskz_loadu_ps(m0, r0 + brs) : _mm512_setzero_ps();
        const __m512 hi1 = odd ? _mm512_maskz_loadu_ps(m1, r0 + brs + 16) : _mm512_setzero_ps();
        _mm512_storeu_ps(d + p * kNR, pairs_of(lo0, hi0));
        _mm512_storeu_ps(d + p * kNR + 16, pairs_of(lo1, hi1));
      }
      continue;
    }
    for (int h = 0; h < 2; ++h) {  // brs == 1: column n contiguous along k (the nt forward's weights)
      const int64_t n0 = p0 + 16 * h, nh = nr - 16 * h;
      for (int64_t p = 0; p < pairs; p += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < nh ? pairs_along(B + (n0 + i) * bcs + 2 * p, kc - 2 * p) : _mm512_setzero_ps();
        transpose16(r);
        for (int q = 0; q < 16 && p + q < pairs; ++q) _mm512_storeu_ps(d + (p + q) * kNR + 16 * h, r[q]);
      }
    }
  }
}

}  // namespace dseek::gemm

#else  // built without AVX-512 BF16 flags: gemm.cpp never selects this kernel

#include "dseek/core/error.h"

namespace dseek::gemm {
void block_bf16_avx512(const Block&) { throw Error("gemm: AVX-512 BF16 kernel not compiled in"); }
void pack_b_bf16_avx512(float*, const float*, int64_t, int64_t, int64_t, int64_t) {
  throw Error("gemm: AVX-512 BF16 kernel not compiled in");
}
}  // namespace dseek::gemm

#endif
