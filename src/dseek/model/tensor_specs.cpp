#include "dseek/model/tensor_specs.h"

namespace dseek {

namespace {

void add_mlp(std::vector<TensorSpec>& out, const std::string& p, int64_t inter, int64_t hidden) {
  out.push_back({p + "gate_proj.weight", {inter, hidden}, TensorRole::kLinear});
  out.push_back({p + "up_proj.weight", {inter, hidden}, TensorRole::kLinear});
  out.push_back({p + "down_proj.weight", {hidden, inter}, TensorRole::kLinear});
}

void add_layer(std::vector<TensorSpec>& out, const ModelConfig& c, int64_t index) {
  const std::string p = "model.layers." + std::to_string(index) + ".";
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  out.push_back({p + "input_layernorm.weight", {D}, TensorRole::kNormWeight});
  out.push_back({p + "post_attention_layernorm.weight", {D}, TensorRole::kNormWeight});
  const std::string a = p + "self_attn.";
  if (c.q_lora_rank == 0) {
    out.push_back({a + "q_proj.weight", {H * c.qk_head_dim(), D}, TensorRole::kLinear});
  } else {
    out.push_back({a + "q_a_proj.weight", {c.q_lora_rank, D}, TensorRole::kLinear});
    out.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}, TensorRole::kNormWeight});
    out.push_back({a + "q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}, TensorRole::kLinear});
  }
  out.push_back({a + "kv_a_proj_with_mqa.weight", {c.kv_latent_dim(), D}, TensorRole::kLinear});
  out.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}, TensorRole::kNormWeight});
  out.push_back({a + "kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, TensorRole::kLinear});
  out.push_back({a + "o_proj.weight", {D, H * c.v_head_dim}, TensorRole::kLinear});
  if (c.has_indexer()) {
    const std::string i = a + "indexer.";
    out.push_back({i + "wq_b.weight", {c.index_n_heads * c.index_head_dim, c.q_lora_rank}, TensorRole::kLinear});
    out.push_back({i + "wk.weight", {c.index_head_dim, D}, TensorRole::kLinear});
    out.push_back({i + "k_norm.weight", {c.index_head_dim}, TensorRole::kNormWeight});
    out.push_back({i + "k_norm.bias", {c.index_head_dim}, TensorRole::kBias});
    out.push_back({i + "weights_proj.weight", {c.index_n_heads, D}, TensorRole::kLinear});
  }
  if (!c.is_moe_layer(index)) {
    add_mlp(out, p + "mlp.", c.intermediate_size, D);
    return;
  }
  out.push_back({p + "mlp.gate.weight", {c.n_routed_experts, D}, TensorRole::kTable});
  if (c.topk_method == TopKMethod::kNoauxTc)
    out.push_back({p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, TensorRole::kBias});
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    add_mlp(out, p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size, D);
  if (c.n_shared_experts > 0) add_mlp(out, p + "mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size, D);
}

}  // namespace

std::vector<TensorSpec> checkpoint_tensors(const ModelConfig& c, bool with_mtp) {
  std::vector<TensorSpec> out;
  const int64_t V = c.vocab_size, D = c.hidden_size;
  out.push_back({"model.embed_tokens.weight", {V, D}, TensorRole::kTable});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) add_layer(out, c, l);
  out.push_back({"model.norm.weight", {D}, TensorRole::kNormWeight});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, D}, TensorRole::kTable});
  if (with_mtp)
    for (int64_t d = 0; d < c.num_nextn_predict_layers; ++d) {
      const int64_t index = c.num_hidden_layers + d;
      const std::string p = "model.layers." + std::to_string(index) + ".";
      out.push_back({p + "enorm.weight", {D}, TensorRole::kNormWeight});
      out.push_back({p + "hnorm.weight", {D}, TensorRole::kNormWeight});
      out.push_back({p + "eh_proj.weight", {D, 2 * D}, TensorRole::kTable});
      add_layer(out, c, index);
      out.push_back({p + "shared_head.norm.weight", {D}, TensorRole::kNormWeight});
      out.push_back({p + "shared_head.head.weight", {V, D}, TensorRole::kTable});
      out.push_back({p + "embed_tokens.weight", {V, D}, TensorRole::kTable});
    }
  return out;
}

}  // namespace dseek
