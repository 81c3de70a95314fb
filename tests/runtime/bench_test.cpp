// The read-bandwidth probe of `dseek bench` and matmul_bench on small buffers: it runs, reads every
// word once (checksum), and reports a positive, finite rate. Its speed is not checked here.
#include "dseek/runtime/bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "dseek/core/error.h"

namespace dseek {
namespace {

void expect_sane(const ReadBandwidth& r, int64_t bytes) {
  EXPECT_EQ(r.bytes, bytes / 64 * 64);
  EXPECT_TRUE(std::isfinite(r.median_gbs) && std::isfinite(r.best_gbs) && std::isfinite(r.min_gbs));
  EXPECT_GT(r.min_gbs, 0.0);
  EXPECT_LE(r.min_gbs, r.median_gbs);
  EXPECT_LE(r.median_gbs, r.best_gbs);
  EXPECT_GE(r.huge_page_bytes, 0);
  EXPECT_LE(r.huge_page_bytes, r.bytes);
  EXPECT_NE(std::string(r.kernel), "");
  EXPECT_EQ(r.checksum, read_bandwidth_checksum(r.bytes));
}

TEST(ReadBandwidth, SmallBufferAcrossThreadsGivesPositiveFiniteRate) {
  ThreadPool pool(2);
  // 8 MiB + 5 lines + 3 bytes: whole 2 MiB parts for the threads, a short last part, a partial line.
  const int64_t bytes = (int64_t(8) << 20) + 5 * 64 + 3;
  expect_sane(measure_read_bandwidth(pool, bytes, 3), bytes);
}

TEST(ReadBandwidth, TinyBufferOneThread) {
  ThreadPool pool(1);
  expect_sane(measure_read_bandwidth(pool, 64, 1), 64);
  expect_sane(measure_read_bandwidth(pool, 4096 + 64, 2), 4096 + 64);
}

TEST(ReadBandwidth, RejectsEmptyBufferOrNoRepetition) {
  ThreadPool pool(1);
  EXPECT_THROW(measure_read_bandwidth(pool, 63, 1), Error);
  EXPECT_THROW(measure_read_bandwidth(pool, 4096, 0), Error);
}

TEST(ReadBandwidth, ChecksumIsTheSumOfTheFilledWords) {
  for (int64_t bytes : {int64_t(64), int64_t(512), int64_t(4096 + 64)}) {
    uint64_t want = 0;
    for (uint64_t i = 0; i < uint64_t(bytes / 8); ++i) want += i * 0x9E3779B97F4A7C15ull;
    EXPECT_EQ(read_bandwidth_checksum(bytes), want) << bytes;
  }
}

}  // namespace
}  // namespace dseek
