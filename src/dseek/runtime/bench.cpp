#include "dseek/runtime/bench.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"
#include "dseek/kernels/vec.h"

namespace dseek {

void measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int reps, double* median_gbs, double* best_gbs) {
  const int64_t n = bytes / int64_t(sizeof(float));
  std::vector<float> buf(static_cast<size_t>(n));
  // Touch in parallel so pages land near the threads that read them (first-touch NUMA placement).
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = float(i & 7);
  }, 1 << 16);
  std::vector<double> gbs;
  std::vector<float> sink(size_t(pool.size()) * 16);
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      sink[size_t(b * pool.size() / n) * 16] += vec_sum(buf.data() + b, e - b);
    }, 1 << 16);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbs.push_back(double(bytes) / sec / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  *median_gbs = gbs[gbs.size() / 2];
  *best_gbs = gbs.back();
}

namespace {
int64_t mlp_bytes(const MlpWeights& m) { return mat_bytes(m.gate_proj) + mat_bytes(m.up_proj) + mat_bytes(m.down_proj); }
}  // namespace

int64_t decode_bytes_per_token(const Model& model, int64_t ctx) {
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
    b += ctx * c.kv_latent_dim() * 4;
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
