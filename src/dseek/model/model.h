// A loaded DeepSeek model (V2, V2-Lite, V3/R1, V3.2) and its forward pass.
#pragma once

#include <cstdint>
#include <span>
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

// One sequence's part of a batched forward call (continuous batching: decode steps of many
// sequences and prefill chunks of others share one pass, so each weight is read once per step).
struct SeqInput {
  const int32_t* tokens = nullptr;  // (n_tokens); for mtp_forward: the next tokens (see there)
  int64_t n_tokens = 0;
  int64_t start_pos = 0;            // the cache already holds positions [0, start_pos)
  KVCacheView cache;
  int64_t logits_from = 0;          // rows [logits_from, n_tokens) get logits (n_tokens: none)
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

  // Batched forward: the sequences' tokens run as one (sum n_tokens) batch through every dense
  // matmul and MoE; attention reads each sequence's own cache. logits receives, sequence after
  // sequence, the rows [logits_from, n_tokens) of each; final_hidden (sum n_tokens, hidden) the
  // final-norm output of every token. A trace needs a single sequence.
  void forward_batch(std::span<const SeqInput> seqs, AttnImpl impl, Workspace& ws, float* logits,
                     float* final_hidden = nullptr, ForwardTrace* trace = nullptr) const;

  // The MTP module (depth 1): row i predicts token i+2 from h (T, hidden), the main model's final-norm
  // output at position start_pos + i, and tokens_next (T), the token at position start_pos + i + 1.
  // Uses cache layer num_hidden_layers. logits (T, vocab). The trace records the MTP block's output
  // (before shared_head.norm) as its one hidden_after_layer entry.
  void mtp_forward(const float* h, const int32_t* tokens_next, int64_t T, int64_t start_pos, const KVCacheView& cache,
                   AttnImpl impl, Workspace& ws, float* logits, ForwardTrace* trace = nullptr) const;
  // Batched MTP: h (sum n_tokens, hidden) in sequence order; each SeqInput's tokens are its
  // tokens_next; logits rows as in forward_batch.
  void mtp_forward_batch(const float* h, std::span<const SeqInput> seqs, AttnImpl impl, Workspace& ws, float* logits,
                         ForwardTrace* trace = nullptr) const;

 private:
  // Fills ws.batch (positions, sequence ranges, caches, gathered tokens) for seqs; returns T.
  int64_t plan_batch(std::span<const SeqInput> seqs, int64_t n_cache_layers_needed, Workspace& ws, ForwardTrace* trace) const;
  void layer_forward(const LayerWeights& L, int64_t layer, AttnImpl impl, Workspace& ws, ForwardTrace* trace) const;
  // Rows of h selected by the seqs' logits_from through head into logits.
  void head_logits(float* logits, const float* h, std::span<const SeqInput> seqs, const MatView& head, Workspace& ws) const;
  void embed(float* out, const MatView& table, const int32_t* tokens, int64_t T) const;

  Checkpoint ckpt_;
  ModelConfig cfg_;
  ModelWeights w_;
  MlaParams mla_;
  IndexerParams indexer_;
  std::vector<RouterParams> router_;  // per cache layer
};

}  // namespace dseek
