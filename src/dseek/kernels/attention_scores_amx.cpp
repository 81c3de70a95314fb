// Decode attention's scores on AMX tiles (attention_scores_amx.h). A decode step scores every cache
// row against H queries: as FMA dot products that was about half of the decode kernel's time at
// 4096 positions; as TDPBF16PS (16 rows x 16 heads x 32 values per instruction) the rows' conversion
// to bf16 is most of what is left. Compiled with AMX-BF16 and AVX-512 BF16 flags (CMakeLists.txt);
// helpers in an anonymous namespace, no library templates (matmul_kernels.h).
#include "dseek/kernels/attention_scores_amx.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include "dseek/kernels/amx_tiles.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek {

namespace {

// Row j of the A panel: L values of a cache row as bf16, zeros up to the panel width lp.
void row_to_bf16(uint16_t* out, const float* row, int64_t L, int64_t lp) {
  for (int64_t k = 0; k < lp; k += 32) {
    const __m512 lo = k < L ? _mm512_maskz_loadu_ps(mm::mask16(L - k), row + k) : _mm512_setzero_ps();
    const __m512 hi = k + 16 < L ? _mm512_maskz_loadu_ps(mm::mask16(L - k - 16), row + k + 16) : _mm512_setzero_ps();
    _mm512_store_si512(out + k, pairs_along(lo, hi));
  }
}
void row_to_bf16(uint16_t* out, const uint16_t* row, int64_t L, int64_t lp) {
  for (int64_t k = 0; k < lp; k += 32)
    _mm512_store_si512(out + k, k < L ? _mm512_maskz_loadu_epi16(mm::mask32(L - k), row + k) : _mm512_setzero_si512());
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

void amx_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const void* const* rows, bool rows_bf16,
                int64_t jn) {
  const int64_t steps = (L + 31) / 32, lp = steps * 32;
  thread_local mm::PanelScratch scratch;
  auto* a = static_cast<uint16_t*>(scratch.get(size_t(16 * lp) * 2));
  for (int64_t j0 = 0; j0 < jn; j0 += 16) {
    const int64_t nr = mm::min64(16, jn - j0);
    for (int64_t r = 0; r < 16; ++r) {
      uint16_t* out = a + r * lp;
      if (r >= nr)
        for (int64_t k = 0; k < lp; k += 32) _mm512_store_si512(out + k, _mm512_setzero_si512());
      else if (rows_bf16)
        row_to_bf16(out, static_cast<const uint16_t*>(rows[j0 + r]), L, lp);
      else
        row_to_bf16(out, static_cast<const float*>(rows[j0 + r]), L, lp);
    }
    _tile_zero(0);
    for (int64_t c = 0; c < steps; ++c) {
      _tile_loadd(4, a + 32 * c, lp * 2);
      _tile_loadd(6, qpack + 256 * c, 64);
      _tile_dpbf16ps(0, 4, 6);
    }
    _tile_stored(0, S[j0], 64);
  }
}

}  // namespace dseek

#else  // not built for AMX: decode_attend_rows never asks for these

#include "dseek/core/error.h"

namespace dseek {
void amx_scores_begin() { throw Error("attention: AMX scores not compiled in"); }
void amx_scores_end() {}
void amx_scores_pack(uint32_t*, const float*, int64_t) { throw Error("attention: AMX scores not compiled in"); }
void amx_scores(float (*)[16], const uint32_t*, int64_t, const void* const*, bool, int64_t) {
  throw Error("attention: AMX scores not compiled in");
}
}  // namespace dseek

#endif
