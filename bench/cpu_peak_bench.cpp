// Instruction throughput ceilings of this CPU, per thread, for the products the kernels are built
// from: how many 512-bit vpdpbusd (Q8_0 / Q4_0), vdpbf16ps (BF16) and vfmadd231ps (F32, FP8) one
// thread retires per nanosecond, alone and mixed with the other instructions of a kernel's inner
// loop (a mix that runs slower than its vpdpbusd alone shares that execution port), and the same
// with every thread of the pool running it at once (on a VM whose vCPUs are the two hyperthreads of
// one host core, or beside a busy neighbour, the per-thread rate drops).
//
//   cpu_peak_bench [threads=2] [--ms M]
//
// Each line runs independent accumulator chains (8; 16 for vdpbf16ps and vfmadd231ps alone) for
// about M milliseconds (default 300) and prints instructions per ns; "latency" lines run
// one dependent chain. docs/kernels.md ("Instruction ceilings") records what it printed here.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "dseek/kernels/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace {

using Clock = std::chrono::steady_clock;

// Independent accumulator chains per loop: 8 for vpdpbusd (alone and in the mixes: with 16 it read
// 4.1-5.1 per ns on Zen 5 against 5.8-6.2 with 8), 16 for vdpbf16ps and vfmadd231ps alone, enough
// for vdpbf16ps's ~6-cycle latency at 2 per cycle (Zen 5: 8 chains 4.3 per ns, 12 6.1, 16 6.5; with
// 8 this bench had reported its latency, 3.8, as the ceiling). The mixes' float chains (16
// registers beside 8 integer ones) need no register copies in the loop (12 + 12 had GCC moving them).
constexpr int kChains = 8;
constexpr int kChainsAlone = 16;

enum class Mix { kDpbusd, kDpbf16, kFma, kDpbusdFma, kDpbusdMul, kDpbusdAdd, kDpbusdCvt, kDpbusdLatency, kFmaLatency };

struct MixInfo {
  Mix mix;
  const char* name;
  int primaries;  // instructions of the named product per iteration
  int macs;       // multiply-adds per primary instruction (0: a latency line)
};

constexpr MixInfo kMixes[] = {
    {Mix::kDpbusd, "vpdpbusd (int8, 64 MAC)", kChains, 64},
    {Mix::kDpbf16, "vdpbf16ps (bf16, 32 MAC)", kChainsAlone, 32},
    {Mix::kFma, "vfmadd231ps (f32, 16 MAC)", kChainsAlone, 16},
    {Mix::kDpbusdFma, "vpdpbusd + vfmadd231ps 1:1", kChains, 64},
    {Mix::kDpbusdMul, "vpdpbusd + vmulps 1:1", kChains, 64},
    {Mix::kDpbusdAdd, "vpdpbusd + vaddps 1:1", kChains, 64},
    {Mix::kDpbusdCvt, "vpdpbusd + vcvtdq2ps 1:1", kChains, 64},
    {Mix::kDpbusdLatency, "vpdpbusd, 1 dependent chain (1 / latency)", 1, 0},
    {Mix::kFmaLatency, "vfmadd231ps, 1 dependent chain (1 / latency)", 1, 0},
};

// Runs mix M for `iters` iterations (one specialized loop per mix: no branch inside it); returns a
// value that depends on every result, so nothing is optimized away.
template <Mix M, int kChains>
__attribute__((target("avx512f,avx512bw,avx512vnni,avx512bf16"))) float run_mix(long iters) {
  __m512i a[kChains];
  __m512 f[kChains];
  for (int i = 0; i < kChains; ++i) {
    a[i] = _mm512_set1_epi32(i);
    f[i] = _mm512_set1_ps(float(i));
  }
  __m512i u = _mm512_set1_epi8(3), v = _mm512_set1_epi8(5);
  __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  for (long k = 0; k < iters; ++k) {
    if constexpr (M == Mix::kDpbusdLatency) {
      a[0] = _mm512_dpbusd_epi32(a[0], u, v);
    } else if constexpr (M == Mix::kFmaLatency) {
      f[0] = _mm512_fmadd_ps(f[0], x, y);
    } else {
#pragma GCC unroll 16
      for (int i = 0; i < kChains; ++i) {
        if constexpr (M == Mix::kDpbf16)
          f[i] = _mm512_dpbf16_ps(f[i], (__m512bh)u, (__m512bh)v);
        else if constexpr (M == Mix::kFma)
          f[i] = _mm512_fmadd_ps(f[i], x, y);
        else
          a[i] = _mm512_dpbusd_epi32(a[i], u, v);
        if constexpr (M == Mix::kDpbusdFma) f[i] = _mm512_fmadd_ps(f[i], x, y);
        if constexpr (M == Mix::kDpbusdMul) f[i] = _mm512_mul_ps(f[i], x);
        if constexpr (M == Mix::kDpbusdAdd) f[i] = _mm512_add_ps(f[i], x);
        if constexpr (M == Mix::kDpbusdCvt) f[i] = _mm512_maskz_cvtepi32_ps(__mmask16(0xffff), a[i]);
      }
    }
    // Opaque to the optimizer: the operands are not loop invariants it could hoist or fold.
    asm volatile("" : "+v"(u), "+v"(x));
  }
  // Only the chains the mix uses stay live (16 + 16 would not fit the 32 registers).
  constexpr bool kInts = M != Mix::kDpbf16 && M != Mix::kFma && M != Mix::kFmaLatency;
  constexpr bool kFloats = M != Mix::kDpbusd && M != Mix::kDpbusdLatency;
  __m512i s = _mm512_setzero_si512();
  __m512 t = _mm512_setzero_ps();
  for (int i = 0; i < kChains; ++i) {
    if constexpr (kInts) s = _mm512_add_epi32(s, a[i]);
    if constexpr (kFloats) t = _mm512_add_ps(t, f[i]);
  }
  // Through memory: GCC 12's reduce intrinsics trip -Wuninitialized.
  alignas(64) int32_t si[16];
  alignas(64) float ti[16];
  _mm512_store_si512(si, s);
  _mm512_store_ps(ti, t);
  float r = 0;
  for (int i = 0; i < 16; ++i) r += float(si[i]) + ti[i];
  return r;
}

