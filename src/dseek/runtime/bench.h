// Measurements for `dseek bench`: the machine's read bandwidth and the bytes a decode step reads,
// so decode speed can be stated as a fraction of the memory-bandwidth roofline.
#pragma once

#include <cstdint>
#include <memory>

#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"

namespace dseek {

// The machine's sustained read bandwidth: the ceiling that `dseek bench` and bench/matmul_bench
// state decode speed against (docs/performance.md).
struct ReadBandwidth {
  double median_gbs = 0, best_gbs = 0, min_gbs = 0;  // over the timed repetitions
  int64_t bytes = 0;            // read per repetition (the request rounded down to 64 bytes)
  int64_t huge_page_bytes = 0;  // of the buffer backed by transparent huge pages (Linux; else 0)
  const char* kernel = "";      // stream_read_kernel_name()
  uint64_t checksum = 0;        // stream_read's word sum of the buffer (read_bandwidth_checksum)
};

// Default probe size: large enough that no cache holds any of it between passes.
constexpr int64_t kReadBandwidthBytes = int64_t(2) << 30;

// Streams `bytes` (>= 64) from an anonymous, 2 MiB-aligned mapping with MADV_HUGEPAGE (plain
// pages where that is unavailable) that the pool's threads first-touched, each thread reading its
// own contiguous part with stream_read(). One untimed pass, then `reps` (>= 1) timed passes of
// the whole buffer; GB/s = bytes / wall time of a pass.
ReadBandwidth measure_read_bandwidth(ThreadPool& pool, int64_t bytes = kReadBandwidthBytes, int reps = 9);

// The same probe with its buffer kept, to measure again and again (e.g. beside each decode run of
// `dseek bench`, so that the roofline is the bandwidth of the same minute on a shared machine).
class ReadProbe {
 public:
  ReadProbe(ThreadPool& pool, int64_t bytes);  // allocates and first-touches the buffer
  ~ReadProbe();
  ReadProbe(const ReadProbe&) = delete;
  ReadProbe& operator=(const ReadProbe&) = delete;
  ReadBandwidth measure(int reps) const;  // one untimed pass, then `reps` timed ones

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The checksum a correct measure_read_bandwidth(…, bytes, …) returns: the buffer holds 64-bit
// word i = i * 0x9E3779B97F4A7C15.
uint64_t read_bandwidth_checksum(int64_t bytes);

// Bytes one decode step reads at context length `ctx`: every dense weight, the router gates, the
// num_experts_per_tok routed experts and the shared experts of each MoE layer, the lm_head, one
// embedding row, and the latent cache rows (ctx x (kv_lora_rank + qk_rope_head_dim) values per layer,
// 4 bytes each, 2 with a bf16 cache).
int64_t decode_bytes_per_token(const Model& model, int64_t ctx, KVDtype kv = KVDtype::kF32);

// Bytes of this process's file mappings (the checkpoint's weights) that are mapped with 2 MiB pages
// (FilePmdMapped in /proc/self/smaps_rollup; 0 where unavailable). Decode streams the weights, and
// 4 KiB pages cost it ~25 % at BF16 here (docs/performance.md).
int64_t file_huge_page_bytes();

}  // namespace dseek
