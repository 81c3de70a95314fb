// matmul throughput on DeepSeek-V2-Lite shapes, per weight dtype, for decode (B = 1) and a small
// prefill batch (B = 16) by default, against the machine's read bandwidth measured in the same run.
//
//   matmul_bench [threads=2] [--kernel auto|scalar|avx2|avx512|avx512bf16|amx] [--reps N] [--only DTYPE]
//                [--batches 1,16,512] [--hot] [--shape NxK] [--no-probe]
//
// Weights are random and cycled through enough copies (>= 512 MiB) that every call reads them from
// memory, as decode does with a model much larger than the caches (--hot: one copy, so the shapes
// that fit the caches time the arithmetic alone; --shape 256x2048 with --hot: a matrix that stays in
// L2). Times are medians over the repetitions, with min and max. --no-probe skips the bandwidth
// probe (~40 s of allocating and reading 2 GiB), for quick alternated A/B runs of two builds.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "dseek/core/huge_buffer.h"
#include "dseek/core/thread_pool.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"
#include "dseek/runtime/bench.h"

namespace {

using namespace dseek;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      return c == std::string::npos ? line : line.substr(c + 2);
    }
  return "unknown";
}

std::string commit() {
#ifdef DSEEK_COMMIT
  return DSEEK_COMMIT;
#else
  if (const char* e = std::getenv("DSEEK_COMMIT")) return e;
  std::string out = "unknown";
  if (FILE* p = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, p)) {
      out = buf;
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    }
    pclose(p);
  }
  return out.empty() ? "unknown" : out;
#endif
}

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// Fast deterministic pseudo-random numbers (filling GBs with mt19937 would dominate the run).
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float normalish() {  // sum of 4 uniforms: mean 0, sd ~1
    float a = 0;
    for (int i = 0; i < 4; ++i) a += float(next() >> 40) * (1.f / 16777216.f);
    return (a - 2.f) * 1.732f;
  }
};

// One stored weight matrix: bytes (+ FP8 scales).
struct Weights {
  HugeBuffer bytes;
  std::vector<float> scale_inv;
  MatView view;
};

Weights make_weights(DType t, int64_t N, int64_t K, uint64_t seed) {
  Weights w;
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  const int64_t rb = quant_row_bytes(t, K);
  w.bytes = HugeBuffer(size_t(N * rb), "matmul_bench weights");  // 2 MiB pages, as dseek maps weights
  uint8_t* p = w.bytes.data();
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* r = p + n * rb;
    switch (t) {
      case DType::kF32:
        for (int64_t k = 0; k < K; ++k) {
          const float v = rng.normalish() * 0.02f;
          std::memcpy(r + 4 * k, &v, 4);
        }
        break;
      case DType::kBF16:
        for (int64_t k = 0; k < K; ++k) {
          const uint16_t h = f32_to_bf16(rng.normalish() * 0.02f);
          std::memcpy(r + 2 * k, &h, 2);
        }
        break;
      case DType::kF8E4M3:
        for (int64_t k = 0; k < K; ++k) {
          uint8_t b = uint8_t(rng.next() >> 56);
          if ((b & 0x7f) == 0x7f) b = 0x3c;
          r[k] = b;
        }
        break;
      default:
        for (auto& v : row) v = rng.normalish() * 0.02f;
        if (r16_row_type(t) == DType::kQ8_0)
          quantize_row_q8_0(r, row.data(), K);
        else
          quantize_row_q4_0(r, row.data(), K);
    }
  }
  if (is_r16(t)) {  // quantized as rows above, then interleaved 16 rows at a time
    std::vector<uint8_t> rows(size_t(N * rb));
    std::memcpy(rows.data(), p, rows.size());
    interleave_r16(t, p, rows.data(), N, K);
  }
  w.view.data = p;
  w.view.dtype = t;
  w.view.rows = N;
  w.view.cols = K;
  if (t == DType::kF8E4M3) {
    w.view.block = 128;
    w.scale_inv.assign(size_t(((N + 127) / 128) * ((K + 127) / 128)), 1e-3f);
    w.view.scale_inv = w.scale_inv.data();
  }
  return w;
}

