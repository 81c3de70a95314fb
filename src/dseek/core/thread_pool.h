// A persistent pool of worker threads that splits index ranges across cores.
//
// Owned by the caller (Engine, tests) and passed explicitly; no global pool.
// parallel_for is synchronous: it returns when every chunk has run.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dseek {

class ThreadPool {
 public:
  // n_threads counts the calling thread; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(begin, end) over [0, n) split into one contiguous chunk per thread
  // (chunks are multiples of `grain`, except the last).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);
  // Same, also passing the index of the running thread in [0, size()) so a chunk can use that
  // thread's slice of a scratch buffer.
  void parallel_for_tid(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker(int index);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int, int64_t, int64_t)>* job_ = nullptr;  // published by generation_
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;
  std::atomic<uint64_t> generation_{0};  // bumped once per parallel_for
  std::atomic<int> pending_{0};          // workers still running the current job
  std::atomic<bool> stop_{false};
};

}  // namespace dseek
