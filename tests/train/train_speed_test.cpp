// Throughput of TrainModel::forward_backward on PEERS.md config S (disabled by default; run with
// --gtest_also_run_disabled_tests --gtest_filter='*TrainSpeed*'; DSEEK_TRAIN_THREADS, default 2;
// DSEEK_TRAIN_ITERS timed calls after one warm-up, default 5).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>

#include "dseek/train/params.h"

namespace dseek {
namespace {

// PEERS.md config S: d 256, 4 layers (1 dense, ffn 1024), 4 heads, 16 routed experts top-4 + 1 shared,
// expert ffn 256, q_lora 128, kv_lora 64, nope 32, rope 16, v 32, byte vocab 256, MTP depth 1.
ModelConfig config_s() {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 256;
  c.intermediate_size = 1024;
  c.moe_intermediate_size = 256;
  c.num_hidden_layers = 4;
  c.num_nextn_predict_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.n_shared_experts = 1;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  c.routed_scaling_factor = 2.5;
  c.topk_method = TopKMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.first_k_dense_replace = 1;
  c.q_lora_rank = 128;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.max_position_embeddings = 4096;
  return c;
}

TEST(TrainSpeed, DISABLED_ConfigS) {
  const char* env = std::getenv("DSEEK_TRAIN_THREADS");
  const char* iters_env = std::getenv("DSEEK_TRAIN_ITERS");
  const int iters = iters_env ? std::max(1, std::atoi(iters_env)) : 5;
  TrainOptions o;
  o.batch = 8;
  o.seq = 256;
  o.threads = env ? std::atoi(env) : 2;
  o.balance_alpha = 1e-4f;
  const char* matmul_env = std::getenv("DSEEK_TRAIN_MATMUL");  // "bf16": mixed-precision products
  if (matmul_env && std::string(matmul_env) == "bf16") o.matmul = GemmPrecision::kBf16;
  TrainModel tm(config_s(), o);
  tm.init_weights(1);
  int64_t n = 0;
  for (auto& p : tm.params()) n += p.numel();
  std::mt19937_64 g(1);
  std::vector<int32_t> tokens(size_t(o.batch * (o.seq + 1)));
  for (auto& t : tokens) t = int32_t(g() % 256);
  // CPU time (all threads) per call as well: on a shared machine it tracks the work done, where the
  // wall time also tracks the other tenants.
  auto cpu_ms = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
  };
  std::vector<double> ms, cpu;
  for (int it = 0; it < iters + 1; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_ms();
    tm.forward_backward(tokens.data(), o.batch, o.seq);
    cpu.push_back(cpu_ms() - c0);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  cpu.erase(cpu.begin());
  std::sort(cpu.begin(), cpu.end());
  // One more call from zeroed gradients: its loss and gradient checksum let two builds be compared
  // bit for bit (a change meant to be exact must print the same line).
  tm.zero_grad();
  const TrainModel::StepResult r = tm.forward_backward(tokens.data(), o.batch, o.seq);
  double gsum = 0.0, gabs = 0.0;
  for (int64_t i = 0; i < tm.num_parameters(); ++i) {
    gsum += double(tm.grad_data()[i]) * double(i % 7 + 1);
    gabs += std::abs(double(tm.grad_data()[i]));
  }
  std::printf("checksum: loss %.9g, gradient sum %.17g, |gradient| sum %.17g\n", r.loss, gsum, gabs);
  ms.erase(ms.begin());  // warm-up
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  std::printf("config S (matmul %s): %.2f M params, batch %ld seq %ld threads %d: forward_backward median %.1f ms [%.1f-%.1f] "
              "over %d calls, %.0f tokens/s (best %.0f)\n",
              o.matmul == GemmPrecision::kBf16 ? "bf16" : "f32", double(n) / 1e6, long(o.batch), long(o.seq), o.threads, med, ms.front(), ms.back(), iters,
              double(o.batch * o.seq) / med * 1e3, double(o.batch * o.seq) / ms.front() * 1e3);
  std::printf("cpu time per call (all threads): median %.1f ms [%.1f-%.1f]\n", cpu[cpu.size() / 2], cpu.front(),
              cpu.back());
}

}  // namespace
}  // namespace dseek
