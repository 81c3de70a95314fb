// The lightning indexer of DeepSeek Sparse Attention (DeepSeek-V3.2-Exp).
//
// A few small heads score every previous token for each query; MLA then attends only to the top
// index_topk of them. Semantics follow DeepSeek's V3.2 reference inference/model.py with the indexer
// RoPE fix of 2025-11-17: the indexer rotates its first qk_rope_head_dim dims in the half-split
// (NeoX) layout, while MLA's RoPE stays interleaved. q and k are Hadamard-rotated and quantized to
// FP8-E4M3 with one scale per 128 values, as the reference does on GPU (emulated exactly in float32).
#pragma once

#include <cstdint>
#include <vector>

#include "dseek/io/config.h"
#include "dseek/model/kv_view.h"
#include "dseek/model/weights.h"
#include "dseek/model/workspace.h"

namespace dseek {

struct IndexerParams {
  int64_t n_heads = 0;   // index_n_heads
  int64_t head_dim = 0;  // index_head_dim: [rope | nope]
  int64_t rope_dim = 0;  // qk_rope_head_dim
  int64_t topk = 0;      // index_topk
  float eps = 1e-6f;     // k_norm LayerNorm
  bool fp8 = true;       // quantize q and k to E4M3 like the reference; false: float32 scores
  bool ue8m0 = false;    // power-of-two scales (quantization_config.scale_fmt)
  const float* inv_freq = nullptr;  // (rope_dim / 2), MLA's YaRN table
  float rope_attn_factor = 1.0f;

  static IndexerParams from_config(const ModelConfig& c, const float* inv_freq, float rope_attn_factor);
  // One cached key row: the E4M3 values (head_dim) and their scale.
  int64_t key_row() const { return head_dim + 1; }
};

// For x (T, hidden) (input_layernorm'ed) and qr (T, q_lora_rank) (MLA's normalised q latent) at
// positions start_pos .. start_pos+T-1 of one sequence: writes the tokens' index keys into that
// sequence's key_cache rows (key_row floats each) and allowed (T, start_pos+T) = 1 for the keys each query attends (its top
// index_topk scores among positions <= its own). scores (T, start_pos+T), when given, receives the
// index scores with -inf for future positions.
void indexer_forward(uint8_t* allowed, float* scores, const float* x, const float* qr, int64_t T, int64_t start_pos,
                     const IndexerWeights& w, const IndexerParams& p, const LayerRows& key_cache, Workspace& ws);

}  // namespace dseek
