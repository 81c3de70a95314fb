// AVX-512 attention_softmax and swiglu (softmax.h). Compiled with AVX-512 F/BW/VL and FMA (CMakeLists.txt);
// called only when cpu_features() reports them. Prefill attention runs it on every (query, head) row
// of scores: libm's expf one element at a time was ~10 % of prefill at 4096 positions.
#include "dseek/kernels/softmax.h"

#if defined(__AVX512F__) && defined(__FMA__)

#include <immintrin.h>

#include <limits>

#include "dseek/kernels/exp_avx512.h"
#include "dseek/kernels/masks_avx512.h"

namespace dseek {

namespace {
using mm::mask16;

// Lanes of s[j .. j + 16) (m: the valid ones) scaled, the masked-out ones -inf.
inline __m512 scaled(const float* s, const uint8_t* allowed, int64_t j, __mmask16 m, __m512 scale) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 keep = m;
  if (allowed) keep &= _mm512_test_epi32_mask(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, allowed + j)),
                                              _mm512_set1_epi32(0xff));
  return _mm512_mask_mul_ps(neg_inf, keep, _mm512_maskz_loadu_ps(m, s + j), scale);
}
}  // namespace

void attention_softmax_avx512(float* s, int64_t n, float scale, const uint8_t* allowed) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m512 sc = _mm512_set1_ps(scale);
  __m512 mx = _mm512_set1_ps(neg_inf);
  for (int64_t j = 0; j < n; j += 16) mx = _mm512_max_ps(mx, scaled(s, allowed, j, mask16(n - j), sc));
  const float m = _mm512_reduce_max_ps(mx);
  if (m == neg_inf) {  // every entry masked out
    for (int64_t j = 0; j < n; j += 16) _mm512_mask_storeu_ps(s + j, mask16(n - j), _mm512_setzero_ps());
    return;
  }
  const __m512 mv = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lm = mask16(n - j);
    const __m512 x = scaled(s, allowed, j, lm, sc);
    // exp512 clamps -inf to e^-87: masked entries must be exactly 0
    const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ) & lm,
                                         exp512(_mm512_sub_ps(x, mv)));
    _mm512_mask_storeu_ps(s + j, lm, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 lm = mask16(n - j);
    _mm512_mask_storeu_ps(s + j, lm, _mm512_mul_ps(_mm512_maskz_loadu_ps(lm, s + j), inv));
  }
}

void exp_shifted_avx512(float* out, const float* x, int64_t n, float shift, float scale) {
  const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-87.f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask16(n - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh);
    // d == 0 -> exponent 0 even for an infinite scale; below -87 (and -inf) exactly 0, as exp512
    // would clamp there to e^-87
    const __m512 e = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ), d, sc);
    _mm512_mask_storeu_ps(out + i, m, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(e, lo, _CMP_NLT_UQ), exp512(e)));
  }
}

void swiglu_avx512(float* out, const float* gate, const float* up, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f), inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask16(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    // exp512 clamps its argument at 88; past it e^-g is +inf as in libm, so g / (1 + e^-g) is -0.
    const __mmask16 big = _mm512_cmp_ps_mask(g, _mm512_set1_ps(-88.f), _CMP_LT_OQ);
    const __m512 den = _mm512_mask_blend_ps(big, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))), inf);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, den), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace dseek

#else  // built without AVX-512 flags (non-x86 hosts): attention_softmax never selects this kernel

#include "dseek/core/error.h"

namespace dseek {
void attention_softmax_avx512(float*, int64_t, float, const uint8_t*) {
  throw Error("softmax: AVX-512 kernel not compiled in");
}
void swiglu_avx512(float*, const float*, const float*, int64_t) { throw Error("swiglu: AVX-512 kernel not compiled in"); }
void exp_shifted_avx512(float*, const float*, int64_t, float, float) {
  throw Error("exp_shifted: AVX-512 kernel not compiled in");
}
}  // namespace dseek

#endif
