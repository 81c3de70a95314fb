// Int8 prefill GEMM for Q8_0 / Q4_0 weights (AVX-512 VNNI), see gemm_q8.h and docs/kernels.md.
//
// Prefill is bound by multiply-add throughput. vpdpbusd does 64 int8 multiply-adds per instruction,
// vdpbf16ps 32, at the same rate on this CPU (Zen 5, ad-hoc harness: 425 vs 213 GMAC/s per core),
// so the block formats run faster as integer products than widened to bf16. As in the BF16 GEMM
// (matmul_avx512.cpp), each task packs 32 weight rows x up to 8192 columns at a time into panels
// that hold, per group of 4 columns, the 4 code bytes of 32 rows as 32 words (a 16 x 16 word
// transpose per 16 rows and 64 columns; Q4_0 nibbles are unpacked to bytes here, so both formats
// share one micro-kernel), plus each block's 32 float scales; the interleaved Q8_0_R16 / Q4_0_R16
// are stored in that order already and are read in place (qgemm_r16). A register tile of 6 tokens x 32 rows
// keeps 12 int32 accumulators for the current block and 12 float ones: per group of 4 columns,
// 2 panel loads, 6 broadcast activation words and 12 vpdpbusd; per block of 32 columns, every
// int32 sum is converted and added as float(dot) * (d_w * dx).
//
// Compiled with AVX-512 flags (CMakeLists.txt) and only called after cpu_features() said yes, so
// this file includes nothing but intrinsics and plain-struct headers and keeps every helper in an
// anonymous namespace (see matmul_kernels.h for why).
#include "dseek/kernels/gemm_q8.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <type_traits>

#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek::mm {
namespace {

constexpr int64_t kTok = kQGemmTokens;
constexpr int64_t kRows = 32;       // weight rows per panel (two 16-lane vectors)
constexpr int64_t kCols = 256;      // columns per packed panel: 8 blocks, 8 KB of codes + 1 KB of scales
// Blocks of 32 columns that every activation tile runs over 32 rows in one call (8192 columns:
// 272 KiB of Q8_0_R16, 288 KiB of packed panels; in L2 for the tiles after the first).
constexpr int64_t kStreamBlocks = 256;

// The piece after rows [r0, r0 + kRows) x blocks [j0, j0 + jn) in the sweep both GEMMs make (the
// rest of K for these rows, else the next rows from block 0): whose lines to fetch ahead.
struct NextPiece {
  int64_t r0, j0, blocks;
};
NextPiece next_piece(int64_t r0, int64_t j0, int64_t jn, int64_t nb) {
  const bool last = j0 + jn >= nb;
  const int64_t j = last ? 0 : j0 + jn;
  return {last ? r0 + kRows : r0, j, min64(kStreamBlocks, nb - j)};
}

struct Panel {
  alignas(64) uint32_t codes[kCols / 4 * kRows];  // [group][row]: 4 unsigned codes (value + 128)
  alignas(64) float dw[kCols / 32 * kRows];       // [block][row]: the weight scale d
};

// 64 columns of a stored row from column k (n <= 64 of them exist, a multiple of 32), as bytes
// value + 128 (vpdpbusd multiplies unsigned by signed bytes: the activations stay signed, and each
// block's sum starts from -128 * the sum of its activation codes).
struct CodesQ8 {
  static constexpr int kShift = 0;  // code bytes of column k start at byte k >> kShift
  static __m512i load64(const uint8_t* row, int64_t k, int64_t n) {
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask64(n), row + k), _mm512_set1_epi8(char(0x80)));
  }
};
struct CodesQ4 {
  static constexpr int kShift = 1;
  static __m512i load64(const uint8_t* row, int64_t k, int64_t n) {
    const __m256i v = _mm256_maskz_loadu_epi8(mask32(n / 2), row + k / 2);  // one or two blocks
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);  // 128-bit lanes lo0 lo1 hi0 hi1
    const __m512i o = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));    // lo0 hi0 lo1 hi1: column order
    return _mm512_add_epi8(o, _mm512_set1_epi8(120));  // nibble c is the value c - 8
  }
};

