// e^x on 16 floats, shared by the AVX-512 kernel files (attention_decode_avx512.cpp,
// softmax_avx512.cpp). Include it only from files compiled with AVX-512 flags: it lives in an
// anonymous namespace, so each such file gets its own copy (see matmul_kernels.h).
#pragma once

#include <immintrin.h>

namespace dseek {
namespace {

// e^x, Cephes' expf scheme (as train/ops.cpp exp_vec): n = round(x / ln 2), r = x - n ln 2 in two
// parts, a degree-6 polynomial on [-ln2/2, ln2/2], then 2^n by vscalefps. x is clamped to
// [-87, 88]; callers zero what must be exactly 0 (masked rows).
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(88.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace dseek
