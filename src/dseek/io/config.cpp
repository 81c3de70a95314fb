#include "dseek/io/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

namespace dseek {

using nlohmann::json;

std::string_view model_type_name(ModelType t) {
  switch (t) {
    case ModelType::kDeepseekV2: return "deepseek_v2";
    case ModelType::kDeepseekV3: return "deepseek_v3";
    case ModelType::kDeepseekV32: return "deepseek_v32";
    default: return "?";
  }
}

std::string_view topk_method_name(TopKMethod m) {
  switch (m) {
    case TopKMethod::kGreedy: return "greedy";
    case TopKMethod::kGroupLimitedGreedy: return "group_limited_greedy";
    case TopKMethod::kNoauxTc: return "noaux_tc";
    default: return "?";
  }
}

namespace {

// Typed access to one JSON object with errors naming the file and field.
class Fields {
 public:
  Fields(const json& obj, std::string label, std::string prefix)
      : obj_(obj), label_(std::move(label)), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw Error(label_ + ": field \"" + prefix_ + std::string(key) + "\": " + what);
  }
  const json* find(std::string_view key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string got(const json& v) const {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
  }
  // Integer (JSON integer, or a float with an integral value) in [lo, hi]; `fallback` when absent.
  int64_t integer(std::string_view key, int64_t fallback, int64_t lo = 0, int64_t hi = int64_t(1) << 40) const {
    const json* v = find(key);
    if (!v) return fallback;
    int64_t x;
    if (v->is_number_integer()) {
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      x = int64_t(v->get<double>());
    } else {
      fail(key, "expected an integer, got " + got(*v));
    }
    if (x < lo || x > hi)
      fail(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + got(*v));
    return x;
  }
  int64_t positive(std::string_view key, int64_t fallback) const { return integer(key, fallback, 1); }
  double number(std::string_view key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, "expected a number, got " + got(*v));
    double x = v->get<double>();
    if (!std::isfinite(x)) fail(key, "expected a finite number");
    return x;
  }
  bool boolean(std::string_view key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected true or false, got " + got(*v));
    return v->get<bool>();
  }
  std::string string(std::string_view key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "expected a string, got " + got(*v));
    return v->get<std::string>();
  }

 private:
  const json& obj_;
  std::string label_;
  std::string prefix_;
};

}  // namespace

