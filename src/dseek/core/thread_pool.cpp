#include "dseek/core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSEEK_CPU_RELAX() _mm_pause()
#else
#define DSEEK_CPU_RELAX() ((void)0)
#endif

namespace dseek {

namespace {
// Decode issues hundreds of short parallel_for calls per token; waking a sleeping thread costs
// tens of microseconds, so workers and the caller spin this many pauses (~20-50 us) before sleeping.
constexpr int kSpinIterations = 1 << 12;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  parallel_for_tid(n, [&fn](int, int64_t b, int64_t e) { fn(b, e); }, grain);
}

void ThreadPool::parallel_for_tid(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units == 1) {
    fn(0, 0, n);
    return;
  }
  const int64_t chunk = ((units + n_threads_ - 1) / n_threads_) * grain;
  // The job fields are published by the release increment of generation_ (workers acquire it).
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);  // a sleeping worker checks generation_ under the lock
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  fn(0, 0, std::min(n, chunk));  // the caller takes chunk 0
  for (int i = 0; i < kSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++i) DSEEK_CPU_RELAX();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  job_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; i < kSpinIterations && g == seen && !stop_.load(std::memory_order_relaxed); ++i) {
      DSEEK_CPU_RELAX();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      start_cv_.wait(lk, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = g;
    const int64_t begin = std::min(job_n_, index * job_chunk_);
    const int64_t end = std::min(job_n_, begin + job_chunk_);
    if (begin < end) (*job_)(index, begin, end);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);  // pairs with the caller's predicate check
      done_cv_.notify_one();
    }
  }
}

}  // namespace dseek
