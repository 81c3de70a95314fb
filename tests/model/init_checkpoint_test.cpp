// `dseek init` checkpoints load back through bind_weights (so tensor_specs and the binder agree),
// are deterministic, shard correctly, and FP8 checkpoints are used in place (no float copy).
#include "dseek/model/init_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/shared_dir.h"
#include "dseek/core/mapped_file.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;

std::string scratch(const std::string& tag) {
  static int counter = 0;
  fs::path p = fs::path(::testing::TempDir()) / ("dseek_init_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                                 std::to_string(counter++));
  fs::remove_all(p);
  return p.string();
}

std::string file_bytes(const std::string& path) { return read_text_file(path); }

// Prefill logits of the last position, and the same position reached by decoding one token at a time.
void prefill_vs_decode(const Model& m, float* max_diff) {
  const ModelConfig& c = m.config();
  std::vector<int32_t> ids = {1, 5, 9, 2, 7, 3, 11, 4};
  const int64_t T = int64_t(ids.size()), V = c.vocab_size;
  Workspace ws(c, T, T);
  // The naive full forward attends in float32; so does decode here (on AMX CPUs it would round its
  // scores to bf16 for non-F32 weights: bounded in prefill_attention_test.cpp).
  ws.attn_precision = AttnPrecision::kF32;
  std::vector<float> full(static_cast<size_t>(V)), step(static_cast<size_t>(V));
  {
    KVCache cache(c, m.n_cache_layers(), T);
    m.forward(ids.data(), T, 0, cache.view(), AttnImpl::kNaive, ws, full.data(), T - 1);
  }
  KVCache cache(c, m.n_cache_layers(), T);
  m.forward(ids.data(), 3, 0, cache.view(), AttnImpl::kAbsorb, ws, nullptr);
  for (int64_t p = 3; p < T; ++p) m.forward(ids.data() + p, 1, p, cache.view(), AttnImpl::kAbsorb, ws, step.data());
  *max_diff = 0;
  for (int64_t i = 0; i < V; ++i) {
    ASSERT_TRUE(std::isfinite(step[size_t(i)]));
    *max_diff = std::max(*max_diff, std::fabs(full[size_t(i)] - step[size_t(i)]));
  }
}

struct InitCase {
  std::string config;
  DType dtype;
};

class InitRoundTrip : public ::testing::TestWithParam<InitCase> {};

TEST_P(InitRoundTrip, LoadsRunsAndIsDeterministic) {
  const InitCase& ic = GetParam();
  const std::string cfg_path = test::golden_model_dir(ic.config) + "/config.json";
  const std::string text = read_text_file(cfg_path);
  const std::string a = scratch("a"), b = scratch("b");
  InitOptions o;
  o.seed = 42;
  o.dtype = ic.dtype;
  // Weights of std 0.02 on these 64-wide toy models make router scores near-ties that float noise
  // (naive prefill vs absorbed decode) can flip; a std like the golden cases' keeps margins clear.
  o.std = 0.15f;
  init_checkpoint(text, cfg_path, a, o);
  init_checkpoint(text, cfg_path, b, o);
  EXPECT_EQ(file_bytes(a + "/model.safetensors"), file_bytes(b + "/model.safetensors")) << "not deterministic";
  const bool mtp = load_config(a).num_nextn_predict_layers > 0;
  Model m = Model::load(a, {.load_mtp = mtp});
  EXPECT_EQ(m.weights().layers[1].self_attn.kv_b_proj.dtype, ic.dtype);
  float d;
  prefill_vs_decode(m, &d);
  // F32 weights compute in float32: prefill and decode differ by float noise only. BF16 weights (and
  // an FP8 checkpoint's BF16 embedding, head and router, as in DeepSeek-V3's) may run through kernels
  // that round activations to bf16 (2^-9 relative per value), README: ~5e-2.
  const float tol = ic.dtype == DType::kF32 ? 1e-4f : 5e-2f;
  EXPECT_LE(d, tol) << "decode through the cache disagrees with the full forward";
  fs::remove_all(a);
  fs::remove_all(b);
}

INSTANTIATE_TEST_SUITE_P(Configs, InitRoundTrip,
                         ::testing::Values(InitCase{"v2lite", DType::kF32}, InitCase{"v2", DType::kBF16},
                                           InitCase{"v3", DType::kF32}, InitCase{"v3", DType::kF8E4M3},
                                           InitCase{"v32", DType::kBF16}, InitCase{"v32", DType::kF8E4M3}),
                         [](const auto& info) {
                           std::string n = info.param.config + "_" + std::string(dtype_name(info.param.dtype));
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Init, ShardsWithIndexLoad) {
  const std::string cfg_path = test::golden_model_dir("v3") + "/config.json";
  const std::string dir = scratch("shards");
  InitOptions o;
  o.shard_bytes = 256 << 10;  // 256 KiB: the ~2 MB model becomes several shards
  init_checkpoint(read_text_file(cfg_path), cfg_path, dir, o);
  ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir)) shards += e.path().extension() == ".safetensors";
  EXPECT_GT(shards, 3);
  Model m = Model::load(dir, {.load_mtp = true});
  float d;
  prefill_vs_decode(m, &d);
  EXPECT_LE(d, 1e-4f);
  fs::remove_all(dir);
}