ModelConfig parse_config_json(std::string_view text, const std::string& label) {
  if (text.find('\0') != std::string_view::npos)  // nlohmann would stop reading at a NUL byte
    throw Error(label + ": invalid JSON: NUL byte at offset " + std::to_string(text.find('\0')));
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(label + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const json::exception& e) {  // e.g. number overflow (1e999)
    throw Error(label + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(label + ": expected a JSON object at the top level");
  Fields f(root, label, "");

  ModelConfig c;
  const std::string mt = f.string("model_type", "");
  if (mt == "deepseek_v2")
    c.model_type = ModelType::kDeepseekV2;
  else if (mt == "deepseek_v3")
    c.model_type = ModelType::kDeepseekV3;
  else if (mt == "deepseek_v32")
    c.model_type = ModelType::kDeepseekV32;
  else
    f.fail("model_type", mt.empty() ? "missing (expected deepseek_v2, deepseek_v3 or deepseek_v32)"
                                    : "unsupported value \"" + mt + "\" (expected deepseek_v2, deepseek_v3 or deepseek_v32)");
  const bool v2 = c.model_type == ModelType::kDeepseekV2;

  // Defaults: transformers' DeepseekV2Config / DeepseekV3Config (V3.2 shares V3's).
  c.vocab_size = f.positive("vocab_size", v2 ? 102400 : 129280);
  c.hidden_size = f.positive("hidden_size", v2 ? 4096 : 7168);
  c.intermediate_size = f.positive("intermediate_size", v2 ? 11008 : 18432);
  c.moe_intermediate_size = f.positive("moe_intermediate_size", v2 ? 1407 : 2048);
  c.num_hidden_layers = f.positive("num_hidden_layers", v2 ? 30 : 61);
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", v2 ? 0 : 1, 0, 16);
  c.num_attention_heads = f.positive("num_attention_heads", v2 ? 32 : 128);
  c.num_key_value_heads = f.positive("num_key_value_heads", c.num_attention_heads);
  c.n_shared_experts = f.integer("n_shared_experts", v2 ? 0 : 1, 0, 1 << 16);
  c.n_routed_experts = f.integer("n_routed_experts", v2 ? 0 : 256, 0, 1 << 16);
  c.routed_scaling_factor = f.number("routed_scaling_factor", v2 ? 1.0 : 2.5);
  c.n_group = f.integer("n_group", v2 ? 1 : 8, 1, 1 << 16);
  c.topk_group = f.integer("topk_group", v2 ? 1 : 4, 1, 1 << 16);
  c.num_experts_per_tok = f.integer("num_experts_per_tok", v2 ? 0 : 8, 0, 1 << 16);
  c.moe_layer_freq = f.positive("moe_layer_freq", 1);
  c.first_k_dense_replace = f.integer("first_k_dense_replace", v2 ? 0 : 3, 0, 1 << 20);
  c.norm_topk_prob = f.boolean("norm_topk_prob", !v2);
  c.max_position_embeddings = f.positive("max_position_embeddings", v2 ? 2048 : 4096);
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.rope_theta = f.number("rope_theta", 10000.0);
  c.attention_bias = f.boolean("attention_bias", false);
  c.q_lora_rank = f.integer("q_lora_rank", 1536, 0, 1 << 20);
  if (root.contains("q_lora_rank") && root["q_lora_rank"].is_null()) c.q_lora_rank = 0;
  c.kv_lora_rank = f.positive("kv_lora_rank", 512);
  c.qk_nope_head_dim = f.integer("qk_nope_head_dim", 128, 0, 1 << 16);
  c.qk_rope_head_dim = f.positive("qk_rope_head_dim", 64);
  c.v_head_dim = f.positive("v_head_dim", 128);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = f.integer("bos_token_id", v2 ? 100000 : 0, 0, c.vocab_size - 1);
  c.eos_token_id = f.integer("eos_token_id", v2 ? 100001 : 1, 0, c.vocab_size - 1);

  const std::string method = f.string("topk_method", v2 ? "greedy" : "noaux_tc");
  // "gready" is the spelling of DeepseekV2Config's default; released configs say "greedy".
  if (method == "greedy" || method == "gready")
    c.topk_method = TopKMethod::kGreedy;
  else if (method == "group_limited_greedy")
    c.topk_method = TopKMethod::kGroupLimitedGreedy;
  else if (method == "noaux_tc")
    c.topk_method = TopKMethod::kNoauxTc;
  else
    f.fail("topk_method", "unsupported value \"" + method + "\" (expected greedy, group_limited_greedy or noaux_tc)");

  const std::string scoring = f.string("scoring_func", v2 ? "softmax" : "sigmoid");
  if (scoring == "softmax")
    c.scoring_func = ScoringFunc::kSoftmax;
  else if (scoring == "sigmoid")
    c.scoring_func = ScoringFunc::kSigmoid;
  else
    f.fail("scoring_func", "unsupported value \"" + scoring + "\" (expected softmax or sigmoid)");

  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", "unsupported value \"" + act + "\" (only silu is used by DeepSeek models)");

  if (const json* rs = f.find("rope_scaling")) {
    if (!rs->is_object()) f.fail("rope_scaling", "expected an object or null");
    Fields r(*rs, label, "rope_scaling.");
    std::string type = r.string("type", r.string("rope_type", ""));
    if (type == "yarn") {
      c.rope_scaling.yarn = true;
      c.rope_scaling.factor = r.number("factor", 1.0);
      c.rope_scaling.original_max_position_embeddings = r.positive("original_max_position_embeddings", 4096);
      c.rope_scaling.beta_fast = r.number("beta_fast", 32.0);
      c.rope_scaling.beta_slow = r.number("beta_slow", 1.0);
      c.rope_scaling.mscale = r.number("mscale", 1.0);
      c.rope_scaling.mscale_all_dim = r.number("mscale_all_dim", 0.0);
      if (c.rope_scaling.factor <= 0) r.fail("factor", "must be positive");
    } else if (!(type.empty() || type == "default")) {
      r.fail("type", "unsupported RoPE scaling \"" + type + "\" (DeepSeek models use yarn)");
    }
  }

  if (c.model_type == ModelType::kDeepseekV32) {
    c.index_n_heads = f.positive("index_n_heads", 64);
    c.index_head_dim = f.positive("index_head_dim", 128);
    c.index_topk = f.positive("index_topk", 2048);
    if (c.index_head_dim < c.qk_rope_head_dim)
      f.fail("index_head_dim", "must be at least qk_rope_head_dim (" + std::to_string(c.qk_rope_head_dim) + ")");
  }

  if (const json* q = f.find("quantization_config")) {
    if (!q->is_object()) f.fail("quantization_config", "expected an object");
    Fields qf(*q, label, "quantization_config.");
    const std::string qm = qf.string("quant_method", "");
    if (qm != "fp8") qf.fail("quant_method", "unsupported value \"" + qm + "\" (supported: fp8)");
    c.quantization.fp8 = true;
    if (const json* bs = qf.find("weight_block_size")) {
      if (!bs->is_array() || bs->size() != 2 || !(*bs)[0].is_number_integer() || !(*bs)[1].is_number_integer() ||
          (*bs)[0].get<int64_t>() <= 0 || (*bs)[1].get<int64_t>() <= 0)
        qf.fail("weight_block_size", "expected two positive integers, got " + qf.got(*bs));
      c.quantization.weight_block_rows = (*bs)[0].get<int64_t>();
      c.quantization.weight_block_cols = (*bs)[1].get<int64_t>();
    }
    const std::string fmt = qf.string("scale_fmt", "");
    if (fmt == "ue8m0")
      c.quantization.scale_ue8m0 = true;
    else if (!fmt.empty())
      qf.fail("scale_fmt", "unsupported value \"" + fmt + "\" (supported: ue8m0 or absent)");
  }

  // Cross-field consistency: a config that cannot describe a working model is rejected here,
  // before any tensor is bound.
  if (c.n_routed_experts > 0) {
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts)
      f.fail("num_experts_per_tok", "must be in [1, n_routed_experts=" + std::to_string(c.n_routed_experts) + "]");
    if (c.n_routed_experts % c.n_group != 0)
      f.fail("n_group", "must divide n_routed_experts=" + std::to_string(c.n_routed_experts));
    if (c.topk_group > c.n_group) f.fail("topk_group", "must not exceed n_group=" + std::to_string(c.n_group));
    if (c.topk_method != TopKMethod::kGreedy &&
        c.topk_group * (c.n_routed_experts / c.n_group) < c.num_experts_per_tok)
      f.fail("topk_group", "selected groups hold fewer experts than num_experts_per_tok");
  }
  if (c.qk_rope_head_dim % 2 != 0) f.fail("qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  if (c.num_key_value_heads != c.num_attention_heads)
    f.fail("num_key_value_heads", "MLA expects num_key_value_heads == num_attention_heads");
  return c;
}

ModelConfig load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  return parse_config_json(read_text_file(path), path);
}

}  // namespace dseek
