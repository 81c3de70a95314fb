// FP8-E4M3 decode (1-4 tokens) with bf16 dot products: E4M3 codes become bf16 through two byte
// table lookups (vpermi2b, AVX-512 VBMI) and multiply activations in vdpbf16ps, 32 products per
// instruction. The float32 row streams of matmul_avx512.cpp widen each code through f16 and four
// vcvtph2ps per 64 weights; on Zen 5 they read 27-35 GB/s of a ~60 GB/s probe at one token, this
// kernel 37-41 (docs/performance.md). Its other half of the gain is reading 8 rows in lockstep at
// 1-2 tokens (more misses in flight; 4 rows, or 16, were slower).
//
// Exactness: every E4M3 value (subnormals included, NaN codes as NaN) is exactly a bf16 value. The
// block scales are folded into the activations, as in the float32 stream: rows of one block share
// a row of scales, so x'[k] = x[k] * scale[k / block] is formed once per block of rows. x' is then
// split into bf16 h + l (x' - h rounded again), so each product w * x' is w * h + w * l exactly up
// to the second rounding: ~2^-16 relative per term, float32-like (docs/kernels.md).
//
// Column order: one 64-byte load of codes gives, after the lookups, low and high bytes; interleaving
// them per 128-bit lane (vpunpck[lh]bw) yields two vectors of 32 bf16 weights holding columns
// {0-7, 16-23, 32-39, 48-55} and {8-15, 24-31, 40-47, 56-63} of the chunk. The activations are
// stored in that order when prepared, so no weight needs a shuffle.
#if defined(__AVX512BF16__) && defined(__AVX512VBMI__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/matmul_kernels.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek::mm {
namespace {

// Same distance as the other decode row streams (matmul_avx512.cpp, kStreamPrefetchBytes).
constexpr int64_t kAheadBytes = 2048;
constexpr int64_t kLockstepAheadBytes = 1024;  // rows in lockstep: per row (512 B measured the same)

// bf16 bit patterns of the 128 non-negative E4M3 codes, low and high bytes, 64 codes per register.
struct E4m3Tables {
  __m512i lo0, lo1, hi0, hi1;
  explicit E4m3Tables(const float* lut) {
    alignas(64) uint8_t lo[128], hi[128];
    for (int c = 0; c < 128; ++c) {
      uint32_t bits;
      std::memcpy(&bits, &lut[c], 4);
      const uint32_t b = (c & 0x7f) == 0x7f ? 0x7fc0u : bits >> 16;  // exact: 3 mantissa bits
      lo[c] = uint8_t(b);
      hi[c] = uint8_t(b >> 8);
    }
    lo0 = _mm512_load_si512(lo);
    lo1 = _mm512_load_si512(lo + 64);
    hi0 = _mm512_load_si512(hi);
    hi1 = _mm512_load_si512(hi + 64);
  }
  // 64 codes -> columns {0-7, 16-23, ...} (a) and {8-15, 24-31, ...} (b) as bf16.
  void decode(__m512i q, __m512bh& a, __m512bh& b) const {
    const __m512i l = _mm512_permutex2var_epi8(lo0, q, lo1);  // index bits 6..0: the sign is ignored
    const __m512i h = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, q, hi1), q, _mm512_set1_epi8(int8_t(0x80)),
                                                0xf8);  // h | (q & 0x80): the sign bit
    a = (__m512bh)_mm512_unpacklo_epi8(l, h);
    b = (__m512bh)_mm512_unpackhi_epi8(l, h);
  }
};

