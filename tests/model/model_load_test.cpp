// Loading behaviour beyond the golden numbers: BF16 weights, sparse-vs-dense attention, MTP on
// demand, and clear errors for checkpoints that do not fit their config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <functional>
#include <set>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/io/safetensors.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A scratch copy of a golden case whose config and tensors a test may rewrite.
class ScratchModel {
 public:
  explicit ScratchModel(const std::string& golden) : src_(test::golden_model_dir(golden)) {
    dir_ = fs::path(::testing::TempDir()) / ("dseek_model_" + golden + "_" + std::to_string(::getpid()) + "_" +
                                             std::to_string(counter_++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(src_ + "/config.json", dir_ / "config.json");
    fs::copy_file(src_ + "/model.safetensors", dir_ / "model.safetensors");
  }
  ~ScratchModel() { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }

  void edit_config(const std::function<void(json&)>& f) {
    json c = json::parse(read_text_file(src_ + "/config.json"));
    f(c);
    std::ofstream(dir_ / "config.json") << c.dump(2);
  }
  // Rewrites model.safetensors; `f` may change dtype/shape/data of each tensor or drop it (return false).
  void edit_tensors(const std::function<bool(TensorToWrite&, std::vector<uint8_t>&)>& f) {
    SafetensorsFile in = SafetensorsFile::open(src_ + "/model.safetensors");
    std::vector<std::vector<uint8_t>> storage;
    std::vector<TensorToWrite> out;
    storage.reserve(in.tensors().size());
    for (const TensorInfo& t : in.tensors()) {
      std::vector<uint8_t> bytes(in.data(t), in.data(t) + t.nbytes);
      TensorToWrite w{t.name, t.dtype, t.shape, nullptr};
      if (!f(w, bytes)) continue;
      storage.push_back(std::move(bytes));
      w.data = storage.back().data();
      out.push_back(w);
    }
    write_safetensors((dir_ / "model.safetensors").string(), out);
  }

 private:
  static inline int counter_ = 0;
  std::string src_;
  fs::path dir_;
};

// The tests below each isolate one rounding (bf16 weights, a bf16 cache), so prefill attention
// multiplies in float32 here; on AMX CPUs it would otherwise round its operands to bf16 for
// non-F32 weights (Workspace::attn_precision), bounded on its own in prefill_attention_test.cpp.
std::vector<float> prefill_logits(const Model& m, const std::vector<int32_t>& ids, ForwardTrace* trace = nullptr,
                                  KVDtype kv = KVDtype::kF32) {
  const ModelConfig& c = m.config();
  const int64_t T = int64_t(ids.size());
  Workspace ws(c, T, T);
  ws.attn_precision = AttnPrecision::kF32;
  KVCache cache(c, m.n_cache_layers(), T, kv);
  std::vector<float> logits(static_cast<size_t>(T * c.vocab_size));
  m.forward(ids.data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), 0, nullptr, trace);
  return logits;
}

std::vector<int32_t> golden_ids(const std::string& name) {
  SafetensorsFile g = SafetensorsFile::open(test::golden_model_dir(name) + "/golden.safetensors");
  const TensorInfo* t = g.find("input_ids");
  auto* p = reinterpret_cast<const int32_t*>(g.data(*t));
  return std::vector<int32_t>(p, p + t->shape[0]);
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

// The first of T positions whose expert set (k per token) differs between two traces in any layer;
// T if none does.
int64_t first_routing_change(const ForwardTrace& ta, const ForwardTrace& tb, int64_t T, int64_t k) {
  int64_t first = T;
  for (size_t l = 0; l < ta.topk_ids.size(); ++l)
    for (int64_t t = 0; t < T && !ta.topk_ids[l].empty(); ++t) {
      std::set<int32_t> a(ta.topk_ids[l].begin() + t * k, ta.topk_ids[l].begin() + (t + 1) * k);
      std::set<int32_t> b(tb.topk_ids[l].begin() + t * k, tb.topk_ids[l].begin() + (t + 1) * k);
      if (a != b) first = std::min(first, t);
    }
  return first;
}

// Rewrites every F32 tensor of a scratch model as BF16 (round to nearest even).
void convert_to_bf16(ScratchModel& s) {
  s.edit_tensors([](TensorToWrite& t, std::vector<uint8_t>& bytes) {
    if (t.dtype != DType::kF32) return true;
    const size_t n = bytes.size() / 4;
    std::vector<uint8_t> out(n * 2);
    for (size_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      uint16_t h = f32_to_bf16(f);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    bytes = std::move(out);
    t.dtype = DType::kBF16;
    return true;
  });
}

// Greedy decode of n tokens through the cache; margins[i] = top-1 minus top-2 logit at step i.
std::vector<int32_t> greedy(const Model& m, std::vector<int32_t> ids, int n, std::vector<float>* margins,
                            KVDtype kv = KVDtype::kF32) {
  const ModelConfig& c = m.config();
  const int64_t T = int64_t(ids.size()), V = c.vocab_size;
  ThreadPool pool(2);
  Workspace ws(c, T, T + n, &pool, false);
  ws.attn_precision = AttnPrecision::kF32;  // as prefill_logits
  KVCache cache(c, m.n_cache_layers(), T + n, kv);
  std::vector<float> logits(static_cast<size_t>(V));
  m.forward(ids.data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), T - 1);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> sorted = logits;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (margins) margins->push_back(sorted[0] - sorted[1]);
    const int32_t tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(tok);
    ids.push_back(tok);
    m.forward(&ids.back(), 1, int64_t(ids.size()) - 1, cache.view(), AttnImpl::kAbsorb, ws, logits.data());
  }
  return out;
}

// Issue 6: greedy generation with BF16 weights equals F32 greedy for the golden prompts as long as
// the F32 logit margin is large. Rule: tokens must agree up to the first step whose F32 top-1/top-2
// margin is below 0.1, twice the largest BF16 logit deviation measured above (0.0376 < 0.05).
TEST(ModelLoad, Bf16GreedyEqualsF32WhileMarginIsLarge) {
  for (const char* name : {"v2lite", "v2", "v3"}) {
    ScratchModel s(name);
    convert_to_bf16(s);
    Model f32 = Model::load(test::golden_model_dir(name));
    Model bf16 = Model::load(s.dir());
    const auto ids = golden_ids(name);
    std::vector<float> margins;
    const auto a = greedy(f32, ids, 16, &margins), b = greedy(bf16, ids, 16, nullptr);
    int compared = 0;
    for (size_t i = 0; i < a.size() && margins[i] >= 0.1f; ++i, ++compared)
      ASSERT_EQ(a[i], b[i]) << name << " step " << i << " (F32 margin " << margins[i] << ")";
    std::printf("%s: BF16 greedy == F32 greedy for the first %d tokens (margin >= 0.1)\n", name, compared);
    EXPECT_GE(compared, 1) << name << ": the first step should have a clear margin";
  }
}

// BF16 checkpoints compute with float32 accumulators: the v3 case stored in BF16 must track the F32
// result within the weight rounding (2^-9 relative per weight). README: a bf16 engine needs ~5e-2.
TEST(ModelLoad, Bf16WeightsTrackF32) {
  ScratchModel s("v3");
  convert_to_bf16(s);
  const auto ids = golden_ids("v3");
  Model f32 = Model::load(test::golden_model_dir("v3"));
  Model bf16 = Model::load(s.dir());
  EXPECT_EQ(bf16.weights().layers[0].self_attn.kv_b_proj.dtype, DType::kBF16);
  ForwardTrace ta, tb;
  const auto la = prefill_logits(f32, ids, &ta), lb = prefill_logits(bf16, ids, &tb);
  // A near-tie in routing may flip under weight rounding and change everything after it (README:
  // a bf16 engine "cannot be expected to match every routing"). Compare the rows before the first
  // position whose expert set changed in any layer.
  const int64_t T = int64_t(ids.size()), V = f32.config().vocab_size, k = f32.config().num_experts_per_tok;
  const int64_t first_flip = first_routing_change(ta, tb, T, k);
  ASSERT_GE(first_flip, 4) << "routing changed too early to compare";
  float d = 0;
  for (int64_t i = 0; i < first_flip * V; ++i) d = std::max(d, std::fabs(la[size_t(i)] - lb[size_t(i)]));
  std::printf("bf16 vs f32: %lld rows before the first routing change, max logit diff %g\n", (long long)first_flip, d);
  EXPECT_GT(d, 0.f) << "BF16 weights should not be bit-identical to F32";
  EXPECT_LE(d, 5e-2f) << "BF16 weights moved logits too far in the " << first_flip << " rows before any routing change";
}

// A bf16 latent KV cache (--kv-type bf16) rounds each cached value once (2^-9 relative), as bf16
// weights round each weight: the same README bound for a bf16 engine applies (5e-2 on the logits,
// rows before any routing change), and greedy output follows the F32 cache's by the margin rule of
// Bf16GreedyEqualsF32WhileMarginIsLarge. Decode reads the cache too: prefill logits cover the
// prompt, the greedy run covers one-token steps.
TEST(ModelLoad, Bf16KvCacheTracksF32Cache) {
  for (const char* name : {"v2lite", "v3", "v3-fp8"}) {
    const auto ids = golden_ids(name);
    Model m = Model::load(test::golden_model_dir(name));
    ForwardTrace ta, tb;
    const auto la = prefill_logits(m, ids, &ta), lb = prefill_logits(m, ids, &tb, KVDtype::kBF16);
    const int64_t T = int64_t(ids.size()), V = m.config().vocab_size, k = m.config().num_experts_per_tok;
    const int64_t first_flip = first_routing_change(ta, tb, T, k);
    ASSERT_GE(first_flip, 4) << name << ": routing changed too early to compare";
    float d = 0;
    for (int64_t i = 0; i < first_flip * V; ++i) d = std::max(d, std::fabs(la[size_t(i)] - lb[size_t(i)]));
    std::printf("%s: bf16 vs f32 KV cache: %lld rows before the first routing change, max logit diff %g\n", name,
                (long long)first_flip, d);
    EXPECT_GT(d, 0.f) << name << ": a bf16 cache should not be bit-identical to an f32 one";
    EXPECT_LE(d, 5e-2f) << name << ": the bf16 cache moved logits too far";

    std::vector<float> margins;
    const auto ga = greedy(m, ids, 16, &margins), gb = greedy(m, ids, 16, nullptr, KVDtype::kBF16);
    int compared = 0;
    for (size_t i = 0; i < ga.size() && margins[i] >= 0.1f; ++i, ++compared)
      ASSERT_EQ(ga[i], gb[i]) << name << " step " << i << " (F32 margin " << margins[i] << ")";
    EXPECT_GE(compared, 1) << name << ": the first step should have a clear margin";
  }
}

// Below index_topk keys the indexer selects everything, so V3.2 must equal dense MLA: the same
// weights read as a deepseek_v3 model (which ignores the indexer tensors).
TEST(ModelLoad, SparseAttentionEqualsDenseWhenTopkCoversContext) {
  ScratchModel sparse("v32"), dense("v32");
  sparse.edit_config([](json& c) { c["index_topk"] = 64; });  // >= T = 40
  dense.edit_config([](json& c) { c["model_type"] = "deepseek_v3"; });
  const auto ids = golden_ids("v32");
  Model ms = Model::load(sparse.dir()), md = Model::load(dense.dir());
  ForwardTrace trace;
  const auto ls = prefill_logits(ms, ids, &trace);
  ASSERT_EQ(trace.indexer_mask.size(), 3u);
  const int64_t T = int64_t(ids.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < T; ++j) ASSERT_EQ(trace.indexer_mask[1][size_t(t * T + j)], j <= t ? 1 : 0);
  EXPECT_LE(max_abs_diff(ls, prefill_logits(md, ids)), 1e-5f);
  // And with the real index_topk (8 < 40) attention is sparse: the logits differ.
  Model real = Model::load(test::golden_model_dir("v32"));
  EXPECT_GT(max_abs_diff(prefill_logits(real, ids), ls), 1e-2f);
}

TEST(ModelLoad, MtpIsBoundOnlyWhenAsked) {
  Model plain = Model::load(test::golden_model_dir("v3"));
  EXPECT_TRUE(plain.weights().mtp.empty());
  EXPECT_EQ(plain.n_cache_layers(), 3);
  Model with = Model::load(test::golden_model_dir("v3"), {.load_mtp = true});
  ASSERT_EQ(with.weights().mtp.size(), 1u);
  EXPECT_EQ(with.n_cache_layers(), 4);
  EXPECT_THROW(Model::load(test::golden_model_dir("v2"), {.load_mtp = true}), Error);  // no MTP layer
}

std::string load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelLoad, MissingTensorNamesIt) {
  ScratchModel s("v2");
  s.edit_tensors([](TensorToWrite& t, std::vector<uint8_t>&) { return t.name != "model.layers.1.mlp.experts.7.up_proj.weight"; });
  const std::string e = load_error(s.dir());
  EXPECT_NE(e.find("model.layers.1.mlp.experts.7.up_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(ModelLoad, WrongShapeForConfigNamesTensorAndShapes) {
  ScratchModel s("v2lite");
  s.edit_config([](json& c) { c["kv_lora_rank"] = 16; });  // file has 32
  const std::string e = load_error(s.dir());
  EXPECT_NE(e.find("kv_a_proj_with_mqa"), std::string::npos) << e;
  EXPECT_NE(e.find("[24, 64]"), std::string::npos) << e;  // expected (16 + 8, hidden 64)
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
}

TEST(ModelLoad, UnsupportedWeightDtypeIsAnError) {
  ScratchModel s("v2lite");
  s.edit_tensors([](TensorToWrite& t, std::vector<uint8_t>& bytes) {
    if (t.name == "model.layers.0.self_attn.o_proj.weight") {
      t.dtype = DType::kI32;  // same byte count, wrong type
    }
    return true;
  });
  const std::string e = load_error(s.dir());
  EXPECT_NE(e.find("o_proj"), std::string::npos) << e;
  EXPECT_NE(e.find("I32"), std::string::npos) << e;
}

TEST(ModelLoad, Fp8WithoutScaleIsAnError) {
  ScratchModel s("v3-fp8");
  s.edit_tensors([](TensorToWrite& t, std::vector<uint8_t>&) {
    return t.name != "model.layers.2.mlp.experts.3.down_proj.weight_scale_inv";
  });
  const std::string e = load_error(s.dir());
  EXPECT_NE(e.find("model.layers.2.mlp.experts.3.down_proj.weight_scale_inv"), std::string::npos) << e;
}

TEST(ModelLoad, Fp8ScaleWithWrongShapeIsAnError) {
  ScratchModel s("v3-fp8");
  s.edit_tensors([](TensorToWrite& t, std::vector<uint8_t>& bytes) {
    if (t.name == "model.layers.0.mlp.gate_proj.weight_scale_inv") {  // [192, 64] -> scales [2, 1]
      t.shape = {1, 2};
    }
    return true;
  });
  const std::string e = load_error(s.dir());
  EXPECT_NE(e.find("gate_proj.weight_scale_inv"), std::string::npos) << e;
  EXPECT_NE(e.find("[2, 1]"), std::string::npos) << e;
}

TEST(ModelLoad, TokenOutsideVocabularyIsAnError) {
  Model m = Model::load(test::golden_model_dir("v2lite"));
  std::vector<int32_t> ids = {1, 2, 512};
  EXPECT_THROW(prefill_logits(m, ids), Error);
}

}  // namespace
}  // namespace dseek