// Resident anonymous memory (RssAnon): a copy of the weights would land there. File-backed pages
// of the mapping are left out: touching one norm vector can map a whole 2 MiB folio of the file.
int64_t anon_resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8)) * 1024;
  ADD_FAILURE() << "no RssAnon in /proc/self/status";
  return 0;
}

// Issue 5: an FP8 checkpoint is mapped, not converted. Loading may only add the small float
// vectors (norms, biases) to anonymous memory; running it only the workspace and cache. A float32
// copy of the linear weights would add 4x the FP8 bytes.
TEST(Init, Fp8CheckpointIsUsedInPlace) {
  const std::string cfg = R"({"model_type": "deepseek_v3", "vocab_size": 2048, "hidden_size": 1024,
    "intermediate_size": 2048, "moe_intermediate_size": 512, "num_hidden_layers": 2,
    "num_nextn_predict_layers": 0, "num_attention_heads": 8, "num_key_value_heads": 8,
    "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
    "first_k_dense_replace": 1, "q_lora_rank": 384, "kv_lora_rank": 256, "qk_nope_head_dim": 64,
    "qk_rope_head_dim": 32, "v_head_dim": 64})";
  const std::string dir = scratch("fp8mem");
  InitOptions o;
  o.dtype = DType::kF8E4M3;
  init_checkpoint(cfg, "inline config", dir, o);
  const int64_t file = int64_t(fs::file_size(dir + "/model.safetensors"));
  ASSERT_GT(file, 20 << 20) << "test model too small to measure";

  const int64_t before = anon_resident_bytes();
  Model m = Model::load(dir);
  const int64_t after_load = anon_resident_bytes();
  // Margin: the float copies of 1-D vectors are ~100 KB; allow 8 MB for allocator noise.
  constexpr int64_t kLoadMargin = 8 << 20;
  EXPECT_LT(after_load - before, kLoadMargin) << "loading grew RSS by " << (after_load - before) << " bytes";

  std::vector<int32_t> ids(16);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 37 % 2048);
  Workspace ws(m.config(), 16, 16);
  KVCache cache(m.config(), m.n_cache_layers(), 16);
  std::vector<float> logits(2048);
  m.forward(ids.data(), 16, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), 15);
  const int64_t after_run = anon_resident_bytes();
  // Workspace and cache (a few MB) + 16 MB margin; a float32 copy of the FP8 linears would add
  // about 4x the file size (> 80 MB).
  constexpr int64_t kRunMargin = 16 << 20;
  EXPECT_LT(after_run - before, kRunMargin) << "anonymous RSS grew by " << (after_run - before) << " for a " << file
                                            << "-byte FP8 file";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dseek
