// Multi-head Latent Attention (DeepSeek-V2 paper, section 2.1).
//
// Keys and values are compressed into a latent c_kv (kv_lora_rank) plus a head-shared rotary key
// k_pe (qk_rope_head_dim); only that latent row is cached. Two ways to attend, as in DeepSeek's
// reference inference/model.py:
//   naive   decompress the cached latents with kv_b_proj into per-head k_nope and v, then attend;
//   absorb  fold W_UK (kv_b_proj's key rows) into the query and W_UV after attention, attending
//           directly against the latent cache (what decode should do: no decompression).
#pragma once

#include <cstdint>
#include <vector>

#include "dseek/io/config.h"
#include "dseek/kernels/attention_decode.h"
#include "dseek/kernels/matmul.h"
#include "dseek/model/kv_view.h"
#include "dseek/model/weights.h"
#include "dseek/model/workspace.h"

namespace dseek {

enum class AttnImpl : uint8_t { kNaive, kAbsorb, kSentinel };

// Position-independent constants of attention, derived once from the config.
struct MlaParams {
  int64_t n_heads = 0;
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  float rms_norm_eps = 1e-6f;
  std::vector<float> inv_freq;  // (qk_rope_head_dim / 2) YaRN-scaled
  float rope_attn_factor = 1.0f;  // cos/sin multiplier (HF: mscale / mscale_all_dim ratio)
  float softmax_scale = 0.f;    // qk_head_dim^-0.5 * yarn_get_mscale(factor, mscale_all_dim)^2

  static MlaParams from_config(const ModelConfig& c);
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }
};

// Step 1 of MLA for x (T, hidden) (already input_layernorm'ed): queries into ws.q (T, H, qk_head_dim)
// with q_pe rotated, the normalised q latent into ws.q_a (T, q_lora_rank; the V3.2 indexer reads it),
// and each token's latent row into its sequence's cache rows (rows[seq], this layer).
void mla_project(const float* x, const TokenBatch& b, const MlaWeights& w, const MlaParams& p, const LayerRows* rows,
                 Workspace& ws);

// The cache half of step 1: each token's latent row [norm(c_kv) | rope(k_pe)] from x (T, hidden,
// input_layernorm'ed) into rows[seq], without the queries. Uses ws.kv_a and ws.rope_cs.
void mla_write_latent(const float* x, const TokenBatch& b, const MlaWeights& w, const MlaParams& p,
                      const LayerRows* rows, Workspace& ws);

// Step 2: out (T, hidden) = attention of ws.q over its sequence's cache positions [0, pos] for each
// query, then o_proj. `allowed` (optional, per token a row of pos+1 bytes, 1 = attend) restricts the
// keys each query sees (V3.2 sparse attention); without it attention is dense and causal.
void mla_attend(float* out, const TokenBatch& b, const MlaWeights& w, const MlaParams& p, const LayerRows* rows,
                AttnImpl impl, Workspace& ws, const uint8_t* const* allowed = nullptr);

// The products of decode attention for a layer whose kv_b_proj has dtype kv_b_dtype, under a
// workspace's kernel and attn_precision (the rule of Workspace::attn_precision). `--kv-type auto`
// keeps the latent cache in bf16 exactly where these are bf16 (AMX tiles or vdpbf16ps read bf16 rows
// directly; float32 products would widen every row first).
DecodeProducts decode_attn_products(DType kv_b_dtype, MatmulKernel kernel, AttnPrecision precision);

}  // namespace dseek
