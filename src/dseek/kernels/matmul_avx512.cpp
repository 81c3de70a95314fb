// AVX-512 matmul kernels (F/BW/VL for the float formats, VNNI for Q8_0/Q4_0, BF16 for bf16_dot).
//
// Compiled with AVX-512 flags (CMakeLists.txt) and only called after cpu_features() said yes, so
// this file includes nothing but intrinsics and matmul_kernels.h and keeps all helpers in an
// anonymous namespace (see matmul_kernels.h for why).
//
// Shape of every kernel: a tile of R weight rows x T tokens keeps R*T 16-lane float accumulators
// and walks K once; each weight vector is loaded and decoded once per tile and reused for the T
// tokens, each activation vector is reused for the R rows. drive() visits tiles so that a row
// block's weights stay in L1/L2 while tokens are swept in blocks of 64 (prefill reads the weights
// from memory once).
#include <immintrin.h>

#include "dseek/kernels/matmul_kernels.h"

// GCC 12's AVX-512 headers build some results from _mm256_undefined_si256() (extracts, reductions)
// and then warn about their own placeholder once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dseek::mm {
namespace {

constexpr int64_t kTokenBlock = 64;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }
inline __mmask32 mask32(int64_t n) { return n >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << n) - 1); }
inline __mmask64 mask64(int64_t n) { return n >= 64 ? __mmask64(~0ull) : __mmask64((1ull << n) - 1); }

inline const uint8_t* row_of(const Job& j, int64_t r) { return j.w + r * j.w_row_bytes; }

template <int R, int T>
inline void store_tile(const Job& j, int64_t r0, int64_t b0, __m512 (&acc)[R][T]) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < R; ++i) j.y[(b0 + t) * j.N + r0 + i] = _mm512_reduce_add_ps(acc[i][t]);
}

template <int R, int T>
inline void zero_tile(__m512 (&acc)[R][T]) {
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
}

// ---- float32 activations: F32, F16, BF16 weights, 16 columns per step ----

struct LoadF32 {
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  }
};
struct LoadF16 {
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k));
  }
};
struct LoadBF16 {  // bf16 -> f32 is exact: the bits move to the high half
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};

template <class L>
struct FloatAct {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = row_of(j, r0 + i);
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    for (int64_t k = 0; k < j.K; k += 16) {
      const __mmask16 m = mask16(j.K - k);
      __m512 wv[R];
      for (int i = 0; i < R; ++i) wv[i] = L::load(w[i], k, m);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + k);
        for (int i = 0; i < R; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
      }
    }
    store_tile(j, r0, b0, acc);
  }
};

// ---- BF16 weights x bf16-rounded activations: vdpbf16ps, 32 columns per step ----

struct Bf16Dot {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint16_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const uint16_t*>(row_of(j, r0 + i));
    const uint16_t* x[T];  // zero-padded to a multiple of 32, so only the weights need a mask
    for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const uint16_t*>(j.act + (b0 + t) * j.act_stride);
    for (int64_t k = 0; k < j.K; k += 32) {
      const __mmask32 m = mask32(j.K - k);
      __m512bh wv[R];
      for (int i = 0; i < R; ++i) wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(m, w[i] + k);
      for (int t = 0; t < T; ++t) {
        const __m512bh xv = (__m512bh)_mm512_load_si512(x[t] + k);
        for (int i = 0; i < R; ++i) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], wv[i], xv);
      }
    }
    store_tile(j, r0, b0, acc);
  }
};

