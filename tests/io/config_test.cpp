// config.json parsing: the golden configs, Hugging Face defaults for absent fields, and errors that
// name the file and the field.
#include "dseek/io/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/core/error.h"

namespace dseek {
namespace {

const std::string kLabel = "test/config.json";

ModelConfig parse(const std::string& json) { return parse_config_json(json, kLabel); }

// Parsing `json` must throw dseek::Error whose message contains the label and every fragment.
void expect_error(const std::string& json, const std::vector<std::string>& fragments) {
  try {
    parse(json);
    ADD_FAILURE() << "no error for: " << json;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(kLabel, 0), 0u) << "message does not start with the file label: " << msg;
    for (const auto& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "message lacks \"" << f << "\": " << msg << "\n  input: " << json;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type (" << e.what() << ") for: " << json;
  }
}

// A valid small V3 config to which one field is added or overridden (JSON objects keep the last
// duplicate in nlohmann's parser, but we avoid duplicates by inserting before the fixed fields).
std::string v3_with(const std::string& extra) {
  std::string base =
      R"("model_type": "deepseek_v3", "hidden_size": 64, "n_routed_experts": 16, "num_experts_per_tok": 4,
                       "n_group": 4, "topk_group": 2)";
  return "{" + (extra.empty() ? base : extra + ", " + base) + "}";
}
std::string v3_without_moe(const std::string& extra) { return R"({"model_type": "deepseek_v3", )" + extra + "}"; }

TEST(Config, GoldenV2Lite) {
  const ModelConfig c = load_config(test::golden_model_dir("v2lite"));
  EXPECT_EQ(c.model_type, ModelType::kDeepseekV2);
  EXPECT_EQ(c.q_lora_rank, 0) << "q_lora_rank null -> 0 (queries use q_proj)";
  EXPECT_EQ(c.topk_method, TopKMethod::kGreedy);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.kv_lora_rank, 32);
  EXPECT_EQ(c.qk_rope_head_dim, 8);
  EXPECT_EQ(c.kv_latent_dim(), 40);
  EXPECT_EQ(c.qk_head_dim(), 24);
  EXPECT_TRUE(c.rope_scaling.yarn);
  EXPECT_EQ(c.rope_scaling.factor, 40);
  EXPECT_EQ(c.rope_scaling.mscale, 0.707);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_FALSE(c.quantization.fp8);
  EXPECT_FALSE(c.has_indexer());
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_FALSE(c.is_moe_layer(0));  // first_k_dense_replace 1
  EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(Config, GoldenV2) {
  const ModelConfig c = load_config(test::golden_model_dir("v2"));
  EXPECT_EQ(c.model_type, ModelType::kDeepseekV2);
  EXPECT_EQ(c.q_lora_rank, 48);
  EXPECT_EQ(c.topk_method, TopKMethod::kGroupLimitedGreedy);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.routed_scaling_factor, 4.0);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
}

void expect_v3_family(const ModelConfig& c) {
  EXPECT_EQ(c.topk_method, TopKMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_TRUE(c.rope_scaling.yarn);
  EXPECT_EQ(c.rope_scaling.factor, 40);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1);
  EXPECT_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
}

TEST(Config, GoldenV3) {
  const ModelConfig c = load_config(test::golden_model_dir("v3"));
  EXPECT_EQ(c.model_type, ModelType::kDeepseekV3);
  expect_v3_family(c);
  EXPECT_EQ(c.q_lora_rank, 48);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_FALSE(c.quantization.fp8);
}

TEST(Config, GoldenV3Fp8) {
  const ModelConfig c = load_config(test::golden_model_dir("v3-fp8"));
  expect_v3_family(c);
  EXPECT_TRUE(c.quantization.fp8);
  EXPECT_EQ(c.quantization.weight_block_rows, 128);
  EXPECT_EQ(c.quantization.weight_block_cols, 128);
  EXPECT_FALSE(c.quantization.scale_ue8m0);
}

TEST(Config, GoldenV32) {
  const ModelConfig c = load_config(test::golden_model_dir("v32"));
  EXPECT_EQ(c.model_type, ModelType::kDeepseekV32);
  expect_v3_family(c);
  EXPECT_TRUE(c.has_indexer());
  EXPECT_EQ(c.index_topk, 8);
  EXPECT_EQ(c.index_n_heads, 8);
  EXPECT_EQ(c.index_head_dim, 128);
  EXPECT_EQ(c.q_lora_rank, 32);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
}

// DeepseekV3Config's defaults (transformers configuration_deepseek_v3.py).
TEST(Config, DefaultsV3) {
  const ModelConfig c = parse(R"({"model_type": "deepseek_v3"})");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.topk_method, TopKMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.rope_scaling.yarn);
  EXPECT_FALSE(c.quantization.fp8);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
}

// DeepseekV2Config's defaults: softmax greedy ("gready" in transformers), no MoE (n_routed_experts None).
TEST(Config, DefaultsV2) {
  const ModelConfig c = parse(R"({"model_type": "deepseek_v2"})");
  EXPECT_EQ(c.model_type, ModelType::kDeepseekV2);
  EXPECT_EQ(c.topk_method, TopKMethod::kGreedy);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(c.n_routed_experts, 0);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(5));
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.vocab_size, 102400);
  EXPECT_EQ(c.num_hidden_layers, 30);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, 100001);
  // transformers' own misspelled default is accepted as greedy
  EXPECT_EQ(parse(R"({"model_type": "deepseek_v2", "topk_method": "gready"})").topk_method, TopKMethod::kGreedy);
}

