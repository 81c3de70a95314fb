// Sampling cost per token on a DeepSeek-V3-sized vocabulary (129,280 logits), one thread: what each
// generated token pays after the forward pass (dseek generate, and the server per sequence).
//
//   sampler_bench [--reps N]
//
// Logits are normal with the stated spread: "peaked" (std 3, temperature 0.8: a few hundred tokens
// carry 95 % of the mass) and "flat" (std 0.3: top-p 0.95 keeps ~100K tokens, the worst case).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dseek/runtime/sampler.h"

int main(int argc, char** argv) {
  using namespace dseek;
  int reps = 100;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(3, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: sampler_bench [--reps N]\n");
      return 2;
    }
  }
  constexpr int64_t V = 129280;
  struct Case {
    const char* name;
    float temperature, top_p, min_p;
    int top_k;
  };
  const Case cases[] = {{"greedy", 0.f, 1.f, 0.f, 0},          {"temperature 0.8", 0.8f, 1.f, 0.f, 0},
                        {"top_p 0.95", 0.8f, 0.95f, 0.f, 0},    {"top_k 40 + top_p 0.95", 0.8f, 0.95f, 0.f, 40},
                        {"min_p 0.05 + top_p 0.95", 0.8f, 0.95f, 0.05f, 0}};
  std::printf("# sampler_bench  V %lld  one thread  %d samples per row\n", (long long)V, reps);
  std::printf("| logits | sampling | ms per token median [min-max] |\n|---|---|---|\n");
  for (const float spread : {3.0f, 0.3f}) {
    std::mt19937 g(1);
    std::normal_distribution<float> nd(0.f, spread);
    std::vector<float> logits(static_cast<size_t>(V));
    for (float& x : logits) x = nd(g);
    for (const Case& c : cases) {
      SamplingParams sp;
      sp.temperature = c.temperature;
      sp.top_p = c.top_p;
      sp.min_p = c.min_p;
      sp.top_k = c.top_k;
      sp.seed = 7;
      Sampler s(sp, V);
      std::vector<float> work;
      std::vector<double> t;
      int64_t sink = 0;
      for (int r = 0; r < reps; ++r) {
        work = logits;
        const auto t0 = std::chrono::steady_clock::now();
        sink += s.sample(work);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3);
      }
      std::sort(t.begin(), t.end());
      std::printf("| %s (std %.1f) | %s | %.3f [%.3f-%.3f] |\n", spread > 1 ? "peaked" : "flat", double(spread), c.name,
                  t[t.size() / 2], t.front(), t.back());
      if (sink < 0) std::printf("#\n");  // keeps the draws alive
    }
  }
  return 0;
}
