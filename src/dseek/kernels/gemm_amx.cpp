// Prefill GEMM on AMX tiles (gemm_amx.h): y (B x N) = x · Wᵀ with TDPBF16PS.
//
// Compiled with AVX-512 BF16 / VBMI and AMX flags (CMakeLists.txt) and called only after
// cpu_features() reported them (every AMX CPU has VBMI) and the kernel granted this process the tile
// state (amx_permitted()); helpers live in an anonymous namespace and no library templates are
// instantiated (matmul_kernels.h).
//
// Operands. TDPBF16PS C[m][n] += sum over pairs p of A[m][2p, 2p+1] · B[p][n][0, 1] for a 16 x 16
// float32 C: A = 16 tokens x 32 bf16 (one 64-byte row each, read where prep_bf16 left them), B = 16
// pairs x 16 output rows, so C is a block of y as it is laid out (tokens x outputs) and is stored
// straight into y. The weights are the B side: every 32 output rows (a slab) are decoded once per
// call into a panel of B tiles (two 16-row halves per 32 columns of K, 1 KiB each, 2 KiB per 32 K:
// 128 KiB at K = 2048, in L2), then every pair of 16-token tiles runs over the panel with four C
// tiles (2 x 2: tiles 0-3 accumulate, 4-5 hold activations, 6-7 weights).
//
// Decoding: row formats (BF16, FP8, Q8_0, Q4_0) give each row's 32 values of a K step as 16 bf16
// pairs, and a 16 x 16 word transpose turns 16 rows into a B tile. The _R16 formats are stored as
// 16 rows x 4 codes per 64 bytes, already column-interleaved: each load gives two (Q8_0_R16) or four
// (Q4_0_R16) B rows after a byte permute, widening and scaling, no transpose.
#include "dseek/kernels/gemm_amx.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512VBMI__)

#include <immintrin.h>

#include "dseek/kernels/amx_tiles.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek::mm {
namespace {

constexpr int64_t kSlab = 32;        // output rows decoded per panel: two B tiles side by side
constexpr int64_t kTileWords = 256;  // one B tile: 16 pair rows x 16 words
// Software prefetch distance along each weight stream (bytes). A row-format panel reads 16 rows at
// once, 16 streams: 1 KiB ahead on each kept more prefetches in flight than the core could track;
// a quarter of that (Intel Xeon, pp512, alternated builds): FP8 806 / 792 -> 915 / 920, Q8_0 912 /
// 891 -> 966 / 978 tokens/s, BF16 level. The _R16 panels read one contiguous stream per 16-row
// group and keep 1 KiB (256 B there: level to 4 % slower).
constexpr int64_t kAhead = 1024;
constexpr int64_t kRowAhead = 256;

inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
inline float f16_at(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// ---- row formats: one row's 32 values of K step kc as 16 pair words ----

// Q8_0 / Q4_0 rows (matmul_quant.h): the codes of block kc (block_bytes each, prefetched a fixed
// distance ahead once per 64 bytes) and its f16 scale d, broadcast.
inline const uint8_t* codes_of(const Job& j, int64_t r, int64_t kc, int64_t block_bytes) {
  const uint8_t* c = row_of(j, r) + block_bytes * kc;
  if ((kc * block_bytes) % 64 == 0) prefetch(c + kRowAhead);
  return c;
}
inline __m512 block_scale(const Job& j, int64_t r, int64_t kc) {
  return _mm512_set1_ps(f16_at(row_of(j, r) + j.w_scales_offset + 2 * kc));
}

struct Bf16Rows {
  static __m512i pairs(const Job& j, int64_t r, int64_t kc) {
    const uint8_t* p = row_of(j, r) + 64 * kc;
    prefetch(p + kRowAhead);
    return _mm512_maskz_loadu_epi16(mask32(j.K - 32 * kc), p);
  }
};

struct Q8Rows {
  static __m512i pairs(const Job& j, int64_t r, int64_t kc) {
    const uint8_t* c = codes_of(j, r, kc, 32);
    const __m512 d = block_scale(j, r, kc);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c))));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16))));
    return pairs_along(_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d));
  }
};

