// Training GEMM (kernels/gemm.h) throughput on the shapes of PEERS.md config S (batch 8, seq 256):
// GFLOP/s per layout and shape, median of repeated calls, for the portable and AVX-512 kernels (float32)
// and the bf16 precision on AVX-512 BF16 and on AMX tiles where the CPU has them. Usage:
// train_gemm_bench [threads] (default 2).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "dseek/core/thread_pool.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/gemm.h"

using namespace dseek;

namespace {

struct Shape {
  const char* what;
  GemmLayout layout;
  int64_t M, K, N;
};

double median_ms(const Shape& s, GemmKernel kernel, GemmPrecision prec, ThreadPool* pool, std::vector<float>& a,
                 std::vector<float>& b, std::vector<float>& c) {
  std::vector<double> ms;
  for (int it = 0; it < 9; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t lda = s.layout == GemmLayout::kTN ? s.M : s.K, ldb = s.layout == GemmLayout::kNT ? s.K : s.N;
    gemm_f32(s.layout, c.data(), s.N, a.data(), lda, b.data(), ldb, s.M, s.K, s.N, s.layout != GemmLayout::kNT, pool,
             kernel, prec);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::printf("train_gemm_bench: CPU features: %s; threads %d; time = median of 9 calls\n",
              cpu_features_str(cpu_features()).c_str(), threads);
  // N = 2048 tokens; a routed expert sees ~N·k/E = 512 of them.
  const Shape shapes[] = {
      {"q_b_proj fwd", GemmLayout::kNT, 2048, 128, 192},     {"dense up fwd", GemmLayout::kNT, 2048, 256, 1024},
      {"dense down fwd", GemmLayout::kNT, 2048, 1024, 256},  {"expert up fwd", GemmLayout::kNT, 512, 256, 256},
      {"kv_a fwd", GemmLayout::kNT, 2048, 256, 80},          {"lm_head fwd", GemmLayout::kNT, 2048, 256, 256},
      {"dense up dx", GemmLayout::kNN, 2048, 1024, 256},     {"expert up dx", GemmLayout::kNN, 512, 256, 256},
      {"kv_a dx", GemmLayout::kNN, 2048, 80, 256},           {"dense up dW", GemmLayout::kTN, 1024, 2048, 256},
      {"expert up dW", GemmLayout::kTN, 256, 512, 256},      {"kv_a dW", GemmLayout::kTN, 80, 2048, 256},
      {"router dW", GemmLayout::kTN, 16, 2048, 256},
      // Attention per (sequence, head), one 64-row causal block against 192 keys (layers_mla.cpp; run
      // without the pool, one (sequence, head) per thread): qk_head_dim 48, v_head_dim 32.
      {"attn scores", GemmLayout::kNT, 64, 48, 192},         {"attn P·V", GemmLayout::kNN, 64, 192, 32},
      {"attn dV = PᵀdO", GemmLayout::kTN, 64, 192, 32},      {"attn dQ = dS·K", GemmLayout::kNN, 64, 192, 48},
  };
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  ThreadPool pool(threads);
  std::printf("%-16s %-6s %5s %5s %5s | %-11s %8s %8s\n", "shape", "layout", "M", "K", "N", "kernel", "ms", "GFLOP/s");
  for (const Shape& s : shapes) {
    std::vector<float> a(size_t(s.M * s.K)), b(size_t(s.K * s.N)), c(size_t(s.M * s.N));
    for (auto& v : a) v = dist(rng);
    for (auto& v : b) v = dist(rng);
    for (int v = 0; v < 4; ++v) {  // portable f32, avx512 f32, avx512 bf16, amx bf16
      const GemmKernel k = v == 0 ? GemmKernel::kPortable : v == 3 ? GemmKernel::kAmx : GemmKernel::kAvx512;
      const GemmPrecision prec = v >= 2 ? GemmPrecision::kBf16 : GemmPrecision::kF32;
      if (!gemm_kernel_supported(k) || (prec == GemmPrecision::kBf16 && !gemm_bf16_supported())) continue;
      const double ms = median_ms(s, k, prec, s.M * s.K * s.N < (int64_t(1) << 21) ? nullptr : &pool, a, b, c);
      const char* lay = s.layout == GemmLayout::kNT ? "nt" : s.layout == GemmLayout::kNN ? "nn" : "tn";
      std::printf("%-16s %-6s %5ld %5ld %5ld | %-11s %8.3f %8.1f\n", s.what, lay, long(s.M), long(s.K), long(s.N),
                  v == 3 ? "amx-bf16" : prec == GemmPrecision::kBf16 ? "avx512-bf16" : gemm_kernel_name(k), ms,
                  2.0 * double(s.M * s.K * s.N) / ms * 1e-6);
    }
  }
}