// Panel of rows [r0, r0 + nr) (nr <= kRows, zeros beyond) and columns [k0, k0 + kc) of W.
template <class C>
void pack_panel(Panel& p, const Job& j, int64_t r0, int64_t nr, int64_t k0, int64_t kc) {
  for (int h = 0; h < 2; ++h)
    for (int64_t k = 0; k < kc; k += 64) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = 16 * h + i;
        r[i] = row < nr ? _mm512_castsi512_ps(C::load64(row_of(j, r0 + row), k0 + k, min64(64, kc - k)))
                        : _mm512_setzero_ps();
      }
      transpose16(r);  // r[q] = group k / 4 + q of the 16 rows
      const int64_t groups = min64(16, (kc - k) / 4);
      for (int q = 0; q < groups; ++q)
        _mm512_store_ps(reinterpret_cast<float*>(p.codes + (k / 4 + q) * kRows + 16 * h), r[q]);
    }
  const int64_t nb = kc / 32;
  for (int64_t i = 0; i < kRows; ++i) {
    alignas(64) float d[16] = {};
    if (i < nr) {
      const uint8_t* s = row_of(j, r0 + i) + j.w_scales_offset + 2 * (k0 / 32);
      _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(nb), s)));
    }
    for (int64_t b = 0; b < nb; ++b) p.dw[b * kRows + i] = d[b];
  }
}

// Where a register tile reads its weight rows, 16 per vector h: a packed Panel (32 rows), or
// Q8_0_R16 / Q4_0_R16 groups as they are stored (matmul_quant.h: the same words and, as f16, the same
// scales). Block b counts from the tile's first block.
struct PanelSrc {
  static constexpr int kVecs = 2;
  static constexpr bool kNibbles = false;
  const Panel* p;  // consecutive panels of 8 blocks each
  const uint32_t* codes(int64_t b, int g, int h) const { return p[b >> 3].codes + ((b & 7) * 8 + g) * kRows + 16 * h; }
  __m512 scales(int64_t b, int h) const { return _mm512_load_ps(p[b >> 3].dw + (b & 7) * kRows + 16 * h); }
};
template <int V, bool Q4>
struct R16Src {
  static constexpr int kVecs = V;             // groups of 16 rows
  static constexpr bool kNibbles = Q4;        // Q4_0_R16: 2 codes per byte, 4 column groups per block
  static constexpr int64_t kBlockBytes = Q4 ? 256 : 512;  // codes per block and group
  const uint8_t* codes_at[V];                 // each group's codes at the first block
  const uint8_t* scales_at[V];
  // The piece read after this one (next_blocks 0: none), for the stream tile's L2 prefetch.
  const uint8_t* next_codes_at[V] = {};
  const uint8_t* next_scales_at[V] = {};
  int64_t next_blocks = 0;
  const uint32_t* codes(int64_t b, int g, int h) const {
    return reinterpret_cast<const uint32_t*>(codes_at[h] + kBlockBytes * b + 64 * g);
  }
  const char* scales_ptr(int64_t b, int h) const { return reinterpret_cast<const char*>(scales_at[h] + 32 * b); }
  __m512 scales(int64_t b, int h) const {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales_ptr(b, h))));
  }
};