struct Q4Rows {
  static __m512i pairs(const Job& j, int64_t r, int64_t kc) {
    const uint8_t* c = codes_of(j, r, kc, 16);
    const __m512 d = block_scale(j, r, kc);
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
    const __m512i eight = _mm512_set1_epi32(8), fifteen = _mm512_set1_epi32(15);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(b, fifteen), eight));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 4), eight));
    return pairs_along(_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d));
  }
};

// B tiles of rows [r0, r0 + nrows) (zeros past nrows) for every K step: tile kc at out + kc * step.
template <class F>
void row_panel(const Job& j, int64_t r0, int64_t nrows, int64_t KC, uint32_t* out, int64_t step) {
  for (int64_t kc = 0; kc < KC; ++kc) {
    __m512 v[16];
    for (int i = 0; i < 16; ++i) v[i] = i < nrows ? _mm512_castsi512_ps(F::pairs(j, r0 + i, kc)) : _mm512_setzero_ps();
    transpose16(v);
    uint32_t* o = out + kc * step;
    for (int p = 0; p < 16; ++p) _mm512_store_ps(o + 16 * p, v[p]);
  }
}

// FP8 rows: exactly matmul_ref's weight decode(q) * scale (e4m3_scaled); NaN codes stay NaN. Each
// row's scale row and each step's scale column are found once per panel and step, not per row and
// step: two 64-bit divisions per 32 weights had made this panel ~half of FP8 prefill on AMX. (It
// repeats row_panel's loop rather than feed it a scale: folded into row_panel with the scale passed
// to a pairs() per row, FP8 pp512 measured 3-5 % slower on the Xeon, 3 alternated rounds.)
void fp8_panel(const Job& j, int64_t r0, int64_t nrows, int64_t KC, uint32_t* out, int64_t step) {
  const float* srow[16];
  for (int64_t i = 0; i < nrows; ++i) srow[i] = j.scale_inv + ((j.row_offset + r0 + i) / j.block) * j.scale_cols;
  for (int64_t kc = 0; kc < KC; ++kc) {
    const int64_t k = 32 * kc, sb = k / j.block;
    const __mmask32 m = k < j.K ? mask32(j.K - k) : __mmask32(0);
    __m512 v[16];
    for (int64_t i = 0; i < 16; ++i) {
      if (i >= nrows) {
        v[i] = _mm512_setzero_ps();
        continue;
      }
      const uint8_t* row = row_of(j, r0 + i);
      if ((kc & 1) == 0) prefetch(row + k + kRowAhead);
      __m512 lo, hi;
      e4m3_scaled(row + k, m, srow[i][sb], lo, hi);
      v[i] = _mm512_castsi512_ps(pairs_along(lo, hi));
    }
    transpose16(v);
    uint32_t* o = out + kc * step;
    for (int p = 0; p < 16; ++p) _mm512_store_ps(o + 16 * p, v[p]);
  }
}

// ---- interleaved formats: group of 16 rows at r0 (matmul_quant.h) ----

// Both formats put row r's 4 codes of a load at bytes 4r .. 4r + 3. One vpermb (zeroing) moves the
// codes of one column pair of 8 rows into the low bytes of 16 int32 lanes, in the order of a B row's
// halves (lane 2i + c = row i's column c of the pair), so that one vcvtne2ps2bf16 of the 8-row halves
// is the B row, and the offset is folded into an FMA: u * d - o * d = (u - o) * d exactly (o * d
// is exact for a power-of-two o, and the FMA rounds once). Byte sources: byte0 = the pair's first
// byte within a row (0 or 2), rows 0-7 or 8-15.
inline __m512i pair_bytes(int byte0, int rows8) {
  alignas(64) int8_t idx[64] = {};
  for (int lane = 0; lane < 16; ++lane) idx[4 * lane] = int8_t(4 * (8 * rows8 + lane / 2) + byte0 + lane % 2);
  return _mm512_load_si512(idx);
}
constexpr __mmask64 kLowBytes = 0x1111111111111111ull;  // byte 0 of every int32 lane