float run(Mix m, long iters) {
  switch (m) {
    case Mix::kDpbusd: return run_mix<Mix::kDpbusd, kChains>(iters);
    case Mix::kDpbf16: return run_mix<Mix::kDpbf16, kChainsAlone>(iters);
    case Mix::kFma: return run_mix<Mix::kFma, kChainsAlone>(iters);
    case Mix::kDpbusdFma: return run_mix<Mix::kDpbusdFma, kChains>(iters);
    case Mix::kDpbusdMul: return run_mix<Mix::kDpbusdMul, kChains>(iters);
    case Mix::kDpbusdAdd: return run_mix<Mix::kDpbusdAdd, kChains>(iters);
    case Mix::kDpbusdCvt: return run_mix<Mix::kDpbusdCvt, kChains>(iters);
    case Mix::kDpbusdLatency: return run_mix<Mix::kDpbusdLatency, kChains>(iters);
    case Mix::kFmaLatency: return run_mix<Mix::kFmaLatency, kChains>(iters);
  }
  return 0;
}

// Instructions of the named product per ns on each of `threads` threads running it together.
double rate(const MixInfo& m, int threads, double ms) {
  // Calibrate the iteration count on one thread, then time all threads together.
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = Clock::now();
    volatile float sink = run(m.mix, iters);
    (void)sink;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > ms / 1e3 / 4) {
      iters = long(double(iters) * (ms / 1e3) / s);
      break;
    }
    iters *= 4;
  }
  std::atomic<int> ready{0};
  std::vector<double> secs(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      const auto t0 = Clock::now();
      volatile float sink = run(m.mix, iters);
      (void)sink;
      secs[size_t(t)] = std::chrono::duration<double>(Clock::now() - t0).count();
    });
  for (auto& th : pool) th.join();
  double worst = 0;
  for (double s : secs) worst = std::max(worst, s);
  return double(iters) * m.primaries / worst / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  double ms = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--ms" && i + 1 < argc) {
      ms = std::max(10.0, std::atof(argv[++i]));
    } else if (!a.empty() && a[0] != '-') {
      threads = std::max(1, std::atoi(a.c_str()));
    } else {
      std::fprintf(stderr, "usage: %s [threads=2] [--ms M]\n", argv[0]);
      return 2;
    }
  }
  const dseek::CpuFeatures& cf = dseek::cpu_features();
  if (!(cf.avx512f && cf.avx512bw && cf.avx512vnni && cf.avx512bf16)) {
    std::fprintf(stderr, "cpu_peak_bench: needs AVX-512 F/BW/VNNI/BF16 (this CPU: %s)\n",
                 dseek::cpu_features_str(cf).c_str());
    return 2;
  }
  std::printf("# cpu_peak_bench: 512-bit instructions per ns per thread (%d chains; vdpbf16ps, vfmadd231ps alone %d; ~%.0f ms each)\n",
              kChains, kChainsAlone, ms);
  std::printf("\n| instructions | 1 thread: per ns | GMAC/s | %d threads at once: per ns per thread | GMAC/s per thread |\n",
              threads);
  std::printf("|---|---|---|---|---|\n");
  for (const MixInfo& m : kMixes) {
    const double one = rate(m, 1, ms), all = rate(m, threads, ms);
    if (m.macs > 0)
      std::printf("| %s | %.2f | %.0f | %.2f | %.0f |\n", m.name, one, one * m.macs, all, all * m.macs);
    else
      std::printf("| %s | %.2f | - | %.2f | - |\n", m.name, one, all);
    std::fflush(stdout);
  }
  return 0;
}

#else
int main() {
  std::fprintf(stderr, "cpu_peak_bench: x86-64 only\n");
  return 2;
}
#endif
