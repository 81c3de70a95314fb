// AVX-512 micro-kernel of the training GEMM (gemm.h). Compiled with -mavx512f -mavx512bw
// -mavx512vl -mfma (CMakeLists.txt); gemm.cpp calls it only when cpu_features() reports them.
//
// A tile is kMR rows × kNR = 32 columns of C: 24 zmm accumulators, two B vectors per k from the
// packed panel, and one broadcast of a(i, k) per row from the packed A tile.
#include "dseek/kernels/gemm_kernels.h"

#if defined(__AVX512F__) && defined(__FMA__)

#include <immintrin.h>

#include <algorithm>

// GCC 12's AVX-512 headers build extracts from an undefined placeholder and then warn about it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dseek::gemm {

namespace {

// dst[k * ldd + r] = src[r * lds + k] for r < rows, k < kc, and 0 for rows <= r < round_up(rows, 4):
// four source rows at a time, 16 k per step, through in-lane unpacks.
void transpose_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t kc) {
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t kn = std::min<int64_t>(16, kc - k0);
      const __mmask16 km = kn >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << kn) - 1);
      __m512 v[4];
      for (int i = 0; i < 4; ++i)
        v[i] = r0 + i < rows ? _mm512_maskz_loadu_ps(km, src + (r0 + i) * lds + k0) : _mm512_setzero_ps();
      // Per 128-bit lane L (k = k0 + 4L + c): col[c] holds rows r0 .. r0 + 3 of column k.
      const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(v[0], v[1])), t1 = _mm512_castps_pd(_mm512_unpackhi_ps(v[0], v[1]));
      const __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(v[2], v[3])), t3 = _mm512_castps_pd(_mm512_unpackhi_ps(v[2], v[3]));
      const __m512 col[4] = {_mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)), _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)),
                             _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)), _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3))};
      float* d = dst + k0 * ldd + r0;
      if (kn == 16) {
        for (int c = 0; c < 4; ++c) {
          _mm_storeu_ps(d + (0 + c) * ldd, _mm512_extractf32x4_ps(col[c], 0));
          _mm_storeu_ps(d + (4 + c) * ldd, _mm512_extractf32x4_ps(col[c], 1));
          _mm_storeu_ps(d + (8 + c) * ldd, _mm512_extractf32x4_ps(col[c], 2));
          _mm_storeu_ps(d + (12 + c) * ldd, _mm512_extractf32x4_ps(col[c], 3));
        }
      } else {
        alignas(64) float lanes[4][16];
        for (int c = 0; c < 4; ++c) _mm512_store_ps(lanes[c], col[c]);
        for (int64_t k = 0; k < kn; ++k) _mm_storeu_ps(d + k * ldd, _mm_load_ps(&lanes[k % 4][4 * (k / 4)]));
      }
    }
  }
}

// Lines one row tile prefetches for the next: A (at most kKC k steps x 2 lines, or kMR rows of kKC
// floats) and C (kMR rows of up to kNC = 256 floats).
constexpr int64_t kMaxPrefetch = 2 * kKC + kMR * (256 / 16 + 1);

