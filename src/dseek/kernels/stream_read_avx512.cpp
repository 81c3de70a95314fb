// AVX-512 streaming read for the memory-bandwidth probe (stream_read.h). Compiled with -mavx512f
// (CMakeLists.txt); stream_read.cpp calls it only when cpu_features().avx512f. Includes nothing but
// <immintrin.h> and the declarations-only header, and keeps its constants in an anonymous
// namespace (docs/kernels.md).
#include "dseek/kernels/stream_read.h"

#if defined(__AVX512F__)

#include <immintrin.h>

namespace dseek {

namespace {
// One 512-byte step: 8 cache lines into 8 independent accumulators (in registers), so the adds never
// wait on each other and the hardware prefetcher sees a plain sequential stream. Variants measured
// here in a standalone harness (Zen 5, 2 threads, 2 GiB with huge pages, medians of 7-9 passes,
// quietest minutes of 2026-11-23): 8, 12 or 16 accumulators 74-77 GB/s (best 75-80), 4: 70,
// 32: 64-69; a software prefetch 1-8 KiB ahead (8 or 16 accumulators) lowered it to 62-71; 1 GiB
// read the same as 2 GiB. measure_read_bandwidth with this loop: 78-79 GB/s median when quiet.
constexpr int kLines = 8;
}  // namespace

uint64_t stream_read_avx512(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  const char* const end = c + bytes;
  __m512i a[kLines];
  // Fully unrolled so that the accumulators live in registers (-O2 alone keeps them on the stack).
#pragma GCC unroll 32
  for (int k = 0; k < kLines; ++k) a[k] = _mm512_setzero_si512();
  for (; end - c >= 64 * kLines; c += 64 * kLines) {
#pragma GCC unroll 32
    for (int k = 0; k < kLines; ++k) a[k] = _mm512_add_epi64(a[k], _mm512_load_si512(c + 64 * k));
  }
  for (; c < end; c += 64) a[0] = _mm512_add_epi64(a[0], _mm512_load_si512(c));
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
