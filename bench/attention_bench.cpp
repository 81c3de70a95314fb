// Decode attention (absorbed MLA against the latent cache, attention_decode.h) on DeepSeek-V2-Lite /
// V3 shapes: one query token of H heads against n cache rows of [c_kv (512) | k_pe (64)] floats.
//
//   attention_bench [--rows 512,4096,16384] [--heads 16,32,128] [--reps N] [--hot] [--small-pages]
//                   [--latent 512,64] [--bf16] [--amx | --bf16dot]
//
// One thread, as each thread of a decode step runs it on its share of the context. The cache rows
// are cycled through enough copies (>= 256 MiB) that every call reads them from memory, as decode
// does with several layers of a long context (--hot: one copy, so the rows come from the caches and
// the arithmetic alone is timed). GB/s = cache bytes / median time; GFLOP/s counts the
// scores (H x n x (R + rope)) and the weighted sum (H x n x R) multiply-adds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "dseek/core/dtype.h"
#include "dseek/kernels/attention_decode.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/cpu_features.h"

namespace {

using namespace dseek;
using Clock = std::chrono::steady_clock;

// Floats on 2 MiB-aligned memory, advised to transparent huge pages when `huge` (the engine's KV
// caches are; --small-pages to see what 4 KiB pages cost).
class HugeFloats {
 public:
  HugeFloats(size_t n, bool huge) : n_(n) {
    const size_t bytes = (n * sizeof(float) + kAlign - 1) / kAlign * kAlign;
    p_ = static_cast<float*>(std::aligned_alloc(kAlign, bytes));
    if (huge) ::madvise(p_, bytes, MADV_HUGEPAGE);
  }
  ~HugeFloats() { std::free(p_); }
  HugeFloats(const HugeFloats&) = delete;
  HugeFloats& operator=(const HugeFloats&) = delete;
  float* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  static constexpr size_t kAlign = size_t(2) << 20;
  size_t n_;
  float* p_;
};

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (std::string t = s; !t.empty();) {
    const size_t c = t.find(',');
    v.push_back(std::stoll(t.substr(0, c)));
    t = c == std::string::npos ? "" : t.substr(c + 1);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> rows_list = {512, 4096, 16384}, heads_list = {16, 32};
  int reps = 30;
  bool hot = false, huge = true, bf16 = false, amx = false, dot = false;
  int64_t R = 512, rope = 64;  // kv_lora_rank, qk_rope_head_dim  // --hot: one copy of the rows, read from the caches after the first call
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) rows_list = parse_list(argv[++i]);
    else if (a == "--heads" && i + 1 < argc) heads_list = parse_list(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--hot") hot = true;
    else if (a == "--latent" && i + 1 < argc) {  // R,rope: e.g. 64,16 for the demo model
      const std::vector<int64_t> v = parse_list(argv[++i]);
      if (v.size() != 2 || v[0] < 1 || v[1] < 0) {
        std::fprintf(stderr, "--latent wants R,rope\n");
        return 2;
      }
      R = v[0];
      rope = v[1];
    }
    else if (a == "--small-pages") huge = false;
    else if (a == "--bf16") bf16 = true;  // rows of a bf16 KV cache (--kv-type bf16)
    else if (a == "--amx") amx = true;    // bf16 products on AMX tiles (--attn-precision, docs/model.md)
    else if (a == "--bf16dot") dot = true;  // bf16 products as vdpbf16ps (CPUs with AVX-512 BF16, no AMX)
    else {
      std::fprintf(stderr, "usage: attention_bench [--rows 512,4096] [--heads 16,32] [--reps N] [--hot] [--small-pages] [--latent R,rope] [--bf16] [--amx | --bf16dot]\n");
      return 2;
    }
  }
  if (amx && !matmul_kernel_supported(MatmulKernel::kAmx)) {  // also asks Linux for the tile state
    std::fprintf(stderr, "attention_bench: --amx needs AMX-BF16 (and the tile state)\n");
    return 2;
  }
  if (dot && (amx || !cpu_features().avx512bf16)) {
    std::fprintf(stderr, "attention_bench: --bf16dot needs AVX-512 BF16 (and not --amx)\n");
    return 2;
  }
  const DecodeProducts products = amx ? DecodeProducts::kAmx : dot ? DecodeProducts::kBf16Dot : DecodeProducts::kFloat32;
  const int64_t L = R + rope;
  std::printf("# attention_bench  one thread  kernel %s%s  R %lld  rope %lld  rows %s\n",
              cpu_features().avx512_fma() ? "avx512" : "scalar", amx ? " (products: amx bf16)" : dot ? " (products: vdpbf16ps)" : "", (long long)R,
              (long long)rope, bf16 ? "bf16" : "f32");
  std::printf("| rows | heads | ms median [min-max] | GB/s | GFLOP/s |\n|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t n : rows_list)
    for (int64_t H : heads_list) {
      const int64_t row_floats = n * L;
      const int64_t row_bytes = bf16 ? 2 : 4;
      const int64_t copies = hot ? 1 : std::max<int64_t>(1, (int64_t(256) << 20) / (row_floats * row_bytes));
      HugeFloats cache(size_t(copies * row_floats), huge);  // bf16: the first half holds the rows
      auto* cache16 = reinterpret_cast<uint16_t*>(cache.data());
      for (size_t i = 0; i < cache.size(); ++i) {
        const float v = u(rng);
        if (bf16) cache16[i] = f32_to_bf16(v);
        else cache.data()[i] = v;
      }
      std::vector<float> q_lat(size_t(H * R)), q_pe(size_t(H * rope));
      for (auto& x : q_lat) x = 0.05f * u(rng);
      for (auto& x : q_pe) x = 0.05f * u(rng);
      std::vector<float> o(size_t(H * R)), m(static_cast<size_t>(H)), l(static_cast<size_t>(H));
      DecodeQuery q;
      q.q_lat = q_lat.data();
      q.q_pe = q_pe.data();
      q.q_pe_stride = rope;
      q.H = H;
      q.R = R;
      q.rope = rope;
      q.scale = 0.07f;
      std::vector<double> t;
      for (int r = 0; r < reps + 2; ++r) {
        const LatentRun run{bf16 ? static_cast<const void*>(cache16 + (r % copies) * row_floats)
                                 : static_cast<const void*>(cache.data() + (r % copies) * row_floats),
                            n, nullptr};
        const auto t0 = Clock::now();
        decode_state_init(o.data(), m.data(), l.data(), H, R);
        decode_attend_rows(o.data(), m.data(), l.data(), q, &run, 1, L, bf16, products);
        decode_state_finish(o.data(), l.data(), H, R);
        if (r >= 2) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      const double med = t[t.size() / 2];
      std::printf("| %lld | %lld | %.3f [%.3f-%.3f] | %.1f | %.1f |\n", (long long)n, (long long)H, med * 1e3,
                  t.front() * 1e3, t.back() * 1e3, double(row_floats * row_bytes) / med / 1e9,
                  2.0 * double(H) * double(n) * double(L + R) / med / 1e9);
    }
  return 0;
}
