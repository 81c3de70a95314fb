// Tail masks, row addressing, bf16 and E4M3 widening and panel scratch shared by the AVX-512 kernel
// files (matmul_avx512.cpp, gemm_q8_avx512.cpp, attention_decode_avx512.cpp,
// attention_decode_amx.cpp, softmax_avx512.cpp). Include it only from files compiled with AVX-512
// flags: the helpers live in an anonymous namespace, so each such file gets its
// own copy (see matmul_kernels.h).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "dseek/kernels/matmul_kernels.h"

// GCC 12's AVX-512 headers build some results from _mm256_undefined_si256() (extracts, reductions)
// and then warn about their own placeholder once inlined: silenced for every file including this.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dseek::mm {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
// The first n lanes (all of them for n >= the width).
inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }
inline __mmask32 mask32(int64_t n) { return n >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << n) - 1); }
inline __mmask64 mask64(int64_t n) { return n >= 64 ? __mmask64(~0ull) : __mmask64((1ull << n) - 1); }
inline const uint8_t* row_of(const Job& j, int64_t r) { return j.w + r * j.w_row_bytes; }

// Prefetch offset for rows read in lockstep (rows_in_step consecutive rows of row_bytes each, one
// step after another): `off` bytes into the row while it lies inside it, else the same distance
// into the row rows_in_step below, the next step's, so that step's rows do not start cold.
inline int64_t lockstep_ahead(int64_t off, int64_t row_bytes, int64_t rows_in_step) {
  return off < row_bytes ? off : off + (rows_in_step - 1) * row_bytes;
}

// 16 bf16 values as float32, exact: the bits move to the high half.
inline __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// 32 E4M3 codes -> 32 f16 bit patterns of value * 2^-8 (sign to bit 15, exponent and mantissa to
// bits 13..7, subnormals included): F16C widens them exactly, and scale * 256 restores the value.
inline __m512i e4m3_as_f16(__m256i q) {
  return _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(q), 7), _mm512_set1_epi16(int16_t(0xbfff)));
}

// 32 FP8 codes (m: those to read, zeros elsewhere; within one scale block) as float32 weights:
// decode(q) * scale exactly, as matmul_ref forms them; NaN codes (0x7f / 0xff) NaN.
inline void e4m3_scaled(const uint8_t* codes, __mmask32 m, float scale, __m512& lo, __m512& hi) {
  const __m256i k7f = _mm256_set1_epi8(0x7f);
  const __m256i q = _mm256_maskz_loadu_epi8(m, codes);
  const __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_and_si256(q, k7f), k7f);
  const __m512i h = e4m3_as_f16(q);
  const __m512 sv = _mm512_set1_ps(scale * 256.f);
  const __m512 qnan = _mm512_set1_ps(__builtin_nanf(""));
  lo = _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), sv), __mmask16(nan), qnan);
  hi = _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), sv), __mmask16(nan >> 16), qnan);
}

// A thread's grow-only, 64-byte aligned scratch for packed weight panels (the prefill GEMMs pack
// whole rows once per call): plain operator new / delete, no library templates that this file's
// flags could instantiate for the whole program. Grows on the first call with a longer K only.
struct PanelScratch {
  void* p = nullptr;
  size_t cap = 0;
  ~PanelScratch() { release(); }
  void* get(size_t bytes) {
    if (bytes > cap) {
      release();
      p = ::operator new(bytes, std::align_val_t(64));
      cap = bytes;
    }
    return p;
  }
  void release() {
    if (p) ::operator delete(p, std::align_val_t(64));
    p = nullptr;
    cap = 0;
  }
};

}  // namespace
}  // namespace dseek::mm
