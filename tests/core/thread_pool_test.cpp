#include "dseek/core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <vector>

namespace dseek {
namespace {

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1001}) {
      for (int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        }, grain);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << threads << " " << n << " " << i;
      }
    }
  }
}

TEST(ThreadPool, ReusableManyTimes) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep)
    pool.parallel_for(10, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 20000);
}

}  // namespace
}  // namespace dseek

namespace dseek {
namespace {

TEST(ThreadPool, ThreadIndexIsInRangeAndDistinctPerChunk) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> owner(300);
  for (auto& o : owner) o = -1;
  pool.parallel_for_tid(300, [&](int tid, int64_t b, int64_t e) {
    ASSERT_GE(tid, 0);
    ASSERT_LT(tid, 3);
    for (int64_t i = b; i < e; ++i) owner[size_t(i)] = tid;
  });
  // Contiguous chunks: indices of one chunk share one thread index, chunks differ.
  std::set<int> seen;
  for (auto& o : owner) seen.insert(o.load());
  EXPECT_EQ(seen.size(), 3u);
}

}  // namespace
}  // namespace dseek
