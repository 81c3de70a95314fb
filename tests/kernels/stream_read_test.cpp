// stream_read (the bandwidth probe's loop): every dispatched kernel returns the exact wrapping sum
// of the buffer's 64-bit words, including lengths that are not a multiple of its 512-byte step.
#include "dseek/kernels/stream_read.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"

namespace dseek {
namespace {

TEST(StreamRead, AllKernelsReturnTheWordSum) {
  std::vector<uint64_t> store((1 << 17) + 8);
  uint64_t* buf = store.data();
  while (reinterpret_cast<uintptr_t>(buf) % 64 != 0) ++buf;
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < (1 << 17); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[i] = x;
  }
  for (int64_t bytes : {int64_t(0), int64_t(64), int64_t(448), int64_t(512), int64_t(576), int64_t(1088),
                        int64_t(4096 + 3 * 64), int64_t(1) << 20}) {
    uint64_t want = 0;
    for (int64_t i = 0; i < bytes / 8; ++i) want += buf[i];
    EXPECT_EQ(stream_read(buf, bytes), want) << bytes;
    EXPECT_EQ(stream_read_ref(buf, bytes), want) << bytes;
    if (cpu_features().avx512f) {
      EXPECT_EQ(stream_read_avx512(buf, bytes), want) << bytes;
    }
  }
  EXPECT_NE(std::string(stream_read_kernel_name()), "");
}

TEST(StreamRead, RejectsMisalignedOrPartialLines) {
  alignas(64) uint64_t buf[32] = {};
  EXPECT_THROW(stream_read(buf, 100), Error);
  EXPECT_THROW(stream_read(buf + 1, 64), Error);
}

}  // namespace
}  // namespace dseek