struct LayerShape {
  const char* name;
  int64_t N, K;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int reps = 15;
  MatmulKernel kernel = MatmulKernel::kAuto;
  std::string only;
  bool hot = false;
  bool probe = true;
  LayerShape shape{nullptr, 0, 0};
  std::vector<int64_t> batches = {1, 16};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--kernel" && i + 1 < argc) {
      const std::string k = argv[++i];
      bool found = false;
      for (int v = 0; v < int(MatmulKernel::kSentinel); ++v)
        if (matmul_kernel_family_name(MatmulKernel(v)) == k) {
          kernel = MatmulKernel(v);
          found = true;
        }
      if (!found) {
        std::fprintf(stderr, "unknown kernel %s\n", k.c_str());
        return 2;
      }
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(3, std::atoi(argv[++i]));
    } else if (a == "--no-probe") {
      probe = false;
    } else if (a == "--hot") {  // one copy of each matrix: the small ones stay in cache (compute alone)
      hot = true;
    } else if (a == "--shape" && i + 1 < argc) {  // one N x K shape instead of the V2-Lite list
      long long n = 0, k = 0;
      if (std::sscanf(argv[++i], "%lldx%lld", &n, &k) != 2 || n <= 0 || k <= 0) {
        std::fprintf(stderr, "--shape: expected NxK, e.g. 256x2048\n");
        return 2;
      }
      shape = {"shape", n, k};
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--batches" && i + 1 < argc) {
      batches.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        const long long b = std::strtoll(p, &end, 10);
        if (end == p || b <= 0) {
          std::fprintf(stderr, "--batches: expected positive integers separated by commas\n");
          return 2;
        }
        batches.push_back(b);
        p = *end == ',' ? end + 1 : end;
      }
    } else if (!a.empty() && a[0] != '-') {
      threads = std::max(1, std::atoi(a.c_str()));
    } else {
      std::fprintf(stderr, "usage: %s [threads] [--kernel K] [--reps N] [--only DTYPE] [--batches 1,16,512] [--hot] [--shape NxK] [--no-probe]\n", argv[0]);
      return 2;
    }
  }
  if (!matmul_kernel_supported(kernel)) {
    std::fprintf(stderr, "kernel %s not supported by this CPU\n", std::string(matmul_kernel_family_name(kernel)).c_str());
    return 2;
  }
  ThreadPool pool(threads);
  const ReadBandwidth rb = probe ? measure_read_bandwidth(pool) : ReadBandwidth{};  // as `dseek bench`
  const Stats bw{rb.median_gbs, rb.min_gbs, rb.best_gbs};
  const MatmulKernel resolved = kernel == MatmulKernel::kAuto ? matmul_best_kernel() : kernel;

  std::printf("# matmul_bench  commit %s  cpu \"%s\"  threads %d\n", commit().c_str(), cpu_model().c_str(), threads);
  std::printf("# cpu features: %s\n", cpu_features_str(cpu_features()).c_str());
  std::printf("# compiler: %s, kernel family: %s\n", __VERSION__, std::string(matmul_kernel_family_name(resolved)).c_str());
  if (probe)
    std::printf("# read bandwidth (%s over %.1f GiB, %.0f %% huge pages, %d threads): median %.1f GB/s [%.1f-%.1f]\n",
                rb.kernel, double(rb.bytes) / (1 << 30), 100.0 * double(rb.huge_page_bytes) / double(rb.bytes),
                threads, bw.median, bw.min, bw.max);
  else
    std::printf("# read bandwidth: not measured (--no-probe); %% bw left empty\n");
  std::printf("# times: median [min-max] over %d calls; GB/s = weight bytes / median; %% bw = of the median read bandwidth\n",
              reps);
  std::printf("\n| shape (N x K) | dtype | B | kernel | ms | GB/s | GFLOP/s | %% bw |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");

  const LayerShape shapes[] = {
      {"q/o_proj", 2048, 2048},   {"dense up", 10944, 2048}, {"dense down", 2048, 10944},
      {"expert up", 1408, 2048},  {"expert down", 2048, 1408}, {"lm_head", 129280, 2048},
  };
  const DType dtypes[] = {DType::kF32,  DType::kBF16,    DType::kF8E4M3,
                          DType::kQ8_0, DType::kQ8_0R16, DType::kQ4_0, DType::kQ4_0R16};
  std::vector<LayerShape> list(std::begin(shapes), std::end(shapes));
  if (shape.name) list = {shape};
  for (const LayerShape& s : list)
    for (DType t : dtypes) {
      if (!only.empty() && only != dtype_name(t)) continue;
      // Enough copies that the set does not fit in any cache.
      const int64_t bytes1 = s.N * quant_row_bytes(t, s.K);
      const int64_t copies = hot ? 1 : std::max<int64_t>(1, ((int64_t(512) << 20) + bytes1 - 1) / bytes1);
      std::vector<Weights> ws;
      for (int64_t c = 0; c < copies; ++c) ws.push_back(make_weights(t, s.N, s.K, uint64_t(c + 1)));
      const int64_t wbytes = mat_bytes(ws[0].view);
      for (int64_t B : batches) {
        std::vector<float> x(size_t(B * s.K)), y(size_t(B * s.N));
        Rng rng{uint64_t(B) * 77 + 5};
        for (auto& v : x) v = rng.normalish();
        // Warm-up: first touch of the scratch buffers and of every copy's pages.
        for (auto& w : ws) matmul(y.data(), x.data(), w.view, B, &pool, kernel);
        std::vector<double> ts;
        size_t c = 0;
        for (int r = 0; r < reps; ++r) {
          const auto t0 = Clock::now();
          matmul(y.data(), x.data(), ws[c].view, B, &pool, kernel);
          ts.push_back(seconds_since(t0));
          c = (c + 1) % ws.size();
        }
        const Stats st = stats(ts);
        const double gbs = double(wbytes) / st.median / 1e9;
        const double gflops = 2.0 * double(s.N) * double(s.K) * double(B) / st.median / 1e9;
        char pct[16] = "";
        if (probe) std::snprintf(pct, sizeof pct, "%.0f%%", 100.0 * gbs / bw.median);
        std::printf("| %s %lldx%lld | %s | %lld | %s | %.3f [%.3f-%.3f] | %.1f | %.1f | %s |\n", s.name,
                    (long long)s.N, (long long)s.K, std::string(dtype_name(t)).c_str(), (long long)B,
                    std::string(matmul_kernel_name(t, kernel)).c_str(), st.median * 1e3, st.min * 1e3, st.max * 1e3,
                    gbs, gflops, pct);
        std::fflush(stdout);
      }
    }
  return 0;
}
