// AMX variant of the training GEMM's bf16 micro-kernel (gemm.h, GemmPrecision::kBf16): the same
// operands and rounding as gemm_bf16_avx512.cpp (A and B rounded to bf16 as they are packed, float32
// sums), on TDPBF16PS tiles. gemm.cpp calls it only where matmul's kAmx is available (the CPU has
// AMX-BF16 and the kernel granted the tile state).
//
// B comes packed by pack_b_bf16_avx512: per k pair, 32 columns of (k, k + 1) words, which is two
// AMX B tiles side by side (row stride 128 bytes). A is packed here per 32 rows, row-major in pairs
// (16 pairs = one 64-byte tile row per 32 k). Each 32 x 32 block of C keeps 2 x 2 accumulator tiles
// over the k block (kc <= kKC = 256: at most 8 steps of 32), loaded from C when accumulating.
#include "dseek/kernels/gemm_kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)

#include <immintrin.h>

#include <algorithm>

#include "dseek/kernels/amx_tiles.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek::gemm {

namespace {

constexpr int64_t kMaxPairs = kKC / 2;

inline __mmask16 mask16(int64_t n) { return n <= 0 ? __mmask16(0) : n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// A rows [m0, m0 + 32) (zeros past `rows`) as ap[i * stride + p] = pair p of row i, p < steps * 16.
void pack_a(uint32_t* ap, int64_t stride, const Block& b, int64_t m0, int64_t rows, int64_t steps) {
  const int64_t pairs16 = steps * 16;
  for (int64_t i = 0; i < 32; ++i)
    if (i >= rows)
      for (int64_t p = 0; p < pairs16; p += 16) _mm512_store_si512(ap + i * stride + p, _mm512_setzero_si512());
  if (b.acs == 1) {  // rows contiguous along k
    for (int64_t i = 0; i < rows; ++i) {
      const float* a = b.A + (m0 + i) * b.ars;
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t k = 32 * s;
        const __m512 lo = _mm512_maskz_loadu_ps(mask16(b.kc - k), a + k);
        const __m512 hi = _mm512_maskz_loadu_ps(mask16(b.kc - k - 16), a + k + 16);
        _mm512_store_si512(ap + i * stride + 16 * s, pairs_along(lo, hi));
      }
    }
    return;
  }
  // ars == 1: a(·, k) contiguous along the rows. 16 rows x 16 pairs, transposed in registers.
  for (int64_t h = 0; h * 16 < rows; ++h) {
    const __mmask16 m = mask16(rows - 16 * h);
    for (int64_t s = 0; s < steps; ++s) {
      __m512 v[16];
      for (int q = 0; q < 16; ++q) {
        const int64_t k = 32 * s + 2 * q;
        const float* col = b.A + (m0 + 16 * h) * b.ars + k * b.acs;
        const __m512 lo = k < b.kc ? _mm512_maskz_loadu_ps(m, col) : _mm512_setzero_ps();
        const __m512 hi = k + 1 < b.kc ? _mm512_maskz_loadu_ps(m, col + b.acs) : _mm512_setzero_ps();
        v[q] = _mm512_castsi512_ps(pairs_across(lo, hi));  // word i = pair q of row 16 h + i
      }
      transpose16(v);
      for (int i = 0; i < 16 && 16 * h + i < rows; ++i) _mm512_store_ps(ap + (16 * h + i) * stride + 16 * s, v[i]);
    }
  }
}

// C tile (16 rows from r, 16 columns from c) in or out: direct when whole, else through a buffer.
template <int T>
inline void load_c(const Block& b, int64_t r, int64_t c, float* buf) {
  const int64_t nr = std::min<int64_t>(16, b.rows - r), nc = std::min<int64_t>(16, b.cols - c);
  if (!b.accumulate || nr <= 0 || nc <= 0) {
    amx_zero<T>();
    return;
  }
  if (nr == 16 && nc == 16) return amx_load<T>(b.C + r * b.ldc + c, b.ldc * 4);
  for (int64_t i = 0; i < 16; ++i)
    _mm512_store_ps(buf + 16 * i, i < nr ? _mm512_maskz_loadu_ps(mask16(nc), b.C + (r + i) * b.ldc + c) : _mm512_setzero_ps());
  amx_load<T>(buf, 64);
}
template <int T>
inline void store_c(const Block& b, int64_t r, int64_t c, float* buf) {
  const int64_t nr = std::min<int64_t>(16, b.rows - r), nc = std::min<int64_t>(16, b.cols - c);
  if (nr <= 0 || nc <= 0) return;
  if (nr == 16 && nc == 16) return amx_store<T>(b.C + r * b.ldc + c, b.ldc * 4);
  amx_store<T>(buf, 64);
  for (int64_t i = 0; i < nr; ++i) _mm512_mask_storeu_ps(b.C + (r + i) * b.ldc + c, mask16(nc), _mm512_load_ps(buf + 16 * i));
}

}  // namespace

void block_bf16_amx(const Block& b) {
  const int64_t pairs = (b.kc + 1) / 2, steps = (pairs + 15) / 16, tail = pairs - 16 * (steps - 1);
  const int64_t stride = steps * 16;  // words per packed A row
  alignas(64) uint32_t ap[32 * kMaxPairs];
  alignas(64) uint32_t btail[16 * kNR];  // the last k step of a panel, zero-padded to 16 pairs
  alignas(64) float buf[256];
  amx_load_config();
  for (int64_t m0 = 0; m0 < b.rows; m0 += 32) {
    const int64_t rows = std::min<int64_t>(32, b.rows - m0);
    pack_a(ap, stride, b, m0, rows, steps);
    for (int64_t n0 = 0; n0 < b.cols; n0 += kNR) {
      const uint32_t* bp = reinterpret_cast<const uint32_t*>(b.Bp) + (n0 / kNR) * pairs * kNR;
      if (tail < 16) {
        const uint32_t* src = bp + (steps - 1) * 16 * kNR;
        for (int64_t p = 0; p < 16; ++p)
          for (int h = 0; h < 2; ++h)
            _mm512_store_si512(btail + p * kNR + 16 * h,
                               p < tail ? _mm512_loadu_si512(src + p * kNR + 16 * h) : _mm512_setzero_si512());
      }
      load_c<0>(b, m0, n0, buf);
      load_c<1>(b, m0, n0 + 16, buf);
      load_c<2>(b, m0 + 16, n0, buf);
      load_c<3>(b, m0 + 16, n0 + 16, buf);
      for (int64_t s = 0; s < steps; ++s) {
        const uint32_t* bs = s == steps - 1 && tail < 16 ? btail : bp + s * 16 * kNR;
        _tile_loadd(4, ap + 16 * s, stride * 4);
        _tile_loadd(5, ap + 16 * stride + 16 * s, stride * 4);
        _tile_loadd(6, bs, kNR * 4);
        _tile_loadd(7, bs + 16, kNR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      store_c<0>(b, m0, n0, buf);
      store_c<1>(b, m0, n0 + 16, buf);
      store_c<2>(b, m0 + 16, n0, buf);
      store_c<3>(b, m0 + 16, n0 + 16, buf);
    }
  }
  _tile_release();
}

bool bf16_amx_built() { return true; }

}  // namespace dseek::gemm

#else  // built without AMX flags: gemm.cpp never selects this kernel

#include "dseek/core/error.h"

namespace dseek::gemm {
void block_bf16_amx(const Block&) { throw Error("gemm: AMX kernel not compiled in"); }
bool bf16_amx_built() { return false; }
}  // namespace dseek::gemm

#endif