// Per block: the scales of rows 0-7 and 8-15 spread to lane pairs (lane 2i + c: row i), times 1 and -o.
struct PairScales {
  __m512 d[2], od[2];
  PairScales(const uint8_t* f16x16, float o) {
    const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(f16x16)));
    for (int h = 0; h < 2; ++h) {
      const __m512i idx = _mm512_set_epi32(8 * h + 7, 8 * h + 7, 8 * h + 6, 8 * h + 6, 8 * h + 5, 8 * h + 5, 8 * h + 4,
                                           8 * h + 4, 8 * h + 3, 8 * h + 3, 8 * h + 2, 8 * h + 2, 8 * h + 1, 8 * h + 1,
                                           8 * h, 8 * h);
      d[h] = _mm512_permutexvar_ps(idx, s);
      od[h] = _mm512_mul_ps(d[h], _mm512_set1_ps(-o));
    }
  }
  __m512 value(__m512i u, int h) const { return _mm512_fmadd_ps(_mm512_cvtepi32_ps(u), d[h], od[h]); }
};

// Q8_0_R16: per block, 8 loads of 16 rows x 4 codes (stored + 128); load g gives pair rows 2g, 2g + 1.
void q8_r16_panel(const Job& j, int64_t r0, int64_t, int64_t KC, uint32_t* out, int64_t step) {
  const uint8_t* g0 = j.w + r0 * j.w_row_bytes;
  const uint8_t* scales = g0 + KC * 512;
  const __m512i sel[2][2] = {{pair_bytes(0, 0), pair_bytes(0, 1)}, {pair_bytes(2, 0), pair_bytes(2, 1)}};
  for (int64_t kc = 0; kc < KC; ++kc) {
    const PairScales ps(scales + 32 * kc, 128.f);
    const uint8_t* c = g0 + 512 * kc;
    uint32_t* o = out + kc * step;
    for (int g = 0; g < 8; ++g) {
      if ((g & 1) == 0) prefetch(c + 64 * g + kAhead);
      const __m512i v = _mm512_loadu_si512(c + 64 * g);
      for (int p = 0; p < 2; ++p) {
        const __m512 lo = ps.value(_mm512_maskz_permutexvar_epi8(kLowBytes, sel[p][0], v), 0);
        const __m512 hi = ps.value(_mm512_maskz_permutexvar_epi8(kLowBytes, sel[p][1], v), 1);
        _mm512_store_si512(o + 16 * (2 * g + p), pairs_along(lo, hi));
      }
    }
  }
}

// Q4_0_R16: per block, 4 loads of 16 rows x 4 bytes; byte i of load g holds columns 4g + i (low
// nibble) and 16 + 4g + i (high), value = nibble - 8: pair rows 2g, 2g + 1 (low), 8 + 2g, 9 + 2g (high).
void q4_r16_panel(const Job& j, int64_t r0, int64_t, int64_t KC, uint32_t* out, int64_t step) {
  const uint8_t* g0 = j.w + r0 * j.w_row_bytes;
  const uint8_t* scales = g0 + KC * 256;
  const __m512i sel[2][2] = {{pair_bytes(0, 0), pair_bytes(0, 1)}, {pair_bytes(2, 0), pair_bytes(2, 1)}};
  const __m512i low = _mm512_set1_epi32(15);
  for (int64_t kc = 0; kc < KC; ++kc) {
    const PairScales ps(scales + 32 * kc, 8.f);
    const uint8_t* c = g0 + 256 * kc;
    uint32_t* o = out + kc * step;
    for (int g = 0; g < 4; ++g) {
      if ((g & 1) == 0) prefetch(c + 64 * g + kAhead);
      const __m512i v = _mm512_loadu_si512(c + 64 * g);
      for (int p = 0; p < 2; ++p) {
        const __m512i b0 = _mm512_maskz_permutexvar_epi8(kLowBytes, sel[p][0], v);
        const __m512i b1 = _mm512_maskz_permutexvar_epi8(kLowBytes, sel[p][1], v);
        _mm512_store_si512(o + 16 * (2 * g + p), pairs_along(ps.value(_mm512_and_si512(b0, low), 0),
                                                             ps.value(_mm512_and_si512(b1, low), 1)));
        _mm512_store_si512(o + 16 * (8 + 2 * g + p), pairs_along(ps.value(_mm512_srli_epi32(b0, 4), 0),
                                                                 ps.value(_mm512_srli_epi32(b1, 4), 1)));
      }
    }
  }
}

// ---- the tile loop ----