// y (T tokens x cols <= 16 * V of a tile, row stride ldy) (+)= blocks [j0, j0 + nb) of the
// activation tile `act` (K columns) times the V * 16 rows of src. Nibble sources (Q4_0_R16) give
// per load the codes of column groups g (low nibbles) and g + 4 (high), as unsigned 0..15 where the
// value is code - 8: their sums start from -8 * the block's activation sum (the tile's -128 * sum
// / 16, exact). Stream: the rows come from memory once (the first tile over _R16 groups), so their
// codes and scales are prefetched 2 KiB of codes ahead, and the next piece (where src names one)
// into L2, block for block: a 32-row piece of 2048 columns is 64 KiB, and each one started cold.
// The group loops are unrolled: GCC otherwise rotated the 12 accumulators through register copies
// every group (24 moves per 12 vpdpbusd; 6 tokens from cache 1.2-1.4x faster without them). Not
// inlined, so that each tile's registers are allocated alone (and profiles name the tile).
template <int T, class Src, bool Stream = false>
[[gnu::noinline]] void tile(const uint8_t* act, int64_t K, int64_t j0, int64_t nb, const Src& src, float* y,
                            int64_t ldy, int64_t cols, bool accumulate) {
  constexpr int V = Src::kVecs;
  const uint32_t* codes = reinterpret_cast<const uint32_t*>(act) + j0 * 8 * kTok;
  const float* dxs = reinterpret_cast<const float*>(act + qgemm_dx_offset(K)) + j0 * kTok;
  const int32_t* corr = reinterpret_cast<const int32_t*>(act + qgemm_corr_offset(K)) + j0 * kTok;
  __m512 cf[T][V];
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < V; ++h) cf[t][h] = _mm512_setzero_ps();
  constexpr bool kQ4 = Src::kNibbles;
  constexpr int64_t kAhead = kQ4 ? 8 : 4;  // blocks: 2 KiB of codes
  // 1-2 token streams too: with the codes left to the hardware prefetchers they read slower on the
  // Intel Xeon (5-12 %) and, in quiet hours, on Zen 5 (Q4_0_R16 decode 95 -> 118 tokens/s;
  // docs/kernels.md).
  constexpr bool kPrefetchCodes = Stream;
  for (int64_t b = 0; b < nb; ++b) {
    __m512i ci[T][V];
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < V; ++h) ci[t][h] = _mm512_set1_epi32(kQ4 ? corr[b * kTok + t] >> 4 : corr[b * kTok + t]);
    if constexpr (kQ4) {
      const __m512i low4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        if constexpr (kPrefetchCodes)
          for (int h = 0; h < V; ++h)
            _mm_prefetch(reinterpret_cast<const char*>(src.codes(b + kAhead, g, h)), _MM_HINT_T0);
        const uint32_t* alo = codes + (b * 8 + g) * kTok;
        const uint32_t* ahi = codes + (b * 8 + g + 4) * kTok;
        // One row group at a time, low nibbles then high: few registers live beside the 2 T V
        // accumulators (integer sums: the order does not change them).
        for (int h = 0; h < V; ++h) {
          const __m512i v = _mm512_loadu_si512(src.codes(b, g, h));
          const __m512i lo = _mm512_and_si512(v, low4);
          for (int t = 0; t < T; ++t) ci[t][h] = _mm512_dpbusd_epi32(ci[t][h], lo, _mm512_set1_epi32(int(alo[t])));
          const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          for (int t = 0; t < T; ++t) ci[t][h] = _mm512_dpbusd_epi32(ci[t][h], hi, _mm512_set1_epi32(int(ahi[t])));
        }
      }
    } else {
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        __m512i w[V];
        for (int h = 0; h < V; ++h) w[h] = _mm512_loadu_si512(src.codes(b, g, h));
        if constexpr (kPrefetchCodes)
          for (int h = 0; h < V; ++h)
            _mm_prefetch(reinterpret_cast<const char*>(src.codes(b + kAhead, g, h)), _MM_HINT_T0);
        const uint32_t* ag = codes + (b * 8 + g) * kTok;
        for (int t = 0; t < T; ++t) {
          const __m512i a = _mm512_set1_epi32(int(ag[t]));
          for (int h = 0; h < V; ++h) ci[t][h] = _mm512_dpbusd_epi32(ci[t][h], w[h], a);
        }
      }
    }
    if constexpr (Stream) {
      for (int h = 0; h < V; ++h) _mm_prefetch(src.scales_ptr(b + kAhead, h), _MM_HINT_T0);
      if (b < src.next_blocks)
        for (int h = 0; h < V; ++h) {
          for (int64_t l = 0; l < Src::kBlockBytes; l += 64)
            _mm_prefetch(reinterpret_cast<const char*>(src.next_codes_at[h] + Src::kBlockBytes * b + l), _MM_HINT_T1);
          if (b % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(src.next_scales_at[h] + 32 * b), _MM_HINT_T1);
        }
    }
    __m512 d[V];
    for (int h = 0; h < V; ++h) d[h] = src.scales(b, h);
    for (int t = 0; t < T; ++t) {
      const __m512 dx = _mm512_set1_ps(dxs[b * kTok + t]);
      for (int h = 0; h < V; ++h)
        cf[t][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci[t][h]), _mm512_mul_ps(d[h], dx), cf[t][h]);
    }
  }
  __mmask16 m[V];
  for (int h = 0; h < V; ++h) m[h] = cols > 16 * h ? mask16(min64(16, cols - 16 * h)) : __mmask16(0);
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * ldy;
    for (int h = 0; h < V; ++h) {
      if (accumulate) cf[t][h] = _mm512_add_ps(cf[t][h], _mm512_maskz_loadu_ps(m[h], yt + 16 * h));
      _mm512_mask_storeu_ps(yt + 16 * h, m[h], cf[t][h]);
    }
  }
}

template <class Src, bool Stream = false>
void tile_rows(int64_t rows, const uint8_t* act, int64_t K, int64_t j0, int64_t nb, const Src& src, float* y,
               int64_t ldy, int64_t cols, bool accumulate) {
  static_assert(kTok == 6, "tile_rows dispatches 1 to 6 tokens");
  switch (rows) {
    case 1: return tile<1, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
    case 2: return tile<2, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
    case 3: return tile<3, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
    case 4: return tile<4, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
    case 5: return tile<5, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
    default: return tile<6, Src, Stream>(act, K, j0, nb, src, y, ldy, cols, accumulate);
  }
}

