#include "dseek/runtime/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/huge_buffer.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"
#include "dseek/kernels/stream_read.h"

namespace dseek {

namespace {

constexpr uint64_t kFillStep = 0x9E3779B97F4A7C15ull;

// Bytes of [p, p + size) backed by transparent huge pages: AnonHugePages of the mappings that
// overlap it in /proc/self/smaps, at most `size` (0 where the file does not exist).
int64_t huge_page_bytes(const void* p, int64_t size) {
  std::ifstream f("/proc/self/smaps");
  const uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + uintptr_t(size);
  std::string line;
  bool inside = false;
  int64_t kb = 0;
  while (std::getline(f, line)) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2)  // a mapping's header line
      inside = lo < e && hi > b;
    else if (inside && line.rfind("AnonHugePages:", 0) == 0)
      kb += std::atoll(line.c_str() + 14);
  }
  return std::min(kb * 1024, size);
}

}  // namespace

int64_t file_huge_page_bytes() {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("FilePmdMapped:", 0) == 0) return std::atoll(line.c_str() + 14) * 1024;
  return 0;
}

uint64_t read_bandwidth_checksum(int64_t bytes) {
  const uint64_t w = uint64_t(bytes / 64) * 8;  // words; Σ i for i < w, mod 2^64
  const uint64_t tri = w % 2 == 0 ? (w / 2) * (w - 1) : w * ((w - 1) / 2);
  return tri * kFillStep;
}

struct ReadProbe::Impl {
  ThreadPool& pool;
  int64_t lines;
  HugeBuffer buf;  // huge pages: in A/B runs here the same loop read up to ~7 % more than on 4 KiB pages
  Impl(ThreadPool& p, int64_t l) : pool(p), lines(l), buf(size_t(l) * 64, "read bandwidth probe") {}
};

// Threads get whole huge pages (the last part may be shorter), split the same way for the first
// touch and every pass, so each thread reads the memory it placed (first-touch NUMA placement).
constexpr int64_t kGrain = int64_t(HugeBuffer::kHugePage) / 64;

ReadProbe::ReadProbe(ThreadPool& pool, int64_t bytes) {
  if (bytes < 64) throw Error("read bandwidth probe: needs at least 64 bytes");
  impl_ = std::make_unique<Impl>(pool, bytes / 64);
  uint8_t* const data = impl_->buf.data();
  pool.parallel_for(impl_->lines, [&](int64_t b, int64_t e) {
    uint64_t* w = reinterpret_cast<uint64_t*>(data);
    for (int64_t i = b * 8; i < e * 8; ++i) w[i] = uint64_t(i) * kFillStep;
  }, kGrain);
}

ReadProbe::~ReadProbe() = default;

ReadBandwidth ReadProbe::measure(int reps) const {
  if (reps < 1) throw Error("read bandwidth probe: needs at least 1 repetition");
  ThreadPool& pool = impl_->pool;
  const int64_t lines = impl_->lines;
  uint8_t* const data = impl_->buf.data();
  ReadBandwidth r;
  r.bytes = lines * 64;
  r.huge_page_bytes = huge_page_bytes(data, r.bytes);
  r.kernel = stream_read_kernel_name();
  std::vector<uint64_t> part(size_t(pool.size()) * 8);  // a cache line per thread
  std::vector<double> gbs;
  for (int rep = -1; rep < reps; ++rep) {  // rep -1 warms up (TLB, pool threads) and is not timed
    std::fill(part.begin(), part.end(), 0);
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for_tid(lines, [&](int tid, int64_t b, int64_t e) {
      part[size_t(tid) * 8] += stream_read(data + b * 64, (e - b) * 64);
    }, kGrain);
    const double sec = std::max(1e-9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    r.checksum = 0;
    for (size_t t = 0; t < part.size(); t += 8) r.checksum += part[t];
    if (rep >= 0) gbs.push_back(double(r.bytes) / sec / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  r.median_gbs = gbs[gbs.size() / 2];
  r.best_gbs = gbs.back();
  r.min_gbs = gbs.front();
  return r;
}

ReadBandwidth measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int reps) {
  if (bytes < 64 || reps < 1) throw Error("read bandwidth probe: needs at least 64 bytes and 1 repetition");
  return ReadProbe(pool, bytes).measure(reps);
}

namespace {
int64_t mlp_bytes(const MlpWeights& m) { return mat_bytes(m.gate_proj) + mat_bytes(m.up_proj) + mat_bytes(m.down_proj); }
}  // namespace

int64_t decode_bytes_per_token(const Model& model, int64_t ctx, KVDtype kv) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  int64_t b = quant_row_bytes(w.embed_tokens.dtype, w.embed_tokens.cols) + mat_bytes(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    const MlaWeights& a = L.self_attn;
    for (const MatView* m : {&a.q_proj, &a.q_a_proj, &a.q_b_proj, &a.kv_a_proj_with_mqa, &a.kv_b_proj, &a.o_proj})
      if (!m->empty()) b += mat_bytes(*m);
    if (a.indexer.present())
      b += mat_bytes(a.indexer.wq_b) + mat_bytes(a.indexer.wk) + mat_bytes(a.indexer.weights_proj) +
           ctx * (c.index_head_dim + 1) * 4;
    b += ctx * c.kv_latent_dim() * kv_value_bytes(kv);
    if (L.is_moe) {
      b += mat_bytes(L.moe.gate) + c.num_experts_per_tok * mlp_bytes(L.moe.experts[0]);
      if (L.moe.has_shared()) b += mlp_bytes(L.moe.shared_experts);
    } else {
      b += mlp_bytes(L.mlp);
    }
  }
  return b;
}

}  // namespace dseek