// Scaled activations of one block of rows for T tokens: per token, kp bf16 h values then kp bf16 l
// values, in the column order above, zeros from K to kp (a multiple of 64).
//
// Rows that start `lead` bytes past a 64-byte line (every row alike: whole-line rows) are read in
// whole lines from that line on (rows_dot), so the activations are laid out in line space: element
// i holds column i - lead (zeros outside the row). HF-written files start tensors 8-byte aligned;
// v2lite-5l FP8 with its data 32 bytes past a line decoded up to 1.15x faster so (Zen 5,
// docs/kernels.md "Where tensors start").
template <int T>
struct ScaledActs {
  uint16_t* buf = nullptr;
  float* tmp = nullptr;  // one token's scaled activations in line space
  int64_t kp = 0, block_row = -1, lead = 0;
  ScaledActs(const Job& j, int64_t lead_) : kp((lead_ + j.K + 63) / 64 * 64), lead(lead_) {
    thread_local PanelScratch scratch, scratch_tmp;
    buf = static_cast<uint16_t*>(scratch.get(size_t(T * 2 * kp) * sizeof(uint16_t)));
    tmp = static_cast<float*>(scratch_tmp.get(size_t(kp) * sizeof(float)));
  }
  // tmp = x scaled per column block, in line space. The first line element by element; then 16
  // columns at a time, which span at most two blocks (j.block % 32 == 0).
  void line_space(const Job& j, const float* x, const float* srow) {
    for (int64_t i = 0; i < 64; ++i) {
      const int64_t c = i - lead;
      tmp[i] = c >= 0 && c < j.K ? x[c] * srow[c / j.block] : 0.f;
    }
    for (int64_t i = 64; i < kp; i += 16) {
      const int64_t c = i - lead;  // >= 1
      if (c >= j.K) {
        _mm512_store_ps(tmp + i, _mm512_setzero_ps());
        continue;
      }
      const int64_t b_lo = c / j.block, b_hi = (c + 15 < j.K ? c + 15 : j.K - 1) / j.block;
      const __mmask16 hi = __mmask16(~0u << (b_hi * j.block - c < 16 ? b_hi * j.block - c : 16));
      const __m512 sc = _mm512_mask_blend_ps(b_hi > b_lo ? hi : __mmask16(0), _mm512_set1_ps(srow[b_lo]),
                                             _mm512_set1_ps(srow[b_hi]));
      _mm512_store_ps(tmp + i, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask16(j.K - c), x + c), sc));
    }
  }
  const uint16_t* h(int t) const { return buf + t * 2 * kp; }
  const uint16_t* l(int t) const { return buf + t * 2 * kp + kp; }
  void prepare(const Job& j, int64_t br) {
    const float* srow = j.scale_inv + br * j.scale_cols;
    const __m512 inf = _mm512_set1_ps(__builtin_inff());
    for (int t = 0; t < T; ++t) {
      const float* x = j.x + t * j.K;
      if (lead > 0) line_space(j, x, srow);
      uint16_t* oh = buf + t * 2 * kp;
      uint16_t* ol = oh + kp;
      for (int64_t k = 0; k < kp; k += 64) {
        __m512 v[4], r[4];
        for (int i = 0; i < 4; ++i) {
          const int64_t c = k + 16 * i;
          if (lead > 0) {
            v[i] = _mm512_load_ps(tmp + c);
          } else {
            const __mmask16 m = c < j.K ? mask16(j.K - c) : __mmask16(0);
            const float s = c < j.K ? srow[c / j.block] : 0.f;  // j.block % 32 == 0: one scale per 16
            v[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), _mm512_set1_ps(s));
          }
          const __m512 hv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v[i])), 16));
          // x' - h; zero where x' is not finite (h then carries the infinity or NaN on its own)
          r[i] = _mm512_maskz_sub_ps(_mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), inf, _CMP_LT_OQ), v[i], hv);
        }
        const __m512i h0 = (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]), h1 = (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2]);
        const __m512i l0 = (__m512i)_mm512_cvtne2ps_pbh(r[1], r[0]), l1 = (__m512i)_mm512_cvtne2ps_pbh(r[3], r[2]);
        _mm512_store_si512(oh + k, _mm512_shuffle_i64x2(h0, h1, 0x88));
        _mm512_store_si512(oh + k + 32, _mm512_shuffle_i64x2(h0, h1, 0xdd));
        _mm512_store_si512(ol + k, _mm512_shuffle_i64x2(l0, l1, 0x88));
        _mm512_store_si512(ol + k + 32, _mm512_shuffle_i64x2(l0, l1, 0xdd));
      }
    }
    block_row = br;
  }
};