// 32 rows x (a piece of up to kStreamBlocks blocks of) K packed once into consecutive panels, then
// every activation tile runs over all of them, as qgemm_r16 reads its groups. Sweeping 64 x 256
// chunks with every tile (before 2026-12-06) measured 1.3x slower at 512 tokens (docs/kernels.md).
template <class C>
void qgemm(const Job& j, int64_t n0, int64_t n1) {
  const int64_t K = j.K, nb = K / 32, tiles = (j.B + kTok - 1) / kTok;
  // At most 32 panels (288 KiB) per thread.
  thread_local PanelScratch scratch;
  Panel* panels = static_cast<Panel*>(scratch.get(size_t((min64(nb, kStreamBlocks) + 7) / 8) * sizeof(Panel)));
  for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
    const int64_t rows = min64(kRows, n1 - r0);
    for (int64_t j0 = 0; j0 < nb; j0 += kStreamBlocks) {
      const int64_t jn = min64(kStreamBlocks, nb - j0);
      for (int64_t q = 0; q < (jn + 7) / 8; ++q)
        pack_panel<C>(panels[q], j, r0, rows, (j0 + 8 * q) * 32, min64(8, jn - 8 * q) * 32);
      // The next piece's code bytes, fetched into L2 while the tiles compute (spread over them):
      // packing loads waited on memory otherwise.
      const NextPiece next = next_piece(r0, j0, jn, nb);
      const int64_t next_rows = max64(0, min64(kRows, n1 - next.r0));
      const int64_t row_lines = ((next.blocks * 32 >> C::kShift) + 63) / 64;
      const int64_t lines = next_rows * row_lines;
      for (int64_t t = 0; t < tiles; ++t) {
        for (int64_t i = t * lines / tiles; i < (t + 1) * lines / tiles; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(row_of(j, next.r0 + i / row_lines) + ((next.j0 * 32) >> C::kShift) +
                                                     64 * (i % row_lines)),
                       _MM_HINT_T1);
        tile_rows(min64(kTok, j.B - t * kTok), j.act + t * j.act_stride, K, j0, jn, PanelSrc{panels},
                  j.y + t * kTok * j.N + r0, j.N, rows, j0 > 0);
      }
    }
  }
}

// Q8_0_R16 / Q4_0_R16 (rows % 16 == 0, row tasks start at multiples of 32): the same register tiles
// reading the stored groups, nothing packed; 1-8 tokens 64 rows at a time, more 32.
template <bool Q4>
void qgemm_r16(const Job& j, int64_t n0, int64_t n1) {
  const int64_t K = j.K, nb = K / 32, tiles = (j.B + kTok - 1) / kTok;
  constexpr int64_t kBlockBytes = R16Src<1, Q4>::kBlockBytes;
  // Groups of rows [r0, r0 + 16 V), from block jb; groups past `rows` repeat the last one (their
  // outputs are masked off).
  auto src = [&]<int V>(std::integral_constant<int, V>, int64_t r0, int64_t rows, int64_t jb) {
    R16Src<V, Q4> s;
    for (int h = 0; h < V; ++h) {
      const uint8_t* g = row_of(j, r0 + 16 * min64(h, (rows - 1) / 16));
      s.codes_at[h] = g + kBlockBytes * jb;
      s.scales_at[h] = g + kBlockBytes * nb + 32 * jb;
    }
    return s;
  };
  if (j.B <= 8) {
    // Decode (and a server step's few tokens): 64 rows at a time, so one token still has 4
    // independent vpdpbusd chains; tokens past the first activation tile (6) read the rows again
    // from L2. For 3-8 tokens this read 1.1-1.5x the 32-row tiles below (Zen 5, docs/kernels.md).
    for (int64_t r0 = n0; r0 < n1; r0 += 64) {
      const int64_t rows = min64(64, n1 - r0);
      const auto s = src(std::integral_constant<int, 4>{}, r0, rows, 0);
      using S4 = R16Src<4, Q4>;
      float* y = j.y + r0;
      tile_rows<S4, true>(min64(kTok, j.B), j.act, K, 0, nb, s, y, j.N, rows, false);
      if (j.B > kTok) tile_rows(j.B - kTok, j.act + j.act_stride, K, 0, nb, s, y + kTok * j.N, j.N, rows, false);
    }
    return;
  }
  // More tokens: each 32 rows streamed once over (a long piece of) K by the first activation tile,
  // then read again from L2 by the others. Sweeping 64 x 256 chunks with every tile instead (as
  // the packed path does) measured 1.4-1.6x slower at 512 tokens and 1.5x at 48 (docs/kernels.md).
  constexpr std::integral_constant<int, 2> two;
  for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
    const int64_t rows = min64(kRows, n1 - r0);
    for (int64_t j0 = 0; j0 < nb; j0 += kStreamBlocks) {
      const int64_t jn = min64(kStreamBlocks, nb - j0);
      auto s = src(two, r0, rows, j0);
      if (const NextPiece next = next_piece(r0, j0, jn, nb); next.r0 < n1) {
        const auto n = src(two, next.r0, min64(kRows, n1 - next.r0), next.j0);
        for (int h = 0; h < 2; ++h) {
          s.next_codes_at[h] = n.codes_at[h];
          s.next_scales_at[h] = n.scales_at[h];
        }
        s.next_blocks = next.blocks;
      }
      tile_rows<R16Src<2, Q4>, true>(min64(kTok, j.B), j.act, K, j0, jn, s, j.y + r0, j.N, rows, j0 > 0);
      for (int64_t t = 1; t < tiles; ++t)
        tile_rows(min64(kTok, j.B - t * kTok), j.act + t * j.act_stride, K, j0, jn, s, j.y + t * kTok * j.N + r0, j.N,
                  rows, j0 > 0);
    }
  }
}