// Accumulator tile C (16 tokens from tok0, 16 outputs from col0) into y; partial tiles through a
// buffer so that nothing past B tokens or the slab's columns is written.
template <int C>
inline void store_c(const Job& j, int64_t tok0, int64_t col0, int64_t ncols) {
  const int64_t ntok = min64(16, j.B - tok0);
  float* y = j.y + tok0 * j.N + col0;
  if (ntok == 16 && ncols == 16) {
    amx_store<C>(y, j.N * 4);
    return;
  }
  alignas(64) float buf[256];
  amx_store<C>(buf, 64);
  const __mmask16 m = mask16(ncols);
  for (int64_t i = 0; i < ntok; ++i) _mm512_mask_storeu_ps(y + i * j.N, m, _mm512_load_ps(buf + 16 * i));
}

// Tokens [16 t, 16 t + 16 TR) x the slab's outputs [s0, s0 + 16 TC) over every K step of the panel.
template <int TR, int TC>
void tiles(const Job& j, const uint32_t* panel, int64_t KC, int64_t t, int64_t s0, int64_t cols) {
  _tile_zero(0);
  if (TC > 1) _tile_zero(1);
  if (TR > 1) _tile_zero(2);
  if (TR > 1 && TC > 1) _tile_zero(3);
  const uint8_t* a0 = j.act + 16 * t * j.act_stride;
  const uint8_t* a1 = a0 + 16 * j.act_stride;
  for (int64_t kc = 0; kc < KC; ++kc) {
    const uint32_t* b = panel + kc * 2 * kTileWords;
    _tile_loadd(4, a0 + 64 * kc, j.act_stride);
    _tile_loadd(6, b, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (TC > 1) {
      _tile_loadd(7, b + kTileWords, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (TR > 1) {
      _tile_loadd(5, a1 + 64 * kc, j.act_stride);
      _tile_dpbf16ps(2, 5, 6);
      if (TC > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  store_c<0>(j, 16 * t, s0, min64(16, cols));
  if (TC > 1) store_c<1>(j, 16 * t, s0 + 16, cols - 16);
  if (TR > 1) {
    store_c<2>(j, 16 * t + 16, s0, min64(16, cols));
    if (TC > 1) store_c<3>(j, 16 * t + 16, s0 + 16, cols - 16);
  }
}

using PanelFn = void (*)(const Job&, int64_t r0, int64_t nrows, int64_t KC, uint32_t* out, int64_t step);

template <PanelFn Decode>
void gemm(const Job& j, int64_t n0, int64_t n1) {
  const int64_t KC = (j.K + 31) / 32, T = (j.B + 15) / 16;
  thread_local PanelScratch scratch;
  auto* panel = static_cast<uint32_t*>(scratch.get(size_t(KC * 2 * kTileWords * 4)));
  amx_load_config();
  for (int64_t s0 = n0; s0 < n1; s0 += kSlab) {
    const int64_t cols = min64(kSlab, n1 - s0);
    for (int64_t h = 0; h * 16 < cols; ++h)
      Decode(j, s0 + 16 * h, min64(16, cols - 16 * h), KC, panel + h * kTileWords, 2 * kTileWords);
    for (int64_t t = 0; t < T; t += 2) {
      const bool two_tok = t + 1 < T, two_col = cols > 16;
      if (two_tok && two_col) tiles<2, 2>(j, panel, KC, t, s0, cols);
      else if (two_tok) tiles<2, 1>(j, panel, KC, t, s0, cols);
      else if (two_col) tiles<1, 2>(j, panel, KC, t, s0, cols);
      else tiles<1, 1>(j, panel, KC, t, s0, cols);
    }
  }
  _tile_release();
}

}  // namespace

AmxKernels amx_kernels() {
  AmxKernels k;
  k.bf16 = &gemm<&row_panel<Bf16Rows>>;
  k.fp8 = &gemm<&fp8_panel>;
  k.q8_0 = &gemm<&row_panel<Q8Rows>>;
  k.q4_0 = &gemm<&row_panel<Q4Rows>>;
  k.q8_0_r16 = &gemm<&q8_r16_panel>;
  k.q4_0_r16 = &gemm<&q4_r16_panel>;
  return k;
}

}  // namespace dseek::mm

#else  // not built for AMX: matmul.cpp never asks for these kernels

namespace dseek::mm {
AmxKernels amx_kernels() { return AmxKernels{}; }
}  // namespace dseek::mm

#endif
