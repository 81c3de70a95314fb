// AVX-512 streaming read for the memory-bandwidth probe (stream_read.h). Compiled with -mavx512f
// (CMakeLists.txt); stream_read.cpp calls it only when cpu_features().avx512f. Includes nothing but
// <immintrin.h> and the declarations-only header, and keeps its constants in an anonymous
// namespace (docs/kernels.md).
#include "dseek/kernels/stream_read.h"

#if defined(__AVX512F__)

#include <immintrin.h>

namespace dseek {

namespace {
// Four sequential streams, one per quarter of the range, two lines of each per step into 8
// independent accumulators (in registers). A core keeps more misses in flight over several streams
// than over one, and the decode kernels read that way (BF16 rows spread over 4 streams,
// matmul_avx512.cpp), so a one-stream probe understated the roofline: they read 100-128 % of it.
// Standalone harness (Zen 5, 2 threads, 2 GiB with huge pages, medians of 7 passes, 5 alternated
// rounds, 2026-12-08): one stream 52-58 GB/s, four 66-67. (One stream, 2026-11-23: 8, 12 or 16
// accumulators 74-77 GB/s, 4: 70, 32: 64-69; a software prefetch 1-8 KiB ahead lowered it.)
constexpr int kLines = 8;
constexpr int kStreams = 4;
}  // namespace

uint64_t stream_read_avx512(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  __m512i a[kLines];
  // Fully unrolled so that the accumulators live in registers (-O2 alone keeps them on the stack).
#pragma GCC unroll 32
  for (int k = 0; k < kLines; ++k) a[k] = _mm512_setzero_si512();
  constexpr int kPer = kLines / kStreams;  // lines of each stream per step
  const int64_t q = bytes / kStreams / (64 * kPer) * (64 * kPer);
  for (int64_t o = 0; o < q; o += 64 * kPer) {
#pragma GCC unroll 32
    for (int k = 0; k < kLines; ++k)
      a[k] = _mm512_add_epi64(a[k], _mm512_load_si512(c + (k / kPer) * q + o + 64 * (k % kPer)));
  }
  for (const char* t = c + kStreams * q; t < c + bytes; t += 64) a[0] = _mm512_add_epi64(a[0], _mm512_load_si512(t));
#pragma GCC unroll 32
  for (int k = 1; k < kLines; ++k) a[0] = _mm512_add_epi64(a[0], a[k]);
  // Horizontal sum through memory (GCC 12's reduce intrinsics trip -Wuninitialized).
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, a[0]);
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  return s;
}

}  // namespace dseek

#else  // built without AVX-512 flags (non-x86 hosts): stream_read() never selects this kernel

#include "dseek/core/error.h"

namespace dseek {
uint64_t stream_read_avx512(const void*, int64_t) { throw Error("stream_read: AVX-512 kernel not compiled in"); }
}  // namespace dseek

#endif