// S consecutive rows (one block of rows) in lockstep, T tokens: out[s][t] = 16 partial sums. One
// accumulator (out[s][t]) per row and token takes both halves of a chunk and both h and l (four dependent
// vdpbf16ps per chunk; the S * T chains in flight hide their latency).
template <int S, int T>
inline void rows_dot(const Job& j, const E4m3Tables& tb, const ScaledActs<T>& xs, int64_t r, __m512 (&out)[S][T]) {
  const uint8_t* w = row_of(j, r) - xs.lead;  // on a line where xs.lead > 0
  const int64_t rb = j.w_row_bytes;
  // S = 1: kAheadBytes along the stream. S > 1: kLockstepAheadBytes along each row and, past its
  // end, into the row S below (the next step's). Zen 5: 1-4 tokens read 1.1-1.5x the same columns
  // of the next S rows (16 KiB ahead) in matmul_bench and in MoE dispatches (docs/kernels.md).
  const auto ahead = [rb](int64_t k) {
    if constexpr (S == 1) return k + kAheadBytes;
    return lockstep_ahead(k + kLockstepAheadBytes, rb, S);
  };
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < T; ++t) out[s][t] = _mm512_setzero_ps();
  // Line-space columns [lead, lead + K) are the row's; the lines holding others are masked (zero
  // codes decode to +0).
  const int64_t end = xs.lead + j.K;
  const __mmask64 first = __mmask64(~0ull << xs.lead);
  for (int64_t k = 0; k < xs.kp; k += 64)
    for (int s = 0; s < S; ++s) {
      __m512i q;
      _mm_prefetch(reinterpret_cast<const char*>(w + s * rb + ahead(k)), _MM_HINT_T0);
      if (k > 0 && k + 64 <= end) {
        q = _mm512_loadu_si512(w + s * rb + k);
      } else {
        q = _mm512_maskz_loadu_epi8((k == 0 ? first : ~__mmask64(0)) & mask64(end - k), w + s * rb + k);
      }
      __m512bh a, b;
      tb.decode(q, a, b);
      for (int t = 0; t < T; ++t) {
        out[s][t] = _mm512_dpbf16_ps(out[s][t], a, (__m512bh)_mm512_load_si512(xs.h(t) + k));
        out[s][t] = _mm512_dpbf16_ps(out[s][t], b, (__m512bh)_mm512_load_si512(xs.h(t) + k + 32));
        out[s][t] = _mm512_dpbf16_ps(out[s][t], a, (__m512bh)_mm512_load_si512(xs.l(t) + k));
        out[s][t] = _mm512_dpbf16_ps(out[s][t], b, (__m512bh)_mm512_load_si512(xs.l(t) + k + 32));
      }
    }
}

// Rows [n0, n1), 16 at a time (reduced together); S rows in lockstep where they share a scale row.
template <int T>
void fp8_dot_stream(const Job& j, int64_t n0, int64_t n1) {
  static_assert(T >= 1 && T <= 4);
  constexpr int S = T <= 2 ? 8 : 4;
  const E4m3Tables tb(j.e4m3_lut);
  const int64_t at = int64_t(reinterpret_cast<uintptr_t>(j.w) & 63);
  ScaledActs<T> xs(j, j.w_row_bytes % 64 == 0 ? at : 0);
  auto block_of = [&](int64_t r) { return (j.row_offset + r) / j.block; };
  for (int64_t r0 = n0; r0 < n1; r0 += 16) {
    const int nr = int(min64(16, n1 - r0));
    __m512 part[T][16];
    int i = 0;
    while (i < nr) {
      const int64_t r = r0 + i;
      if (block_of(r) != xs.block_row) xs.prepare(j, block_of(r));
      if (i + S <= nr && block_of(r + S - 1) == xs.block_row) {
        __m512 out[S][T];
        rows_dot<S, T>(j, tb, xs, r, out);
        for (int s = 0; s < S; ++s)
          for (int t = 0; t < T; ++t) part[t][i + s] = out[s][t];
        i += S;
      } else {
        __m512 out[1][T];
        rows_dot<1, T>(j, tb, xs, r, out);
        for (int t = 0; t < T; ++t) part[t][i] = out[0][t];
        i += 1;
      }
    }
    for (; i < 16; ++i)
      for (int t = 0; t < T; ++t) part[t][i] = _mm512_setzero_ps();
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(j.y + t * j.N + r0, mask16(nr), reduce16(part[t]));
  }
}

}  // namespace

void fp8_dot_avx512(const Job& j, int64_t n0, int64_t n1) {
  switch (j.B) {  // matmul.cpp calls it for 1-4 tokens (fp8_dot_path)
    case 1: return fp8_dot_stream<1>(j, n0, n1);
    case 2: return fp8_dot_stream<2>(j, n0, n1);
    case 3: return fp8_dot_stream<3>(j, n0, n1);
    default: return fp8_dot_stream<4>(j, n0, n1);
  }
}

}  // namespace dseek::mm

#endif
