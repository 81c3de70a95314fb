#include "dseek/model/weights.h"

#include <optional>

#include "dseek/core/error.h"
#include "dseek/kernels/matmul_quant.h"

namespace dseek {

namespace {

constexpr std::initializer_list<DType> kFloatTypes = {DType::kF32, DType::kBF16, DType::kF16};
constexpr std::initializer_list<DType> kMatrixTypes = {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3};

// Binds tensors under one name prefix ("model.layers.3.") with shape checks from the config.
class Binder {
 public:
  Binder(const Checkpoint& ckpt, const ModelConfig& cfg) : ckpt_(ckpt), cfg_(cfg) {}

  // dseek's block-quantized weights (`dseek quantize`, docs/quantization.md): stored as U8
  // [rows, row_bytes] with the shard metadata "dseek.quant.<name>" naming the format.
  std::optional<MatView> quantized(const std::string& name, int64_t rows, int64_t cols) const {
    if (!ckpt_.has(name) || ckpt_.get(name).dtype != DType::kU8) return std::nullopt;
    const auto& md = ckpt_.metadata_of(name);
    auto it = md.find("dseek.quant." + name);
    if (it == md.end())
      throw Error(ckpt_.file_of(name) + ": \"" + name + "\" is U8 but the metadata has no \"dseek.quant." + name +
                  "\" entry naming its quantized format");
    if (auto v = md.find("dseek.quant_version"); v == md.end() || v->second != "1")
      throw Error(ckpt_.file_of(name) + ": quantized tensors of format version " +
                  (v == md.end() ? std::string("(none)") : v->second) + "; this dseek reads version 1");
    const std::optional<DType> q = dtype_from_name(it->second);
    if (!q || !is_block_quantized(*q))
      throw Error(ckpt_.file_of(name) + ": metadata \"dseek.quant." + name + "\": unknown format \"" + it->second +
                  "\" (expected Q8_0, Q4_0, Q8_0_R16 or Q4_0_R16)");
    if (is_r16(*q)) {
      if (rows % kR16Rows != 0)
        throw Error(ckpt_.file_of(name) + ": \"" + name + "\" is " + it->second + " but has " + std::to_string(rows) +
                    " rows, not a multiple of 16");
      const Shape stored{rows / kR16Rows, kR16Rows * quant_row_bytes(*q, cols)};
      return view(ckpt_.expect(name, stored, {DType::kU8}).data, *q, rows, cols);
    }
    return view(ckpt_.expect(name, {rows, quant_row_bytes(*q, cols)}, {DType::kU8}).data, *q, rows, cols);
  }
  static MatView view(const void* data, DType dtype, int64_t rows, int64_t cols) {
    MatView m;
    m.data = data;
    m.dtype = dtype;
    m.rows = rows;
    m.cols = cols;
    return m;
  }

  // A linear weight (rows = out, cols = in); FP8 weights bind their <name>_scale_inv too.
  MatView mat(const std::string& name, int64_t rows, int64_t cols) const {
    if (auto q = quantized(name, rows, cols)) return *q;
    TensorView t = ckpt_.expect(name, {rows, cols}, kMatrixTypes);
    MatView m = view(t.data, t.dtype, rows, cols);
    if (t.dtype == DType::kF8E4M3) {
      const int64_t br = cfg_.quantization.weight_block_rows, bc = cfg_.quantization.weight_block_cols;
      if (br != bc)
        throw Error(ckpt_.dir() + "/config.json: quantization_config.weight_block_size [" + std::to_string(br) +
                    ", " + std::to_string(bc) + "] is not square; only square FP8 blocks are supported");
      const std::string sname = name + "_scale_inv";
      if (!ckpt_.has(sname))
        throw Error(ckpt_.file_of(name) + ": \"" + name + "\" is F8_E4M3 but its block scales \"" + sname +
                    "\" are missing");
      TensorView s = ckpt_.expect(sname, {(rows + br - 1) / br, (cols + bc - 1) / bc}, {DType::kF32});
      m.scale_inv = static_cast<const float*>(s.data);
      m.block = br;
    }
    return m;
  }
  // A float (embedding / head) matrix: FP8 is not used for these in released checkpoints.
  MatView table(const std::string& name, int64_t rows, int64_t cols) const {
    if (auto q = quantized(name, rows, cols)) return *q;
    TensorView t = ckpt_.expect(name, {rows, cols}, kFloatTypes);
    return view(t.data, t.dtype, rows, cols);
  }
  Vec vec(const std::string& name, int64_t n) const {
    TensorView t = ckpt_.expect(name, {n}, kFloatTypes);
    Vec v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      switch (t.dtype) {
        case DType::kF32: v[size_t(i)] = static_cast<const float*>(t.data)[i]; break;
        case DType::kBF16: v[size_t(i)] = bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
        default: v[size_t(i)] = f16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      }
    }
    return v;
  }
  MlpWeights mlp(const std::string& prefix, int64_t inter) const {
    const int64_t hidden = cfg_.hidden_size;
    return {mat(prefix + "gate_proj.weight", inter, hidden), mat(prefix + "up_proj.weight", inter, hidden),
            mat(prefix + "down_proj.weight", hidden, inter)};
  }

