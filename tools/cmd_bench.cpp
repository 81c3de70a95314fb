// dseek bench: prefill and decode speed of a checkpoint, like llama-bench, with decode expressed
// as a fraction of the machine's measured memory-bandwidth roofline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/kernels/matmul.h"
#include "dseek/runtime/bench.h"
#include "dseek/runtime/kv_cache.h"
#include "run_flags.h"

namespace dseek::cli {

namespace {
using Clock = std::chrono::steady_clock;

struct Stat {
  double median, min, max;
};
Stat stat(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}
}  // namespace

int cmd_bench(int argc, char** argv) {
  Args a(argc, argv, {"model", "n-prompt", "n-gen", "threads", "reps", "bandwidth-gb", "depth", "kernel", "kv-type", "attn-precision"}, {},
         {{"m", "model"}, {"p", "n-prompt"}, {"n", "n-gen"}, {"t", "threads"}, {"r", "reps"}, {"d", "depth"}});
  const std::string dir = a.require("model");
  const int64_t P = a.get_int("n-prompt", 512), N = a.get_int("n-gen", 128);
  const int64_t D = a.get_int("depth", 0);  // tokens already in the context, as llama-bench's -d
  const int reps = int(a.get_int("reps", 3));
  if (P < 1 || N < 1 || reps < 1) throw Error("-p, -n and -r must be positive");
  if (D < 0) throw Error("-d must be >= 0");
  // Kernel family of every product (default: the best this CPU has; e.g. avx512bf16 to see what AMX adds).
  const MatmulKernel kernel = matmul_kernel_from_name(a.get_or("kernel", "auto"));
  if (!matmul_kernel_supported(kernel))
    throw Error("--kernel " + std::string(matmul_kernel_family_name(kernel)) + " is not supported by this CPU");
  Model model = Model::load(dir);
  const ModelConfig& c = model.config();
  ThreadPool pool(int(a.get_int("threads", 0)));

  const int64_t probe_bytes =
      int64_t(a.get_double("bandwidth-gb", double(kReadBandwidthBytes) / (1 << 30)) * (1 << 30));
  const ReadBandwidth bw = measure_read_bandwidth(pool, probe_bytes, 9);

  std::mt19937 rng(1234);
  std::vector<int32_t> ids(static_cast<size_t>(D + P + N));
  for (auto& t : ids) t = int32_t(rng() % uint32_t(c.vocab_size));
  const int64_t ctx = D + std::max(P, N);
  constexpr int64_t kDepthChunk = 512;  // the depth is prefilled in chunks, as `generate` does
  Workspace ws(c, std::max(P, std::min(D, kDepthChunk)), ctx, &pool, /*naive_attention=*/false);
  ws.kernel = kernel;
  ws.attn_precision = attn_precision_from_args(a);
  const std::optional<KVDtype> kv_flag = kv_dtype_from_args(a);
  const KVDtype kv = resolve_kv_dtype(kv_flag, model, kernel, ws.attn_precision);
  KVCache cache(c, model.n_cache_layers(), ctx, kv);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  for (int64_t p0 = 0; p0 < D; p0 += kDepthChunk) {  // untimed; every round reuses positions [0, D)
    const int64_t n = std::min(kDepthChunk, D - p0);
    model.forward(ids.data() + p0, n, p0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), n - 1);
  }

