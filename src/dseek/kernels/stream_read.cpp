#include "dseek/kernels/stream_read.h"

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"

namespace dseek {

uint64_t stream_read_ref(const void* p, int64_t bytes) {
  DSEEK_CHECK(bytes >= 0 && bytes % 64 == 0, "stream_read: bytes must be a multiple of 64");
  const uint64_t* w = static_cast<const uint64_t*>(p);
  uint64_t a[8] = {};
  for (int64_t i = 0; i < bytes / 8; i += 8)
#pragma GCC unroll 8  // keeps the accumulators in registers
    for (int k = 0; k < 8; ++k) a[k] += w[i + k];
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

namespace {
bool use_avx512() {
  static const bool v = cpu_features().avx512f;
  return v;
}
}  // namespace

uint64_t stream_read(const void* p, int64_t bytes) {
  DSEEK_CHECK(bytes >= 0 && bytes % 64 == 0, "stream_read: bytes must be a multiple of 64");
  DSEEK_CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0, "stream_read: buffer must be 64-byte aligned");
  return use_avx512() ? stream_read_avx512(p, bytes) : stream_read_ref(p, bytes);
}

const char* stream_read_kernel_name() {
  return use_avx512() ? "avx512 (4 streams)" : "portable (8 scalar accumulators)";
}

}  // namespace dseek
