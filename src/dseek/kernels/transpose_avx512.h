// 16 x 16 transpose of 32-bit words in 16 zmm registers, shared by the AVX-512 kernel files
// (matmul_avx512.cpp, gemm_bf16_avx512.cpp). Include it only from files compiled with AVX-512
// flags: the function lives in an anonymous namespace, so each such file gets its own copy and the
// linker can never hand an AVX-512 body to code built for plain x86-64 (see matmul_kernels.h).
#pragma once

#include <immintrin.h>

namespace dseek {
namespace {

// After the call, r[j] holds what was column j: word i of r[j] = word j of the old r[i].
inline void transpose16(__m512 (&r)[16]) {
  __m512 a[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // b[4g + j], 128-bit lane L: rows 4g .. 4g + 3 at column 4L + j.
  __m512 b[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d p0 = _mm512_castps_pd(a[4 * g]), p1 = _mm512_castps_pd(a[4 * g + 1]);
    const __m512d p2 = _mm512_castps_pd(a[4 * g + 2]), p3 = _mm512_castps_pd(a[4 * g + 3]);
    b[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(p0, p2));
    b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p2));
    b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(p1, p3));
    b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(p1, p3));
  }
  // A 4 x 4 transpose of 128-bit lanes for each j: column 4L + j = [b[j].L, b[4 + j].L, b[8 + j].L, b[12 + j].L].
  for (int j = 0; j < 4; ++j) {
    const __m512 c0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88), c1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
    const __m512 c2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88), c3 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
    r[j] = _mm512_shuffle_f32x4(c0, c2, 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(c0, c2, 0xdd);
    r[4 + j] = _mm512_shuffle_f32x4(c1, c3, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(c1, c3, 0xdd);
  }
}

}  // namespace
}  // namespace dseek