  // The roofline of the decode runs: the same probe (up to 512 MiB) just before each of them and
  // after the last, so that the bandwidth is the one of the same minute (it moves by 30 % within
  // minutes on shared machines).
  const ReadProbe beside(pool, std::max<int64_t>(64, std::min<int64_t>(probe_bytes, int64_t(512) << 20)));
  std::vector<double> pp, tg, near;
  for (int r = 0; r < reps + 1; ++r) {  // the first round warms the page cache and is discarded
    auto t0 = Clock::now();
    model.forward(ids.data() + D, P, D, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), P - 1);
    const double t_pp = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r > 0) near.push_back(beside.measure(3).median_gbs);
    // Decode N tokens after the D-token context (from an empty one by default, as llama-bench's tg).
    t0 = Clock::now();
    for (int64_t i = 0; i < N; ++i)
      model.forward(ids.data() + D + P + i, 1, D + i, cache.view(), AttnImpl::kAbsorb, ws, logits.data());
    const double t_tg = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r > 0) {
      pp.push_back(double(P) / t_pp);
      tg.push_back(double(N) / t_tg);
    }
  }
  near.push_back(beside.measure(3).median_gbs);
  const Stat spp = stat(pp), stg = stat(tg), snear = stat(near);
  // Bytes per decoded token at the mean context of the tg run.
  const double bytes = double(decode_bytes_per_token(model, D + N / 2, kv));
  const double gbs = bytes * stg.median / 1e9;
  const DType wt = model.weights().layers.back().self_attn.o_proj.dtype;

  // Weights read in through a MADV_HUGEPAGE mapping come as 2 MiB pages; files that were already
  // cached in 4 KiB pages (e.g. just written by init/quantize) keep them until evicted.
  const double weights_gb = double(model.checkpoint().total_bytes()) / 1e9;
  const double huge_gb = std::min(weights_gb, double(file_huge_page_bytes()) / 1e9);
  const MatmulKernel family = kernel == MatmulKernel::kAuto ? matmul_best_kernel() : kernel;
  std::printf("dseek bench | %s | %s | %d threads | kernels %s | read bandwidth %.1f GB/s median (best %.1f; %s over %.1f GiB, "
              "%.0f %% huge pages); beside the decode runs %.1f [%.1f-%.1f] | weights %.2f of %.2f GB on 2 MiB pages\n",
              dir.c_str(), cpu_name().c_str(), pool.size(), std::string(matmul_kernel_family_name(family)).c_str(), bw.median_gbs, bw.best_gbs, bw.kernel,
              double(bw.bytes) / (1 << 30), 100.0 * double(bw.huge_page_bytes) / double(bw.bytes), snear.median,
              snear.min, snear.max, huge_gb, weights_gb);
  if (bw.huge_page_bytes > 0 && huge_gb < 0.8 * weights_gb)
    std::fprintf(stderr,
                 "dseek bench: note: only %.2f of %.2f GB of weights are mapped on 2 MiB pages; the files sat in the page "
                 "cache in 4 KiB pages (e.g. copied, or written by an older dseek), and decode ran up to 1.3x faster "
                 "from 2 MiB pages. To fix, drop the cached pages (as root: sync; echo 1 > "
                 "/proc/sys/vm/drop_caches) and run again.\n",
                 huge_gb, weights_gb);
  std::printf("| model | weights | test | tokens/s median [min-max] | GB/token | GB/s | %% of roofline |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  const std::string at = (D > 0 ? " @ d" + std::to_string(D) : std::string()) + (kv == KVDtype::kBF16 ? " kv bf16" : "") +
                         (ws.attn_precision == AttnPrecision::kF32    ? " attn f32"
                          : ws.attn_precision == AttnPrecision::kBf16 ? " attn bf16"
                                                                      : "");
  std::printf("| %s %lldL | %s | pp%lld%s | %.1f [%.1f-%.1f] | | | |\n", std::string(model_type_name(c.model_type)).c_str(),
              (long long)c.num_hidden_layers, std::string(dtype_name(wt)).c_str(), (long long)P, at.c_str(), spp.median,
              spp.min, spp.max);
  std::printf("| %s %lldL | %s | tg%lld%s | %.2f [%.2f-%.2f] | %.3f | %.1f | %.0f %% |\n",
              std::string(model_type_name(c.model_type)).c_str(), (long long)c.num_hidden_layers,
              std::string(dtype_name(wt)).c_str(), (long long)N, at.c_str(), stg.median, stg.min, stg.max, bytes / 1e9,
              gbs, 100.0 * gbs / snear.median);
  // The interleaved forms of the block formats hold the same values and run faster where their
  // kernels exist (docs/performance.md): say so once, on stderr, below the table.
  if ((wt == DType::kQ8_0 || wt == DType::kQ4_0) && matmul_kernel_supported(MatmulKernel::kAvx512)) {
    std::fflush(stdout);
    std::fprintf(stderr, "note: this CPU has the kernels of %s (dseek quantize --type %s): the same weights, 16 rows "
                 "interleaved, faster prefill and decode here\n",
                 wt == DType::kQ8_0 ? "Q8_0_R16" : "Q4_0_R16", wt == DType::kQ8_0 ? "q8r" : "q4r");
  }
  return 0;
}

}  // namespace dseek::cli