// One tile of activations, quantized per block as quantize_act_block does (bit for bit): codes
// round(x * 127 / amax) (nearest even, as nearbyint in the default rounding mode), dx = amax / 127;
// a block with a non-finite value gets codes 0 and dx = NaN, so its outputs are NaN.
void prep_tile(uint8_t* out, const float* x, int64_t rows, int64_t K) {
  auto* codes = reinterpret_cast<uint32_t*>(out);
  auto* dxs = reinterpret_cast<float*>(out + qgemm_dx_offset(K));
  auto* corr = reinterpret_cast<int32_t*>(out + qgemm_corr_offset(K));
  const int64_t nb = K / 32;
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (int64_t t = 0; t < kTok; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      alignas(16) uint32_t w[8] = {};
      float dx = 0.f;
      int32_t sum = 0;
      if (t < rows) {
        const float* xb = x + t * K + 32 * b;
        const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        const __mmask16 f0 = _mm512_cmp_ps_mask(_mm512_sub_ps(v0, v0), zero, _CMP_EQ_OQ);
        const __mmask16 f1 = _mm512_cmp_ps_mask(_mm512_sub_ps(v1, v1), zero, _CMP_EQ_OQ);
        if (f0 != 0xffff || f1 != 0xffff) {
          dx = __builtin_nanf("");
        } else {
          const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
          dx = amax / 127.f;
          const __m512 id = _mm512_set1_ps(amax != 0.f ? 127.f / amax : 0.f);
          const __m512i q0 = _mm512_max_epi32(lo, _mm512_min_epi32(hi, _mm512_cvtps_epi32(_mm512_mul_ps(v0, id))));
          const __m512i q1 = _mm512_max_epi32(lo, _mm512_min_epi32(hi, _mm512_cvtps_epi32(_mm512_mul_ps(v1, id))));
          sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
          _mm_store_si128(reinterpret_cast<__m128i*>(w), _mm512_cvtepi32_epi8(q0));
          _mm_store_si128(reinterpret_cast<__m128i*>(w + 4), _mm512_cvtepi32_epi8(q1));
        }
      }
      for (int g = 0; g < 8; ++g) codes[(8 * b + g) * kTok + t] = w[g];
      dxs[b * kTok + t] = dx;
      corr[b * kTok + t] = -128 * sum;
    }
  }
}

}  // namespace

QGemmKernels qgemm_avx512_kernels() {
  QGemmKernels k;
  k.q8_0 = &qgemm<CodesQ8>;
  k.q4_0 = &qgemm<CodesQ4>;
  k.q8_0_r16 = &qgemm_r16<false>;
  k.q4_0_r16 = &qgemm_r16<true>;
  k.prep_tile = &prep_tile;
  return k;
}

}  // namespace dseek::mm

#else

namespace dseek::mm {
QGemmKernels qgemm_avx512_kernels() { return {}; }
}  // namespace dseek::mm

#endif