TEST(Config, NullMeansDefaultAndRopeTypeSpelling) {
  const ModelConfig c = parse(R"({"model_type": "deepseek_v3", "rope_scaling": null, "quantization_config": null,
                                  "q_lora_rank": null, "hidden_size": 64.0})");
  EXPECT_FALSE(c.rope_scaling.yarn);
  EXPECT_FALSE(c.quantization.fp8);
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.hidden_size, 64);  // an integral float is an integer
  const ModelConfig r = parse(R"({"model_type": "deepseek_v3", "rope_scaling": {"rope_type": "yarn", "factor": 4}})");
  EXPECT_TRUE(r.rope_scaling.yarn);
  EXPECT_EQ(r.rope_scaling.factor, 4);
  const ModelConfig q = parse(R"({"model_type": "deepseek_v3", "quantization_config":
                                  {"quant_method": "fp8", "weight_block_size": [64, 32], "scale_fmt": "ue8m0"}})");
  EXPECT_TRUE(q.quantization.fp8);
  EXPECT_EQ(q.quantization.weight_block_rows, 64);
  EXPECT_EQ(q.quantization.weight_block_cols, 32);
  EXPECT_TRUE(q.quantization.scale_ue8m0);
}

TEST(Config, ErrorsNameTheField) {
  expect_error(R"({"model_type": "deepseek_v3", )", {"byte"});
  expect_error(R"({"model_type": "deepseek_v3" "hidden_size": 3})", {"byte"});
  expect_error("", {"byte"});
  expect_error(R"([{"model_type": "deepseek_v3"}])", {"object"});
  expect_error(R"("deepseek_v3")", {"object"});
  expect_error(R"({"model_type": "llama"})", {"\"model_type\"", "llama"});
  expect_error(R"({"hidden_size": 64})", {"\"model_type\""});
  expect_error(v3_with(R"("topk_method": "group_limited")"), {"\"topk_method\"", "group_limited"});
  expect_error(v3_with(R"("scoring_func": "relu")"), {"\"scoring_func\"", "relu"});
  expect_error(v3_with(R"("hidden_act": "gelu")"), {"\"hidden_act\"", "gelu"});
  expect_error(v3_with(R"("kv_lora_rank": -3)"), {"\"kv_lora_rank\"", "-3"});
  expect_error(v3_with(R"("kv_lora_rank": 0)"), {"\"kv_lora_rank\""});
  expect_error(v3_with(R"("num_hidden_layers": "61")"), {"\"num_hidden_layers\"", "integer", "\"61\""});
  expect_error(v3_with(R"("vocab_size": 1.5)"), {"\"vocab_size\"", "integer"});
  expect_error(v3_with(R"("num_attention_heads": true)"), {"\"num_attention_heads\"", "integer"});
  expect_error(v3_with(R"("norm_topk_prob": 1)"), {"\"norm_topk_prob\""});
  expect_error(v3_with(R"("rope_theta": "10000")"), {"\"rope_theta\"", "number"});
  expect_error(
      R"({"model_type": "deepseek_v3", "n_routed_experts": 4, "num_experts_per_tok": 5, "n_group": 1, "topk_group": 1})",
      {"\"num_experts_per_tok\""});
  expect_error(
      R"({"model_type": "deepseek_v3", "n_routed_experts": 10, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2})",
      {"\"n_group\""});
  expect_error(
      R"({"model_type": "deepseek_v3", "n_routed_experts": 16, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 5})",
      {"\"topk_group\""});
  expect_error(v3_with(R"("qk_rope_head_dim": 7)"), {"\"qk_rope_head_dim\""});
  expect_error(v3_with(R"("num_key_value_heads": 1)"), {"\"num_key_value_heads\""});
  expect_error(v3_with(R"("rope_scaling": {"type": "linear", "factor": 2})"), {"\"rope_scaling.type\"", "linear"});
  expect_error(v3_with(R"("rope_scaling": {"type": "yarn", "factor": -1})"), {"\"rope_scaling.factor\""});
  expect_error(v3_with(R"("rope_scaling": {"type": "yarn", "original_max_position_embeddings": "4k"})"),
               {"\"rope_scaling.original_max_position_embeddings\""});
  expect_error(v3_with(R"("rope_scaling": [1, 2])"), {"\"rope_scaling\""});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "awq"})"),
               {"\"quantization_config.quant_method\"", "awq"});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "fp8", "weight_block_size": [128]})"),
               {"\"quantization_config.weight_block_size\""});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 0]})"),
               {"\"quantization_config.weight_block_size\""});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "fp8", "weight_block_size": "128x128"})"),
               {"\"quantization_config.weight_block_size\""});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128, 1]})"),
               {"\"quantization_config.weight_block_size\""});
  expect_error(v3_with(R"("quantization_config": {"quant_method": "fp8", "scale_fmt": "e8m0"})"),
               {"\"quantization_config.scale_fmt\""});
  expect_error(R"({"model_type": "deepseek_v32", "index_head_dim": 32, "qk_rope_head_dim": 64})",
               {"\"index_head_dim\""});
  expect_error(v3_without_moe(R"("bos_token_id": 200000)"), {"\"bos_token_id\""});
}

TEST(Config, MissingFileNamesThePath) {
  const std::string dir = test::shared_dir() + "/golden/model/does-not-exist";
  try {
    load_config(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/config.json"), std::string::npos) << e.what();
  }
}

TEST(Config, ErrorLabelIsTheLoadedPath) {
  // load_config's label is DIR/config.json, which starts every message.
  try {
    parse_config_json(R"({"model_type": "deepseek_v3", "hidden_act": "gelu"})", "dir/config.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("dir/config.json: field \"hidden_act\"", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace dseek