// C tile (MR × nr, nr <= kNR) (+)= ap · bp: ap is the packed A tile, ap[k * kMR + i].
template <int MR>
[[gnu::always_inline]] inline void tile(const Block& b, const float* ap, const float* bp, float* C, int64_t nr,
                                        const char* const* pf, int64_t npf) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  const int64_t kc = b.kc;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    if (k < npf) _mm_prefetch(pf[k], _MM_HINT_T1);
    const __m512 b0 = _mm512_loadu_ps(bp + k * kNR);
    const __m512 b1 = _mm512_loadu_ps(bp + k * kNR + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[k * kMR + i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
  }
  for (int64_t k = kc; k < npf; ++k) _mm_prefetch(pf[k], _MM_HINT_T1);
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
  for (int i = 0; i < MR; ++i) {
    float* c = C + i * b.ldc;
    __m512 v0 = c0[i], v1 = c1[i];
    if (b.accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
  }
}

// Rows [m0, m0 + MR) of the block against every B panel. The A tile is packed first (kc × kMR,
// 12 KB, stays in L1): read in place, its MR rows (nt, nn) lie a power-of-two stride apart in the
// config-S shapes and alias one L1 set, and in the tn layout every k is a new 4 KB page.
template <int MR>
void tile_row(const Block& b, int64_t m0, float* ap) {
  const int64_t kc = b.kc;
  if (b.acs == 1 && b.ars != 1) {
    // Rows of A are contiguous in k: a 4-row register transpose (zeros in the columns past MR up to
    // a multiple of 4, which the tile never reads). Element by element this was ~9 % of f32 training.
    transpose_rows(ap, kMR, b.A + m0 * b.ars, b.ars, MR, kc);
  } else {  // ars == 1: a(·, k) is contiguous
    // One masked load and store per k (element by element it was ~1/8 of a tn tile row).
    const float* src = b.A + m0;
    const __mmask16 m = __mmask16((1u << MR) - 1);
    for (int64_t k = 0; k < kc; ++k) _mm512_mask_storeu_ps(ap + k * kMR, m, _mm512_maskz_loadu_ps(m, src + k * b.acs));
  }
  float* C = b.C + m0 * b.ldc;
  // The next row tile's A and C lines are fetched into L2 while this one computes, one line per
  // k step of the tiles: a row tile is ~6 us of multiply-adds, and with its operands cold
  // (training's experts, a fresh activation per call) the transpose above otherwise waits on
  // memory with nothing to overlap. (Issued in one batch per tile, the prefetches stalled.)
  const char* lines[kMaxPrefetch];
  int64_t n = 0;
  const int64_t next = m0 + MR, next_rows = std::min<int64_t>(kMR, b.rows - next);
  auto add = [&](const float* p, int64_t floats) {
    const uintptr_t a0 = reinterpret_cast<uintptr_t>(p) & ~uintptr_t(63);
    const uintptr_t a1 = reinterpret_cast<uintptr_t>(p + floats);
    for (uintptr_t a = a0; a < a1 && n < kMaxPrefetch; a += 64) lines[n++] = reinterpret_cast<const char*>(a);
  };
  if (next_rows > 0) {
    if (b.acs == 1 && b.ars != 1)
      for (int64_t i = 0; i < next_rows; ++i) add(b.A + (next + i) * b.ars, kc);
    else
      for (int64_t k = 0; k < kc; ++k) add(b.A + next + k * b.acs, next_rows);
    for (int64_t i = 0; i < next_rows; ++i) add(C + (MR + i) * b.ldc, b.cols);
  }
  const int64_t ntiles = (b.cols + kNR - 1) / kNR;
  for (int64_t n0 = 0, t = 0; n0 < b.cols; n0 += kNR, ++t) {
    const int64_t p0 = n * t / ntiles, p1 = n * (t + 1) / ntiles;
    tile<MR>(b, ap, b.Bp + (n0 / kNR) * kc * kNR, C + n0, std::min(kNR, b.cols - n0), lines + p0, p1 - p0);
  }
}

void block(const Block& b) {
  using RowFn = void (*)(const Block&, int64_t, float*);
  // One instantiation per edge height, so every tile keeps its accumulators in registers.
  static constexpr RowFn kEdge[kMR] = {nullptr,     tile_row<1>, tile_row<2>, tile_row<3>,  tile_row<4>,  tile_row<5>,
                                       tile_row<6>, tile_row<7>, tile_row<8>, tile_row<9>, tile_row<10>, tile_row<11>};
  static_assert(kMR == 12);
  alignas(64) float ap[kKC * kMR];
  int64_t m0 = 0;
  for (; m0 + kMR <= b.rows; m0 += kMR) tile_row<kMR>(b, m0, ap);
  if (m0 < b.rows) kEdge[b.rows - m0](b, m0, ap);
}

}  // namespace

void block_avx512(const Block& b) { block(b); }

void pack_b_cols_avx512(float* dst, const float* B, int64_t ldb, int64_t kc, int64_t cols) {
  for (int64_t p0 = 0; p0 < cols; p0 += kNR) {
    const int64_t nr = std::min(kNR, cols - p0);
    float* d = dst + (p0 / kNR) * kc * kNR;
    transpose_rows(d, kNR, B + p0 * ldb, ldb, nr, kc);
    const int64_t done = (nr + 3) / 4 * 4;  // transpose_rows zero-filled the columns up to here
    if (done < kNR) {
      const __mmask16 m0 = done >= 16 ? __mmask16(0) : __mmask16(0xFFFF << done);
      const __mmask16 m1 = done <= 16 ? __mmask16(0xFFFF) : __mmask16(0xFFFF << (done - 16));
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_mask_storeu_ps(d + k * kNR, m0, _mm512_setzero_ps());
        _mm512_mask_storeu_ps(d + k * kNR + 16, m1, _mm512_setzero_ps());
      }
    }
  }
}

void pack_b_rows_avx512(float* dst, const float* B, int64_t ldb, int64_t kc, int64_t cols) {
  // Row by row (each source row read in order, 4 rows ahead prefetched), spread over the panels:
  // panel by panel, a cold B (training's dW = dyᵀ·x reads a fresh activation) was a strided walk
  // the hardware prefetcher did not keep ahead of.
  const int64_t full = cols / kNR, nr = cols - full * kNR;
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = B + k * ldb;
    if (k + 4 < kc)
      for (int64_t j = 0; j < cols; j += 16) _mm_prefetch(reinterpret_cast<const char*>(src + 4 * ldb + j), _MM_HINT_T0);
    float* d = dst + k * kNR;
    for (int64_t p = 0; p < full; ++p) {
      _mm512_storeu_ps(d + p * kc * kNR, _mm512_loadu_ps(src + p * kNR));
      _mm512_storeu_ps(d + p * kc * kNR + 16, _mm512_loadu_ps(src + p * kNR + 16));
    }
    if (nr > 0) {
      _mm512_storeu_ps(d + full * kc * kNR, _mm512_maskz_loadu_ps(m0, src + full * kNR));
      _mm512_storeu_ps(d + full * kc * kNR + 16, _mm512_maskz_loadu_ps(m1, src + full * kNR + 16));
    }
  }
}

}  // namespace dseek::gemm

#else  // built without AVX-512 flags (non-x86 hosts): gemm.cpp never selects this kernel

#include "dseek/core/error.h"

namespace dseek::gemm {
void block_avx512(const Block&) { throw Error("gemm: AVX-512 kernel not compiled in"); }
void pack_b_rows_avx512(float*, const float*, int64_t, int64_t, int64_t) {
  throw Error("gemm: AVX-512 kernel not compiled in");
}
void pack_b_cols_avx512(float*, const float*, int64_t, int64_t, int64_t) {
  throw Error("gemm: AVX-512 kernel not compiled in");
}
}  // namespace dseek::gemm

#endif