  LayerWeights layer(int64_t index) const {
    const ModelConfig& c = cfg_;
    const std::string p = "model.layers." + std::to_string(index) + ".";
    const int64_t H = c.num_attention_heads, hidden = c.hidden_size;
    LayerWeights L;
    L.input_layernorm = vec(p + "input_layernorm.weight", hidden);
    L.post_attention_layernorm = vec(p + "post_attention_layernorm.weight", hidden);

    MlaWeights& a = L.self_attn;
    const std::string ap = p + "self_attn.";
    if (c.q_lora_rank == 0) {
      a.q_proj = mat(ap + "q_proj.weight", H * c.qk_head_dim(), hidden);
    } else {
      a.q_a_proj = mat(ap + "q_a_proj.weight", c.q_lora_rank, hidden);
      a.q_a_layernorm = vec(ap + "q_a_layernorm.weight", c.q_lora_rank);
      a.q_b_proj = mat(ap + "q_b_proj.weight", H * c.qk_head_dim(), c.q_lora_rank);
    }
    a.kv_a_proj_with_mqa = mat(ap + "kv_a_proj_with_mqa.weight", c.kv_latent_dim(), hidden);
    a.kv_a_layernorm = vec(ap + "kv_a_layernorm.weight", c.kv_lora_rank);
    a.kv_b_proj = mat(ap + "kv_b_proj.weight", H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    a.o_proj = mat(ap + "o_proj.weight", hidden, H * c.v_head_dim);
    if (c.has_indexer()) {
      if (c.q_lora_rank == 0) throw Error(ckpt_.dir() + "/config.json: deepseek_v32 needs q_lora_rank (the indexer reads the q latent)");
      const std::string ip = ap + "indexer.";
      IndexerWeights& ix = a.indexer;
      ix.wq_b = mat(ip + "wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
      ix.wk = mat(ip + "wk.weight", c.index_head_dim, hidden);
      ix.k_norm_weight = vec(ip + "k_norm.weight", c.index_head_dim);
      ix.k_norm_bias = vec(ip + "k_norm.bias", c.index_head_dim);
      ix.weights_proj = mat(ip + "weights_proj.weight", c.index_n_heads, hidden);
    }

    // Layers past num_hidden_layers are MTP blocks: MoE like the last main layers.
    L.is_moe = c.is_moe_layer(index);
    if (!L.is_moe) {
      L.mlp = mlp(p + "mlp.", c.intermediate_size);
    } else {
      MoeWeights& m = L.moe;
      m.gate = table(p + "mlp.gate.weight", c.n_routed_experts, hidden);
      if (c.topk_method == TopKMethod::kNoauxTc)
        m.e_score_correction_bias = vec(p + "mlp.gate.e_score_correction_bias", c.n_routed_experts);
      m.experts.reserve(size_t(c.n_routed_experts));
      for (int64_t e = 0; e < c.n_routed_experts; ++e)
        m.experts.push_back(mlp(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size));
      if (c.n_shared_experts > 0)
        m.shared_experts = mlp(p + "mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size);
    }
    return L;
  }

 private:
  const Checkpoint& ckpt_;
  const ModelConfig& cfg_;
};

}  // namespace

ModelWeights bind_weights(const Checkpoint& ckpt, const ModelConfig& cfg, bool load_mtp) {
  Binder b(ckpt, cfg);
  ModelWeights w;
  const int64_t V = cfg.vocab_size, D = cfg.hidden_size;
  w.embed_tokens = b.table("model.embed_tokens.weight", V, D);
  w.layers.reserve(size_t(cfg.num_hidden_layers));
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) w.layers.push_back(b.layer(l));
  w.norm = b.vec("model.norm.weight", D);
  if (cfg.tie_word_embeddings && !ckpt.has("lm_head.weight"))
    w.lm_head = w.embed_tokens;
  else
    w.lm_head = b.table("lm_head.weight", V, D);

  if (load_mtp) {
    if (cfg.num_nextn_predict_layers == 0)
      throw Error(ckpt.dir() + "/config.json: MTP requested but num_nextn_predict_layers is 0");
    for (int64_t d = 0; d < cfg.num_nextn_predict_layers; ++d) {
      const int64_t index = cfg.num_hidden_layers + d;
      const std::string p = "model.layers." + std::to_string(index) + ".";
      MtpWeights m;
      m.enorm = b.vec(p + "enorm.weight", D);
      m.hnorm = b.vec(p + "hnorm.weight", D);
      m.eh_proj = b.mat(p + "eh_proj.weight", D, 2 * D);
      m.block = b.layer(index);
      m.shared_head_norm = b.vec(p + "shared_head.norm.weight", D);
      // The MTP copies of the embedding and head equal the main model's in released checkpoints;
      // a checkpoint without them shares the main model's (SGLang's reading).
      m.shared_head_head = ckpt.has(p + "shared_head.head.weight") ? b.table(p + "shared_head.head.weight", V, D) : w.lm_head;
      m.embed_tokens = ckpt.has(p + "embed_tokens.weight") ? b.table(p + "embed_tokens.weight", V, D) : w.embed_tokens;
      w.mtp.push_back(std::move(m));
    }
  }
  return w;
}

}  // namespace dseek
