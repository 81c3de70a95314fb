// AVX2 + FMA + F16C matmul kernels, for x86-64 CPUs without (usable) AVX-512.
//
// Same structure as matmul_avx512.cpp (tiles of R rows x T tokens, see there) with 8-lane vectors.
// AVX2 has no byte/word masked loads, so the float formats finish a row's last K % 8 (or % 16)
// columns with scalar code. Compiled with -mavx2 -mfma -mf16c; includes only intrinsics and
// matmul_kernels.h, helpers in an anonymous namespace (see matmul_kernels.h).
#include "dseek/kernels/matmul_kernels.h"

// Elsewhere than x86 the file defines an empty kernel set (cpu_features() reports nothing there,
// so matmul never asks for it) and the scalar path builds alone (STYLE.md).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace dseek::mm {
namespace {

constexpr int64_t kTokenBlock = 64;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline const uint8_t* row_of(const Job& j, int64_t r) { return j.w + r * j.w_row_bytes; }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16_scalar(uint16_t h) { return _cvtsh_ss(h); }
inline float bf16_scalar(uint16_t h) {
  return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(h) << 16))));
}

template <int R, int T>
inline void zero_tile(__m256 (&acc)[R][T]) {
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
}

// ---- float32 activations: F16, BF16 weights, 8 columns per step ----

struct LoadF16 {
  static __m256 load(const uint8_t* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + k)));
  }
  static float scalar(const uint8_t* row, int64_t k) { return f16_scalar(reinterpret_cast<const uint16_t*>(row)[k]); }
};
struct LoadBF16 {
  static __m256 load(const uint8_t* row, int64_t k) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar(const uint8_t* row, int64_t k) { return bf16_scalar(reinterpret_cast<const uint16_t*>(row)[k]); }
};

template <class L>
struct FloatAct {
  static constexpr int kRows = 4, kTokens = 3;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m256 acc[R][T];
    zero_tile(acc);
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = row_of(j, r0 + i);
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    const int64_t kv = j.K & ~int64_t(7);
    for (int64_t k = 0; k < kv; k += 8) {
      __m256 wv[R];
      for (int i = 0; i < R; ++i) wv[i] = L::load(w[i], k);
      for (int t = 0; t < T; ++t) {
        const __m256 xv = _mm256_loadu_ps(x[t] + k);
        for (int i = 0; i < R; ++i) acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
      }
    }
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < R; ++i) {
        float s = hsum(acc[i][t]);
        for (int64_t k = kv; k < j.K; ++k) s += L::scalar(w[i], k) * x[t][k];
        j.y[(b0 + t) * j.N + r0 + i] = s;
      }
  }
};

// ---- F32 weights, bit-exact with matmul_ref (see matmul_avx512.cpp): lanes are 8 output rows ----

inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3; u[4h + j]: column 4L + j in 128-bit lane L
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

inline __m256i lane_mask(int n) {  // first n of 8 int32 lanes set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int T>
void exact_f32_tile(const Job& j, int64_t r0, int nr, int64_t b0) {
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
  for (int64_t k = 0; k < j.K; k += 8) {
    const int kr = int(min64(8, j.K - k));
    const __m256i m = lane_mask(kr);
    __m256 v[8];
    for (int i = 0; i < 8; ++i)
      v[i] = i < nr ? _mm256_maskload_ps(reinterpret_cast<const float*>(row_of(j, r0 + i)) + k, m) : _mm256_setzero_ps();
    transpose8(v);
    for (int c = 0; c < kr; ++c)
      for (int t = 0; t < T; ++t) acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(v[c], _mm256_set1_ps(x[t][k + c])));
  }
  for (int t = 0; t < T; ++t) _mm256_maskstore_ps(j.y + (b0 + t) * j.N + r0, lane_mask(nr), acc[t]);
}

