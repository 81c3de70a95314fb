// The read-bandwidth probe of `dseek bench` and matmul_bench on small buffers: it runs, reads every
// word once (checksum), and reports a positive, finite rate. Its speed is not checked here.
#include "dseek/runtime/bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstdint>
#include <string>

#include "common/test_util.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

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

// ReadProbe keeps its buffer: every measurement reads the same words (checksum) and gives a rate.
TEST(ReadBandwidth, ProbeMeasuresAgainAndAgain) {
  ThreadPool pool(2);
  const int64_t bytes = (int64_t(4) << 20) + 64;
  const ReadProbe probe(pool, bytes);
  for (int i = 0; i < 3; ++i) expect_sane(probe.measure(2), bytes);
  EXPECT_THROW(probe.measure(0), Error);
  EXPECT_THROW(ReadProbe(pool, 63), Error);
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

// file_huge_page_bytes parses /proc/self/smaps_rollup: with a mapped, touched file it is a byte
// count between 0 and the process's resident set (huge folios depend on the file system).
TEST(FileHugePages, WithinTheResidentSet) {
  const std::string dir = test::make_temp_dir("bench_test");
  const std::string path = dir + "/weights.bin";
  test::write_text(path, std::string(size_t(8) << 20, 'x'));
  MappedFile f(path);
  uint64_t sum = 0;
  for (size_t i = 0; i < f.size(); i += 4096) sum += f.data()[i];
  EXPECT_EQ(sum, uint64_t('x') * (f.size() / 4096));
  std::ifstream st("/proc/self/status");
  if (!st) GTEST_SKIP() << "no /proc";
  int64_t rss_kb = -1;
  for (std::string line; std::getline(st, line);)
    if (line.rfind("VmRSS:", 0) == 0) rss_kb = std::atoll(line.c_str() + 6);
  ASSERT_GT(rss_kb, 0);
  const int64_t huge = file_huge_page_bytes();
  EXPECT_GE(huge, 0);
  EXPECT_LE(huge, rss_kb * 1024);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dseek
