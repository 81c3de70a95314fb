// 16 x 16 transpose of 32-bit words in 16 zmm registers, and the transposing reduction of 16
// vectors, shared by the AVX-512 kernel files (matmul_avx512.cpp, gemm_bf16_avx512.cpp,
// attention_decode_avx512.cpp). Include it only from files compiled with AVX-512
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

// Lane i of the result = the sum of the 16 lanes of v[i]: a tree of in-lane and cross-lane shuffles,
// ~3 instructions per row instead of a full horizontal reduction (~8, one long chain) each.
inline __m512 reduce16(const __m512 (&v)[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: (v0+v2, w0+w2, v1+v3, w1+w3) of v = v[2i], w = v[2i + 1]
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: one partial sum of rows 4i .. 4i + 3
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)  // add 128-bit lanes pairwise
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xdd));
}

}  // namespace
}  // namespace dseek