void exact_f32(const Job& j, int64_t n0, int64_t n1) {
  for (int64_t bb = 0; bb < j.B; bb += kTokenBlock) {
    const int64_t be = min64(j.B, bb + kTokenBlock);
    for (int64_t r = n0; r < n1; r += 8) {
      const int nr = int(min64(8, n1 - r));
      int64_t b = bb;
      for (; b + 4 <= be; b += 4) exact_f32_tile<4>(j, r, nr, b);
      switch (be - b) {
        case 3: exact_f32_tile<3>(j, r, nr, b); break;
        case 2: exact_f32_tile<2>(j, r, nr, b); break;
        case 1: exact_f32_tile<1>(j, r, nr, b); break;
        default: break;
      }
    }
  }
}

// ---- FP8-E4M3 with block scales: the same exact E4M3 -> f16 -> f32 widening as the AVX-512 file ----

struct Fp8 {
  static constexpr int kRows = 4, kTokens = 3;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m256 acc[R][T];
    zero_tile(acc);
    float tail[R][T] = {};
    const uint8_t* w[R];
    const float* srow[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      srow[i] = j.scale_inv + ((j.row_offset + r0 + i) / j.block) * j.scale_cols;
    }
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    const __m128i k7f = _mm_set1_epi8(0x7f);
    const __m256i keep = _mm256_set1_epi16(int16_t(0xbfff));
    int nan[R] = {};
    for (int64_t kb = 0; kb < j.K; kb += j.block) {
      const int64_t ke = min64(j.K, kb + j.block);
      const int64_t kv = kb + ((ke - kb) & ~int64_t(15));
      float sf[R];
      __m256 s[R];
      for (int i = 0; i < R; ++i) {
        sf[i] = srow[i][kb / j.block];
        s[i] = _mm256_set1_ps(sf[i] * 256.f);
      }
      for (int64_t k = kb; k < kv; k += 16) {
        __m256 w0[R], w1[R];
        for (int i = 0; i < R; ++i) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i] + k));
          nan[i] |= _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(q, k7f), k7f));
          const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(q), 7), keep);
          w0[i] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), s[i]);
          w1[i] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), s[i]);
        }
        for (int t = 0; t < T; ++t) {
          const __m256 x0 = _mm256_loadu_ps(x[t] + k), x1 = _mm256_loadu_ps(x[t] + k + 8);
          for (int i = 0; i < R; ++i) {
            acc[i][t] = _mm256_fmadd_ps(w0[i], x0, acc[i][t]);
            acc[i][t] = _mm256_fmadd_ps(w1[i], x1, acc[i][t]);
          }
        }
      }
      for (int64_t k = kv; k < ke; ++k)
        for (int i = 0; i < R; ++i) {
          const float wf = j.e4m3_lut[w[i][k]] * sf[i];
          for (int t = 0; t < T; ++t) tail[i][t] += wf * x[t][k];
        }
    }
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < R; ++i)
        j.y[(b0 + t) * j.N + r0 + i] = nan[i] ? __builtin_nanf("") : hsum(acc[i][t]) + tail[i][t];
  }
};

// ---- Q8_0 / Q4_0: vpmaddubsw (unsigned x signed bytes -> int16 pairs) + vpmaddwd ----
//
// Uses the activation layout of quantize_activations (the 64-byte chunks of the AVX-512 kernels,
// taken as two 32-byte halves: int32 lane l of a half is lane 8 * half + l of the chunk).
// Q8_0 takes |w| and moves w's sign onto x (vpsignb), so the int16 pair sums stay below
// 2 * 128 * 127 < 2^15 and no offset correction is needed; Q4_0 codes are unsigned already
// (2 * 15 * 127 per pair, two pairs added: < 2^13) and use the -8 * sum correction.

inline __m256 scale2(const uint16_t* d, int64_t b0, bool second) {  // [d[b0] x 4 | d[b0 + 1] x 4] as f32
  const __m128 lo = _mm_set1_ps(f16_scalar(d[b0]));
  const __m128 hi = second ? _mm_set1_ps(f16_scalar(d[b0 + 1])) : _mm_setzero_ps();
  return _mm256_set_m128(hi, lo);
}

