// bf16 pair words for vdpbf16ps and the AMX BF16 tiles, which multiply 32-bit words holding two bf16
// values (low half first). Only for files compiled with AVX-512 BF16 (CMakeLists.txt).
#pragma once

#include <immintrin.h>

namespace dseek {
namespace {

// 32 consecutive values (lo = the first 16) as 16 bf16 pairs in column order (nearest even).
inline __m512i pairs_along(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
// Word i = (lo[i], hi[i]) as bf16, lo in the low half.
inline __m512i pairs_across(__m512 lo, __m512 hi) {
  const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                                       20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, v);
}

}  // namespace
}  // namespace dseek
