// dseek bench: prefill and decode speed of a checkpoint, like llama-bench, with decode expressed
// as a fraction of the machine's measured memory-bandwidth roofline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include "commands.h"
#include "dseek/core/error.h"
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
  Args a(argc, argv, {"model", "n-prompt", "n-gen", "threads", "reps", "bandwidth-gb"}, {},
         {{"m", "model"}, {"p", "n-prompt"}, {"n", "n-gen"}, {"t", "threads"}, {"r", "reps"}});
  const std::string dir = a.require("model");
  const int64_t P = a.get_int("n-prompt", 512), N = a.get_int("n-gen", 128);
  const int reps = int(a.get_int("reps", 3));
  if (P < 1 || N < 1 || reps < 1) throw Error("-p, -n and -r must be positive");
  Model model = Model::load(dir);
  const ModelConfig& c = model.config();
  ThreadPool pool(int(a.get_int("threads", 0)));

  const ReadBandwidth bw = measure_read_bandwidth(
      pool, int64_t(a.get_double("bandwidth-gb", double(kReadBandwidthBytes) / (1 << 30)) * (1 << 30)), 9);

  std::mt19937 rng(1234);
  std::vector<int32_t> ids(static_cast<size_t>(P + N));
  for (auto& t : ids) t = int32_t(rng() % uint32_t(c.vocab_size));
  const int64_t ctx = P + N;
  Workspace ws(c, P, ctx, &pool, /*naive_attention=*/false);
  KVCache cache(c, model.n_cache_layers(), ctx);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));

  std::vector<double> pp, tg;
  for (int r = 0; r < reps + 1; ++r) {  // the first round warms the page cache and is discarded
    auto t0 = Clock::now();
    model.forward(ids.data(), P, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), P - 1);
    const double t_pp = std::chrono::duration<double>(Clock::now() - t0).count();
    // Decode N tokens from an empty context, as llama-bench's tg does.
    t0 = Clock::now();
    for (int64_t i = 0; i < N; ++i)
      model.forward(ids.data() + P + i, 1, i, cache.view(), AttnImpl::kAbsorb, ws, logits.data());
    const double t_tg = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r > 0) {
      pp.push_back(double(P) / t_pp);
      tg.push_back(double(N) / t_tg);
    }
  }
  const Stat spp = stat(pp), stg = stat(tg);
  // Bytes per decoded token at the mean context of the tg run.
  const double bytes = double(decode_bytes_per_token(model, N / 2));
  const double gbs = bytes * stg.median / 1e9;
  const DType wt = model.weights().layers.back().self_attn.o_proj.dtype;

  // Weights read in through a MADV_HUGEPAGE mapping come as 2 MiB pages; files that were already
  // cached in 4 KiB pages (e.g. just written by init/quantize) keep them until evicted.
  const double weights_gb = double(model.checkpoint().total_bytes()) / 1e9;
  std::printf("dseek bench | %s | %s | %d threads | read bandwidth %.1f GB/s median (best %.1f; %s over %.1f GiB, "
              "%.0f %% huge pages) | weights %.2f of %.2f GB on 2 MiB pages\n",
              dir.c_str(), cpu_name().c_str(), pool.size(), bw.median_gbs, bw.best_gbs, bw.kernel,
              double(bw.bytes) / (1 << 30), 100.0 * double(bw.huge_page_bytes) / double(bw.bytes),
              std::min(weights_gb, double(file_huge_page_bytes()) / 1e9), weights_gb);
  std::printf("| model | weights | test | tokens/s median [min-max] | GB/token | GB/s | %% of roofline |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| %s %lldL | %s | pp%lld | %.1f [%.1f-%.1f] | | | |\n", std::string(model_type_name(c.model_type)).c_str(),
              (long long)c.num_hidden_layers, std::string(dtype_name(wt)).c_str(), (long long)P, spp.median, spp.min,
              spp.max);
  std::printf("| %s %lldL | %s | tg%lld | %.2f [%.2f-%.2f] | %.3f | %.1f | %.0f %% |\n",
              std::string(model_type_name(c.model_type)).c_str(), (long long)c.num_hidden_layers,
              std::string(dtype_name(wt)).c_str(), (long long)N, stg.median, stg.min, stg.max, bytes / 1e9, gbs,
              100.0 * gbs / bw.median_gbs);
  return 0;
}

}  // namespace dseek::cli