struct Q8 {
  static constexpr int kRows = 4, kTokens = 3;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m256 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = reinterpret_cast<const uint16_t*>(w[i] + j.w_scales_offset);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t blk = 0; blk < nb; ++blk) {
      // Block blk: chunk blk / 2, half blk % 2 of the lane arrays.
      const int64_t lane_off = 64 * (blk / 2) + 32 * (blk % 2);
      __m256i wv[R], aw[R];
      __m256 dw[R];
      for (int i = 0; i < R; ++i) {
        wv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i] + 32 * blk));
        aw[i] = _mm256_abs_epi8(wv[i]);
        dw[i] = _mm256_set1_ps(f16_scalar(d[i][blk]));
      }
      for (int t = 0; t < T; ++t) {
        const __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(a[t] + 32 * blk));
        const __m256 dx = _mm256_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + lane_off));
        for (int i = 0; i < R; ++i) {
          const __m256i p = _mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(xq, wv[i]));
          const __m256i v = _mm256_madd_epi16(p, ones);
          acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw[i], dx), acc[i][t]);
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < R; ++i) j.y[(b0 + t) * j.N + r0 + i] = hsum(acc[i][t]);
  }
};

struct Q4 {
  static constexpr int kRows = 4, kTokens = 3;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m256 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = reinterpret_cast<const uint16_t*>(w[i] + j.w_scales_offset);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0f);
    for (int64_t blk = 0; blk < nb; blk += 2) {  // a pair of blocks = 32 bytes of nibbles
      const bool pair = blk + 1 < nb;
      const int64_t c = blk / 4, half = (blk / 2) % 2;
      __m256i lo[R], hi[R];
      __m256 dw[R];
      for (int i = 0; i < R; ++i) {
        const __m256i v =
            pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i] + 16 * blk))
                 : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i] + 16 * blk)));
        lo[i] = _mm256_and_si256(v, low4);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        dw[i] = scale2(d[i], blk, pair);
      }
      for (int t = 0; t < T; ++t) {
        const uint8_t* at = a[t];
        const __m256i xlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(at + 128 * c + 32 * half));
        const __m256i xhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(at + 128 * c + 64 + 32 * half));
        const __m256i corr = _mm256_load_si256(reinterpret_cast<const __m256i*>(at + j.act_corr_offset + 64 * c + 32 * half));
        const __m256 dx = _mm256_load_ps(reinterpret_cast<const float*>(at + j.act_scale_offset + 64 * c + 32 * half));
        for (int i = 0; i < R; ++i) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xlo), _mm256_maddubs_epi16(hi[i], xhi));
          const __m256i v = _mm256_add_epi32(_mm256_madd_epi16(p, ones), corr);
          acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw[i], dx), acc[i][t]);
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < R; ++i) j.y[(b0 + t) * j.N + r0 + i] = hsum(acc[i][t]);
  }
};

// ---- tiling over rows and tokens ----

template <class F, int R>
void sweep_tokens(const Job& j, int64_t r0, int64_t b0, int64_t b1) {
  constexpr int T = F::kTokens;
  int64_t b = b0;
  for (; b + T <= b1; b += T) F::template tile<R, T>(j, r0, b);
  switch (b1 - b) {
    case 2: F::template tile<R, 2 < T ? 2 : T>(j, r0, b); break;
    case 1: F::template tile<R, 1>(j, r0, b); break;
    default: break;
  }
}

template <class F>
void drive(const Job& j, int64_t n0, int64_t n1) {
  constexpr int R = F::kRows;
  static_assert(R == 4 && F::kTokens == 3, "the remainder switches assume 4 rows and 3 tokens");
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

KernelSet avx2_kernels() {
  KernelSet k;
  k.f32 = &exact_f32;
  k.f16 = &drive<FloatAct<LoadF16>>;
  k.bf16 = &drive<FloatAct<LoadBF16>>;
  k.fp8 = &drive<Fp8>;
  k.q8_0 = &drive<Q8>;
  k.q4_0 = &drive<Q4>;
  return k;
}

}  // namespace dseek::mm

#else

namespace dseek::mm {
KernelSet avx2_kernels() { return {}; }
}  // namespace dseek::mm

#endif
