// Decode attention's products with vdpbf16ps over a bf16 KV cache (attention_decode_bf16.h). Each
// instruction does 32 multiply-adds (pairs of bf16 values into float32 lanes) where the float32
// kernel's FMA does 16, and the rows are multiplied as stored instead of widened first.
//
// Scores: lanes are pairs of columns, as the float32 kernel's lanes are columns: register blocks of
// 3 rows x 8 heads, then the transposing reduction (lane h = head h). Weighted sum: lanes are
// columns and the pairs run over rows, so two rows' 32 columns are interleaved word by word
// (vpunpcklwd / vpunpckhwd: columns 8i .. 8i + 3 in the low half's lanes, 8i + 4 .. 8i + 7 in the
// high half's) and o is read and written through the same permutation; the probabilities of the two
// rows for every head are one pair word, broadcast. Compiled with AVX-512 BF16 flags
// (CMakeLists.txt); helpers in an anonymous namespace, no library templates (matmul_kernels.h).
#include "dseek/kernels/attention_decode_bf16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include "dseek/kernels/bf16_pairs_avx512.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek {

namespace {

using mm::mask16;
using mm::mask32;

constexpr int kHeads = 16;
constexpr int kG = 8;          // heads per register block
constexpr int kScoreRows = 3;  // rows per score block: 3 x 8 accumulators
constexpr int64_t kRowsAhead = 4;

inline __mmask32 mask32_from(int64_t n) { return n <= 0 ? __mmask32(0) : mask32(n); }

// 32 values of a bf16 row from column k, zeros from column `end` on.
inline __m512i row32(const uint16_t* row, int64_t k, int64_t end) {
  return k + 32 <= end ? _mm512_loadu_si512(row + k) : _mm512_maskz_loadu_epi16(mask32_from(end - k), row + k);
}

// Scores of rows[jj .. jj + NR) for heads [g, g + kG): acc[r][h] over the row's L values.
template <int NR>
inline void score_block(__m512 (&acc)[NR][kG], const uint32_t* qg, int64_t steps, int64_t L, const uint16_t* const* c,
                        const char* const* ahead) {
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int h = 0; h < kG; ++h) acc[r][h] = _mm512_setzero_ps();
  for (int64_t s = 0; s < steps; ++s) {
    if (ahead)  // the rows come from memory: the first touch of each line waited on it
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) _mm_prefetch(ahead[r] + 64 * s, _MM_HINT_T0);
    __m512bh cv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) cv[r] = (__m512bh)row32(c[r], 32 * s, L);
#pragma GCC unroll 8
    for (int h = 0; h < kG; ++h) {
      __m512i qv = _mm512_load_si512(qg + (h * steps + s) * 16);
      __asm__("" : "+v"(qv));  // one load for the NR rows, not one folded into each product
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[r][h] = _mm512_dpbf16_ps(acc[r][h], (__m512bh)qv, cv[r]);
    }
  }
}

template <int NR>
inline void score_rows(float (*S)[16], const uint32_t* qpack, int64_t L, const uint16_t* const* rows, int64_t jj,
                       int64_t got) {
  const int64_t steps = (L + 31) / 32;
  const char* ahead[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    const int64_t a = jj + r + kRowsAhead;
    ahead[r] = reinterpret_cast<const char*>(rows[a < got ? a : got - 1]);
  }
  __m512 part[NR][kHeads];
  for (int g = 0; g < kHeads; g += kG) {
    __m512 acc[NR][kG];
    score_block<NR>(acc, qpack + g * steps * 16, steps, L, rows + jj, g == 0 ? ahead : nullptr);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
      for (int h = 0; h < kG; ++h) part[r][g + h] = acc[r][h];
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) _mm512_store_ps(S[jj + r], reduce16(part[r]));
}

// Lane t of the interleaved halves holds column col_lo(t) (low half: vpunpcklwd) or col_lo(t) + 4.
// As vpermt2ps indices over (columns 0-15, columns 16-31) and back.
inline __m512i to_lo_idx() { return _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0); }
inline __m512i to_hi_idx() { return _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4); }
// Column c of 0-15 (resp. 16-31) from lane 4 (c / 8) + c % 4 of lo (c % 8 < 4) or of hi (index + 16).
inline __m512i from_a_idx() { return _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0); }
inline __m512i from_b_idx() { return _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8); }

}  // namespace