// ---- FP8-E4M3 with float32 block scales ----
//
// E4M3 -> f16 bits: sign to bit 15, exponent and mantissa to bits 13..7 (bit 14 = 0). As f16 that is
// the E4M3 value times 2^-8 (bias 15 instead of 7), subnormals included, and F16C widens it exactly.
// Multiplying by scale * 256 then gives exactly the float32 product decode(q) * scale of
// matmul_ref (all factors exact, one rounding). 0x7f/0xff (NaN) would decode as 480: they are
// detected on the bytes and turn the output into NaN, as in the reference.
struct Fp8 {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint8_t* w[R];
    const float* srow[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      srow[i] = j.scale_inv + ((j.row_offset + r0 + i) / j.block) * j.scale_cols;
    }
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    const __m256i k7f = _mm256_set1_epi8(0x7f);
    const __m512i keep = _mm512_set1_epi16(int16_t(0xbfff));
    __mmask32 nan[R] = {};
    for (int64_t kb = 0; kb < j.K; kb += j.block) {
      const int64_t ke = min64(j.K, kb + j.block);
      __m512 s[R];
      for (int i = 0; i < R; ++i) s[i] = _mm512_set1_ps(srow[i][kb / j.block] * 256.f);
      for (int64_t k = kb; k < ke; k += 32) {
        const __mmask32 m = mask32(ke - k);
        __m512 w0[R], w1[R];
        for (int i = 0; i < R; ++i) {
          const __m256i q = _mm256_maskz_loadu_epi8(m, w[i] + k);
          nan[i] |= _mm256_cmpeq_epi8_mask(_mm256_and_si256(q, k7f), k7f);
          const __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(q), 7), keep);
          w0[i] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), s[i]);
          w1[i] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), s[i]);
        }
        for (int t = 0; t < T; ++t) {
          const __m512 x0 = _mm512_maskz_loadu_ps(__mmask16(m), x[t] + k);
          const __m512 x1 = _mm512_maskz_loadu_ps(__mmask16(m >> 16), x[t] + k + 16);
          for (int i = 0; i < R; ++i) {
            acc[i][t] = _mm512_fmadd_ps(w0[i], x0, acc[i][t]);
            acc[i][t] = _mm512_fmadd_ps(w1[i], x1, acc[i][t]);
          }
        }
      }
    }
    for (int i = 0; i < R; ++i)
      if (nan[i])
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_set1_ps(__builtin_nanf(""));
    store_tile(j, r0, b0, acc);
  }
};

// ---- Q8_0 / Q4_0 with VNNI ----
//
// vpdpbusd multiplies unsigned by signed bytes. The weight codes are made unsigned (Q8_0: q ^ 0x80
// = q + 128; Q4_0 nibbles are already value + 8) and the activation codes stay signed; the offset
// times the sum of each lane's activation codes is precomputed per call (quantize_activations) and
// used as the accumulator's starting value, so every int32 lane is an exact partial dot product.
// Lane l of a 64-byte chunk belongs to one block; it is scaled by d_w(block) * dx(block) in float.
// Scales of 16 blocks are widened once (one vcvtph2ps) and spread over lanes with vpermps.

inline const uint16_t* scales_of(const Job& j, const uint8_t* row) {
  return reinterpret_cast<const uint16_t*>(row + j.w_scales_offset);
}

struct Q8 {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = scales_of(j, w[i]);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
    // Lanes 0..7 take block 2c, lanes 8..15 block 2c + 1 of the 16 widened scales.
    const __m512i idx0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t g = 0; g < nb; g += 16) {
      const int64_t ng = min64(16, nb - g);
      __m512 S[R];
      for (int i = 0; i < R; ++i) S[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(ng), d[i] + g));
      for (int64_t c = 0; 2 * c < ng; ++c) {
        const int64_t ch = g / 2 + c;
        const __mmask64 m = mask64(32 * (ng - 2 * c));
        const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(int(2 * c)));
        __m512i wu[R];
        __m512 dw[R];
        for (int i = 0; i < R; ++i) {
          wu[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, w[i] + 64 * ch), flip);
          dw[i] = _mm512_permutexvar_ps(idx, S[i]);
        }
        for (int t = 0; t < T; ++t) {
          const __m512i xq = _mm512_load_si512(a[t] + 64 * ch);
          const __m512i corr = _mm512_load_si512(a[t] + j.act_corr_offset + 64 * ch);
          const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + 64 * ch));
          for (int i = 0; i < R; ++i) {
            const __m512i v = _mm512_dpbusd_epi32(corr, wu[i], xq);
            acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw[i], dx), acc[i][t]);
          }
        }
      }
    }
    store_tile(j, r0, b0, acc);
  }
};

