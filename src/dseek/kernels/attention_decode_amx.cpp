// Decode attention on AMX tiles over a bf16 KV cache (attention_decode_amx.h). As FMA dot products
// the scores were about half of the decode kernel's time and the weighted sum the other half; as
// TDPBF16PS, 16 rows x 16 heads x 32 values per instruction, with the A tiles of the scores loaded
// straight from the cache where 16 rows lie at one stride (a paged block). Over a float32 cache the
// rows' conversion to bf16 cost what the tiles saved (attention_bench: level), so that cache keeps
// the float32 kernel. Compiled with AMX-BF16 and AVX-512 BF16 flags (CMakeLists.txt); helpers in an
// anonymous namespace, no library templates (matmul_kernels.h).
#include "dseek/kernels/attention_decode_amx.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include "dseek/kernels/amx_tiles.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek {

namespace {

// Row j of the A panel: L bf16 values of a cache row, zeros up to the panel width lp.
void row_panel(uint16_t* out, const uint16_t* row, int64_t L, int64_t lp) {
  for (int64_t k = 0; k < lp; k += 32)
    _mm512_store_si512(out + k, k < L ? _mm512_maskz_loadu_epi16(mm::mask32(L - k), row + k) : _mm512_setzero_si512());
}

// 16 values of a bf16 row from column k, widened to float32 (exact), zeros past R.
inline __m512 row16(const uint16_t* row, int64_t k, int64_t R) {
  const __m256i h = _mm256_maskz_loadu_epi16(mm::mask16(R - k), row + k);
  return mm::widen_bf16(h);
}

}  // namespace

void amx_scores_begin() { amx_load_config(); }
void amx_scores_end() { _tile_release(); }

void amx_scores_pack(uint32_t* qpack, const float* q, int64_t L) {
  for (int64_t k = 0; k < L; k += 32) {
    // Row h: head h's 32 values as 16 pair words; transposed, row p holds pair p of every head.
    __m512 r[16];
    for (int h = 0; h < 16; ++h) {
      const float* qh = q + h * L;
      const __m512 lo = _mm512_maskz_loadu_ps(mm::mask16(L - k), qh + k);
      const __m512 hi = k + 16 < L ? _mm512_maskz_loadu_ps(mm::mask16(L - k - 16), qh + k + 16) : _mm512_setzero_ps();
      r[h] = _mm512_castsi512_ps(pairs_along(lo, hi));
    }
    transpose16(r);
    uint32_t* tile = qpack + (k / 32) * 256;
    for (int p = 0; p < 16; ++p) _mm512_store_ps(reinterpret_cast<float*>(tile + 16 * p), r[p]);
  }
}

void amx_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const uint16_t* const* rows, int64_t jn) {
  const int64_t steps = (L + 31) / 32, lp = steps * 32;
  // Two A panels, alternating: a tile load waits for the stores it reads to leave the store buffer,
  // so the next 16 rows are converted while the previous ones multiply.
  thread_local mm::PanelScratch scratch;
  auto* panels = static_cast<uint16_t*>(scratch.get(size_t(2 * 16 * lp) * 2));
  for (int64_t j0 = 0, i = 0; j0 < jn; j0 += 16, ++i) {
    const int64_t nr = mm::min64(16, jn - j0);
    // 16 rows at one stride (a paged block, a contiguous cache) and whole 32-value steps: the A
    // tiles load straight from the cache.
    // (Addresses compared as integers: the rows may come from different allocations.)
    const uint16_t* base = rows[j0];
    const auto at = [&](int64_t r) { return reinterpret_cast<uintptr_t>(rows[j0 + r]); };
    int64_t stride = 0;  // elements
    if (nr == 16 && L % 32 == 0 && at(1) > at(0) && (at(1) - at(0)) % 2 == 0) {
      stride = int64_t(at(1) - at(0)) / 2;
      for (int64_t r = 2; stride > 0 && r < 16; ++r)
        if (at(r) != at(0) + uintptr_t(2 * r * stride)) stride = 0;
    }
    uint16_t* a = panels + (i & 1) * 16 * lp;
    if (stride == 0) {
      for (int64_t r = 0; r < 16; ++r) {
        uint16_t* out = a + r * lp;
        if (r >= nr)
          for (int64_t k = 0; k < lp; k += 32) _mm512_store_si512(out + k, _mm512_setzero_si512());
        else
          row_panel(out, rows[j0 + r], L, lp);
      }
      base = a;
      stride = lp;
    }
    _tile_zero(0);
    for (int64_t c = 0; c < steps; ++c) {
      _tile_loadd(4, base + 32 * c, stride * 2);
      _tile_loadd(6, qpack + 256 * c, 64);
      _tile_dpbf16ps(0, 4, 6);
    }
    _tile_stored(0, S[j0], 64);
  }
}