void bf16dot_pack(uint32_t* qpack, const float* q, int64_t L) {
  const int64_t steps = (L + 31) / 32;
  for (int h = 0; h < kHeads; ++h) {
    const float* qh = q + h * L;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t k = 32 * s;
      const __m512 lo = _mm512_maskz_loadu_ps(mask16(L - k), qh + k);
      const __m512 hi = k + 16 < L ? _mm512_maskz_loadu_ps(mask16(L - k - 16), qh + k + 16) : _mm512_setzero_ps();
      _mm512_store_si512(qpack + (h * steps + s) * 16, pairs_along(lo, hi));
    }
  }
}

void bf16dot_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const uint16_t* const* rows, int64_t jn,
                    int64_t got) {
  int64_t jj = 0;
  for (; jj + kScoreRows <= jn; jj += kScoreRows) score_rows<kScoreRows>(S, qpack, L, rows, jj, got);
  for (; jj < jn; ++jj) score_rows<1>(S, qpack, L, rows, jj, got);
}

void bf16dot_weigh(float* o, int64_t R, int64_t hn, const float* alpha, bool rescale, const float (*P)[16],
                   const uint16_t* const* rows, int64_t jn) {
  // Word h of pw[i] = (P[2i][h], P[2i + 1][h]) as bf16; a missing last row has probability 0.
  const int64_t np = (jn + 1) / 2;
  alignas(64) uint32_t pw[32][16];
  for (int64_t i = 0; i < np; ++i) {
    const __m512 lo = _mm512_load_ps(P[2 * i]);
    const __m512 hi = 2 * i + 1 < jn ? _mm512_load_ps(P[2 * i + 1]) : _mm512_setzero_ps();
    _mm512_store_si512(pw[i], pairs_across(lo, hi));
  }
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t g0 = 0; g0 < hn; g0 += kG) {
    const int gn = int(hn - g0 < kG ? hn - g0 : kG);
    for (int64_t k = 0; k < R; k += 32) {
      const __mmask16 ma = mask16(R - k), mb = k + 16 < R ? mask16(R - k - 16) : __mmask16(0);
      __m512 lo[kG], hi[kG];
#pragma GCC unroll 8
      for (int h = 0; h < kG; ++h) {
        if (h >= gn) {
          lo[h] = hi[h] = _mm512_setzero_ps();
          continue;
        }
        const float* oh = o + (g0 + h) * R + k;
        __m512 a = _mm512_maskz_loadu_ps(ma, oh), b = _mm512_maskz_loadu_ps(mb, oh + 16);
        if (rescale) {
          const __m512 s = _mm512_set1_ps(alpha[g0 + h]);
          a = _mm512_mul_ps(a, s);
          b = _mm512_mul_ps(b, s);
        }
        lo[h] = _mm512_permutex2var_ps(a, to_lo_idx(), b);
        hi[h] = _mm512_permutex2var_ps(a, to_hi_idx(), b);
      }
      for (int64_t i = 0; i < np; ++i) {
        const __m512i r0 = row32(rows[2 * i], k, R);
        const __m512i r1 = 2 * i + 1 < jn ? row32(rows[2 * i + 1], k, R) : zero;
        const __m512bh plo = (__m512bh)_mm512_unpacklo_epi16(r0, r1), phi = (__m512bh)_mm512_unpackhi_epi16(r0, r1);
#pragma GCC unroll 8
        for (int h = 0; h < kG; ++h) {
          const __m512bh p = (__m512bh)_mm512_set1_epi32(int(pw[i][g0 + h]));
          lo[h] = _mm512_dpbf16_ps(lo[h], p, plo);
          hi[h] = _mm512_dpbf16_ps(hi[h], p, phi);
        }
      }
#pragma GCC unroll 8
      for (int h = 0; h < kG; ++h) {
        if (h >= gn) break;
        float* oh = o + (g0 + h) * R + k;
        _mm512_mask_storeu_ps(oh, ma, _mm512_permutex2var_ps(lo[h], from_a_idx(), hi[h]));
        _mm512_mask_storeu_ps(oh + 16, mb, _mm512_permutex2var_ps(lo[h], from_b_idx(), hi[h]));
      }
    }
  }
}

}  // namespace dseek

#else  // not built with AVX-512 BF16: decode_attend_rows never asks for these

#include "dseek/core/error.h"

namespace dseek {
void bf16dot_pack(uint32_t*, const float*, int64_t) { throw Error("attention: AVX-512 BF16 products not compiled in"); }
void bf16dot_scores(float (*)[16], const uint32_t*, int64_t, const uint16_t* const*, int64_t, int64_t) {
  throw Error("attention: AVX-512 BF16 products not compiled in");
}
void bf16dot_weigh(float*, int64_t, int64_t, const float*, bool, const float (*)[16], const uint16_t* const*, int64_t) {
  throw Error("attention: AVX-512 BF16 products not compiled in");
}
}  // namespace dseek

#endif