struct Q4 {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = scales_of(j, w[i]);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    // Lanes 4m .. 4m + 3 take block 4c + m of the 16 widened scales.
    const __m512i idx0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (int64_t g = 0; g < nb; g += 16) {
      const int64_t ng = min64(16, nb - g);
      __m512 S[R];
      for (int i = 0; i < R; ++i) S[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(ng), d[i] + g));
      for (int64_t c = 0; 4 * c < ng; ++c) {
        const int64_t ch = g / 4 + c;
        const __mmask64 m = mask64(16 * (ng - 4 * c));
        const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(int(4 * c)));
        __m512i lo[R], hi[R];
        __m512 dw[R];
        for (int i = 0; i < R; ++i) {
          const __m512i v = _mm512_maskz_loadu_epi8(m, w[i] + 64 * ch);
          lo[i] = _mm512_and_si512(v, low4);
          hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          dw[i] = _mm512_permutexvar_ps(idx, S[i]);
        }
        for (int t = 0; t < T; ++t) {
          const __m512i xlo = _mm512_load_si512(a[t] + 128 * ch);
          const __m512i xhi = _mm512_load_si512(a[t] + 128 * ch + 64);
          const __m512i corr = _mm512_load_si512(a[t] + j.act_corr_offset + 64 * ch);
          const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + 64 * ch));
          for (int i = 0; i < R; ++i) {
            const __m512i v = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo[i], xlo), hi[i], xhi);
            acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw[i], dx), acc[i][t]);
          }
        }
      }
    }
    store_tile(j, r0, b0, acc);
  }
};

// ---- tiling over rows and tokens ----

template <class F, int R>
void sweep_tokens(const Job& j, int64_t r0, int64_t b0, int64_t b1) {
  constexpr int T = F::kTokens;
  int64_t b = b0;
  for (; b + T <= b1; b += T) F::template tile<R, T>(j, r0, b);
  switch (b1 - b) {
    case 3: F::template tile<R, 3 < T ? 3 : T>(j, r0, b); break;
    case 2: F::template tile<R, 2 < T ? 2 : T>(j, r0, b); break;
    case 1: F::template tile<R, 1>(j, r0, b); break;
    default: break;
  }
}

template <class F>
void drive(const Job& j, int64_t n0, int64_t n1) {
  constexpr int R = F::kRows;
  static_assert(R == 4 && F::kTokens <= 4, "the remainder switches below assume 4 rows, <= 4 tokens");
  for (int64_t bb = 0; bb < j.B; bb += kTokenBlock) {
    const int64_t be = min64(j.B, bb + kTokenBlock);
    int64_t r = n0;
    for (; r + R <= n1; r += R) sweep_tokens<F, R>(j, r, bb, be);
    switch (n1 - r) {
      case 3: sweep_tokens<F, 3>(j, r, bb, be); break;
      case 2: sweep_tokens<F, 2>(j, r, bb, be); break;
      case 1: sweep_tokens<F, 1>(j, r, bb, be); break;
      default: break;
    }
  }
}

}  // namespace

KernelSet avx512_kernels() {
  KernelSet k;
  k.f32 = &drive<FloatAct<LoadF32>>;
  k.f16 = &drive<FloatAct<LoadF16>>;
  k.bf16 = &drive<FloatAct<LoadBF16>>;
  k.bf16_dot = &drive<Bf16Dot>;
  k.fp8 = &drive<Fp8>;
  k.q8_0 = &drive<Q8>;
  k.q4_0 = &drive<Q4>;
  return k;
}

}  // namespace dseek::mm
