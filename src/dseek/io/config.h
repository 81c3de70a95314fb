// ModelConfig: the fields of a DeepSeek config.json (HF keys, unchanged names), with the
// Hugging Face defaults of DeepseekV2Config / DeepseekV3Config when a field is absent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dseek {

enum class ModelType : uint8_t { kDeepseekV2, kDeepseekV3, kDeepseekV32, kSentinel };
enum class TopKMethod : uint8_t { kGreedy, kGroupLimitedGreedy, kNoauxTc, kSentinel };
enum class ScoringFunc : uint8_t { kSoftmax, kSigmoid, kSentinel };

struct RopeScaling {
  bool yarn = false;  // rope_scaling.type == "yarn"; absent -> plain RoPE
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct QuantizationConfig {
  bool fp8 = false;              // quant_method == "fp8"
  int64_t weight_block_rows = 128;  // weight_block_size[0]
  int64_t weight_block_cols = 128;  // weight_block_size[1]
  bool scale_ue8m0 = false;      // scale_fmt == "ue8m0"
};

struct ModelConfig {
  ModelType model_type = ModelType::kDeepseekV3;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;        // dense MLP
  int64_t moe_intermediate_size = 0;    // one routed / shared expert
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0; // MTP modules after the main layers
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t n_shared_experts = 0;
  int64_t n_routed_experts = 0;         // 0: no MoE layers (config null)
  double routed_scaling_factor = 1.0;
  TopKMethod topk_method = TopKMethod::kGreedy;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t num_experts_per_tok = 0;
  int64_t moe_layer_freq = 1;
  int64_t first_k_dense_replace = 0;
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool attention_bias = false;
  int64_t q_lora_rank = 0;  // 0: config null, queries use q_proj directly (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  // V3.2 lightning indexer (deepseek_v32 only).
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;
  QuantizationConfig quantization;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Width of one token's latent KV cache row: c_kv and the shared k_pe (MLA's point).
  int64_t kv_latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  bool has_indexer() const { return model_type == ModelType::kDeepseekV32; }
};

std::string_view model_type_name(ModelType t);
std::string_view topk_method_name(TopKMethod m);

// Parses config.json text. `label` (the path) starts every error message, which names the field:
// "v3/config.json: field "kv_lora_rank": expected an integer in [1, ...], got -3". Unknown enum strings
// (topk_method, scoring_func, model_type, hidden_act, rope_scaling.type) are errors, never defaults.
ModelConfig parse_config_json(std::string_view text, const std::string& label);
// Reads DIR/config.json.
ModelConfig load_config(const std::string& dir);

}  // namespace dseek
