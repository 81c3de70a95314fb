// A loaded DeepSeek model (V2, V2-Lite, V3/R1, V3.2) and its forward pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dseek/io/checkpoint.h"
#include "dseek/io/config.h"
#include "dseek/model/indexer.h"
#include "dseek/model/kv_view.h"
#include "dseek/model/mla.h"
#include "dseek/model/router.h"
#include "dseek/model/weights.h"
#include "dseek/model/workspace.h"

namespace dseek {

struct LoadOptions {
  bool load_mtp = false;     // bind the MTP modules (they cost nothing unless asked for)
  bool indexer_fp8 = true;   // V3.2: quantize indexer q/k to E4M3 as the reference does
};

// What a forward call may record besides logits (tests and `dseek forward` use it).
struct ForwardTrace {
  std::vector<float> embed_out;                        // (T, hidden)
  std::vector<std::vector<float>> hidden_after_layer;  // L x (T, hidden)
  std::vector<std::vector<int32_t>> topk_ids;          // L x (T, k); empty for dense layers
  std::vector<std::vector<float>> topk_weights;        // L x (T, k)
  std::vector<float> final_norm_out;                   // (T, hidden)
  // V3.2 only, per layer: index scores (T, start_pos + T) with -inf for future keys, and the
  // selected keys (T, start_pos + T), 1 = attended.
  std::vector<std::vector<float>> indexer_scores;
  std::vector<std::vector<uint8_t>> indexer_mask;
};

class Model {
 public:
  static Model load(const std::string& dir, const LoadOptions& opts = {});

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  const Checkpoint& checkpoint() const { return ckpt_; }
  // Layers with a KV cache: the main layers, then the MTP modules when loaded.
  int64_t n_cache_layers() const { return cfg_.num_hidden_layers + int64_t(w_.mtp.size()); }

  // Runs tokens (T) at positions start_pos .. start_pos + T - 1: writes their latent KV rows into
  // `cache` (which must already hold positions [0, start_pos)) and, when `logits` is given, the
  // logits (T - logits_from, vocab) of rows logits_from .. T - 1. `final_hidden` (T, hidden), when
  // given, receives the final-norm output (what the MTP module reads).
  void forward(const int32_t* tokens, int64_t T, int64_t start_pos, const KVCacheView& cache, AttnImpl impl,
               Workspace& ws, float* logits, int64_t logits_from = 0, float* final_hidden = nullptr,
               ForwardTrace* trace = nullptr) const;

  // The MTP module (depth 1): row i predicts token i+2 from h (T, hidden), the main model's final-norm
  // output at position start_pos + i, and tokens_next (T), the token at position start_pos + i + 1.
  // Uses cache layer num_hidden_layers. logits (T, vocab). The trace records the MTP block's output
  // (before shared_head.norm) as its one hidden_after_layer entry.
  void mtp_forward(const float* h, const int32_t* tokens_next, int64_t T, int64_t start_pos, const KVCacheView& cache,
                   AttnImpl impl, Workspace& ws, float* logits, ForwardTrace* trace = nullptr) const;

 private:
  void layer_forward(const LayerWeights& L, int64_t layer, int64_t T, int64_t start_pos, const KVCacheView& cache,
                     AttnImpl impl, Workspace& ws, ForwardTrace* trace) const;
  void embed(float* out, const MatView& table, const int32_t* tokens, int64_t T) const;

  Checkpoint ckpt_;
  ModelConfig cfg_;
  ModelWeights w_;
  MlaParams mla_;
  IndexerParams indexer_;
  std::vector<RouterParams> router_;  // per cache layer
};

}  // namespace dseek
