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

// out (T, hidden) = MLA over x (T, hidden) (already input_layernorm'ed) for the tokens at positions
// start_pos .. start_pos + T - 1. Writes their latent rows into cache (capacity, latent_dim) and
// attends causally to positions [0, pos]. `allowed` (optional, (T, start_pos + T) bytes, 1 = keep)
// restricts which keys each query may attend to (V3.2 sparse attention).
void mla_forward(float* out, const float* x, int64_t T, int64_t start_pos, const MlaWeights& w, const MlaParams& p,
                 float* cache, AttnImpl impl, Workspace& ws, const uint8_t* allowed = nullptr);

}  // namespace dseek