void amx_weigh(float* o, int64_t R, int64_t hn, const float* alpha, bool rescale, const float (*P)[16],
               const uint16_t* const* rows, int64_t jn) {
  if (rescale)
    for (int64_t h = 0; h < hn; ++h) {
      const __m512 a = _mm512_set1_ps(alpha[h]);
      float* oh = o + h * R;
      for (int64_t k = 0; k < R; k += 16) {
        const __mmask16 m = mm::mask16(R - k);
        _mm512_mask_storeu_ps(oh + k, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, oh + k), a));
      }
    }
  // A tiles (heads x 32 rows of the chunk each): row h = head h's probabilities as pairs of rows.
  const int64_t steps = (jn + 31) / 32;
  alignas(64) uint32_t a[2][256];
  for (int64_t s = 0; s < steps; ++s) {
    __m512 r[16];
    for (int p = 0; p < 16; ++p) {
      const int64_t j = 32 * s + 2 * p;
      const __m512 lo = j < jn ? _mm512_load_ps(P[j]) : _mm512_setzero_ps();
      const __m512 hi = j + 1 < jn ? _mm512_load_ps(P[j + 1]) : _mm512_setzero_ps();
      r[p] = _mm512_castsi512_ps(pairs_across(lo, hi));  // word h = (P[j][h], P[j + 1][h])
    }
    transpose16(r);
    for (int h = 0; h < 16; ++h) _mm512_store_ps(reinterpret_cast<float*>(a[s] + 16 * h), r[h]);
  }
  // B tiles of the whole chunk first (16 columns x 32 rows each, block-major): built in one pass and
  // read by the tile loads long after, instead of a buffer rewritten before every tile load.
  const int64_t blocks = (R + 15) / 16;
  thread_local mm::PanelScratch scratch;
  auto* bt = static_cast<uint32_t*>(scratch.get(size_t(blocks * steps * 256) * 4));
  for (int64_t s = 0; s < steps; ++s)
    for (int p = 0; p < 16; ++p) {  // B row p: word d = (row 2p, row 2p + 1) at column k + d
      const int64_t j = 32 * s + 2 * p;
      for (int64_t k = 0; k < R; k += 16) {
        const __m512 lo = j < jn ? row16(rows[j], k, R) : _mm512_setzero_ps();
        const __m512 hi = j + 1 < jn ? row16(rows[j + 1], k, R) : _mm512_setzero_ps();
        _mm512_store_si512(bt + ((k / 16) * steps + s) * 256 + 16 * p, pairs_across(lo, hi));
      }
    }
  // Per 16 columns of the rows: C = those columns of o (16 heads), += A x B per 32 rows, stored back.
  alignas(64) float c[16][16];
  const bool whole_heads = hn == 16;
  for (int64_t k = 0; k < R; k += 16) {
    const bool direct = whole_heads && k + 16 <= R;
    if (direct) {
      _tile_loadd(0, o + k, R * 4);
    } else {
      const __mmask16 m = mm::mask16(R - k);
      for (int64_t h = 0; h < 16; ++h)
        _mm512_store_ps(c[h], h < hn ? _mm512_maskz_loadu_ps(m, o + h * R + k) : _mm512_setzero_ps());
      _tile_loadd(0, c, 64);
    }
    for (int64_t s = 0; s < steps; ++s) {
      _tile_loadd(4, a[s], 64);
      _tile_loadd(6, bt + ((k / 16) * steps + s) * 256, 64);
      _tile_dpbf16ps(0, 4, 6);
    }
    if (direct) {
      _tile_stored(0, o + k, R * 4);
    } else {
      _tile_stored(0, c, 64);
      const __mmask16 m = mm::mask16(R - k);
      for (int64_t h = 0; h < hn; ++h) _mm512_mask_storeu_ps(o + h * R + k, m, _mm512_load_ps(c[h]));
    }
  }
}

}  // namespace dseek

#else  // not built for AMX: decode_attend_rows never asks for these

#include "dseek/core/error.h"

namespace dseek {
void amx_scores_begin() { throw Error("attention: AMX scores not compiled in"); }
void amx_scores_end() {}
void amx_scores_pack(uint32_t*, const float*, int64_t) { throw Error("attention: AMX scores not compiled in"); }
void amx_scores(float (*)[16], const uint32_t*, int64_t, const uint16_t* const*, int64_t) {
  throw Error("attention: AMX scores not compiled in");
}
void amx_weigh(float*, int64_t, int64_t, const float*, bool, const float (*)[16], const uint16_t* const*, int64_t) {
  throw Error("attention: AMX scores not compiled in");
}
}  // namespace dseek

#endif
