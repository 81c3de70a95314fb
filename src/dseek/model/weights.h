// The weights of a DeepSeek model, bound by HF tensor name to typed views into the checkpoint.
//
// Matrices stay where they lie in the memory-mapped files (MatView); only 1-D vectors (norm weights,
// the router's e_score_correction_bias: a few KB per layer) are converted to float32 copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dseek/core/tensor.h"
#include "dseek/io/checkpoint.h"
#include "dseek/io/config.h"

namespace dseek {

using Vec = std::vector<float>;

// A SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x)). Dense layers, routed and shared experts.
struct MlpWeights {
  MatView gate_proj;  // (inter, hidden)
  MatView up_proj;    // (inter, hidden)
  MatView down_proj;  // (hidden, inter)
  int64_t inter() const { return gate_proj.rows; }
};

struct MoeWeights {
  MatView gate;                  // (n_routed_experts, hidden): router logits
  Vec e_score_correction_bias;   // (n_routed_experts) for noaux_tc; empty otherwise
  std::vector<MlpWeights> experts;  // n_routed_experts, each (moe_intermediate_size)
  MlpWeights shared_experts;     // (n_shared_experts * moe_intermediate_size); empty when 0 shared
  bool has_shared() const { return !shared_experts.gate_proj.empty(); }
};

// V3.2 lightning indexer (DeepSeek Sparse Attention).
struct IndexerWeights {
  MatView wq_b;          // (index_n_heads * index_head_dim, q_lora_rank)
  MatView wk;            // (index_head_dim, hidden)
  Vec k_norm_weight;     // (index_head_dim) LayerNorm
  Vec k_norm_bias;       // (index_head_dim)
  MatView weights_proj;  // (index_n_heads, hidden)
  bool present() const { return !wq_b.empty(); }
};

struct MlaWeights {
  MatView q_proj;              // (H * qk_head_dim, hidden) when q_lora_rank == 0
  MatView q_a_proj;            // (q_lora_rank, hidden)
  Vec q_a_layernorm;           // (q_lora_rank)
  MatView q_b_proj;            // (H * qk_head_dim, q_lora_rank)
  MatView kv_a_proj_with_mqa;  // (kv_lora_rank + qk_rope_head_dim, hidden)
  Vec kv_a_layernorm;          // (kv_lora_rank)
  MatView kv_b_proj;           // (H * (qk_nope_head_dim + v_head_dim), kv_lora_rank)
  MatView o_proj;              // (hidden, H * v_head_dim)
  IndexerWeights indexer;
};

struct LayerWeights {
  Vec input_layernorm;           // (hidden)
  Vec post_attention_layernorm;  // (hidden)
  MlaWeights self_attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

// One multi-token-prediction module (V3 report, section 2.2): layer index num_hidden_layers + d.
struct MtpWeights {
  Vec enorm;                 // (hidden) on the embedding of the next token
  Vec hnorm;                 // (hidden) on the previous depth's hidden state
  MatView eh_proj;           // (hidden, 2 * hidden): [enorm(emb), hnorm(h)] -> hidden
  LayerWeights block;        // a full decoder layer
  Vec shared_head_norm;      // (hidden)
  MatView shared_head_head;  // (vocab, hidden)
  MatView embed_tokens;      // (vocab, hidden)
};

struct ModelWeights {
  MatView embed_tokens;  // (vocab, hidden)
  std::vector<LayerWeights> layers;
  Vec norm;              // (hidden)
  MatView lm_head;       // (vocab, hidden)
  std::vector<MtpWeights> mtp;  // empty unless requested at load
};

// Binds every tensor the config calls for; throws dseek::Error naming the file, tensor, expected
// and found dtype/shape for a missing or mis-shaped tensor (or FP8 scale).
ModelWeights bind_weights(const Checkpoint& ckpt, const ModelConfig& cfg, bool load_mtp);

}  // namespace dseek
