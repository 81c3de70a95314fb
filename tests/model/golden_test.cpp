// Conformance against DeepSeek's reference inference code: ../shared/golden/model (see its README).
// Float32 engine vs float32 reference; tolerances from the README ("Observed agreement"): float32
// noise between the reference's own paths is <= 8e-6, plausible bugs move logits by >= 0.2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "dseek/io/safetensors.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {
namespace {

constexpr float kLogitTol = 1e-4f;   // README: logits max abs diff <= 1e-4 (logit std ~1)
constexpr float kHiddenTol = 1e-4f;  // README: hidden_after_layer max abs diff <= 1e-4 (RMS 1.3-2.2)

struct Golden {
  SafetensorsFile file;
  bool has(const std::string& name) const { return file.find(name) != nullptr; }
  const TensorInfo& info(const std::string& name) const {
    const TensorInfo* t = file.find(name);
    if (!t) throw Error("golden tensor missing: " + name);
    return *t;
  }
  const float* f32(const std::string& name) const { return reinterpret_cast<const float*>(file.data(info(name))); }
  const int32_t* i32(const std::string& name) const { return reinterpret_cast<const int32_t*>(file.data(info(name))); }
};

// Max |a - b| over n values; prints the worst index on failure through the caller's message.
struct Diff {
  float max_abs = 0;
  int64_t at = -1;
};
Diff max_diff(const float* a, const float* b, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    float e = std::fabs(a[i] - b[i]);
    if (!(e <= d.max_abs)) {  // also catches NaN
      d.max_abs = std::isnan(e) ? INFINITY : e;
      d.at = i;
    }
  }
  return d;
}

#define EXPECT_CLOSE(a, b, n, tol, what)                                                            \
  do {                                                                                               \
    Diff d_ = max_diff((a), (b), (n));                                                               \
    EXPECT_LE(d_.max_abs, (tol)) << (what) << ": max abs diff " << d_.max_abs << " at index " << d_.at; \
  } while (0)

// Routing must match exactly as sets (README: compare as sets); the weights are compared by id.
void expect_same_routing(const int32_t* gold_ids, const float* gold_w, const int32_t* ids, const float* w, int64_t T,
                         int64_t k, const std::string& what) {
  int64_t mismatched = 0;
  for (int64_t t = 0; t < T; ++t) {
    std::set<int32_t> a(gold_ids + t * k, gold_ids + (t + 1) * k), b(ids + t * k, ids + (t + 1) * k);
    if (a != b) {
      ++mismatched;
      continue;
    }
    if (!gold_w) continue;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t j = std::find(ids + t * k, ids + (t + 1) * k, gold_ids[t * k + i]) - (ids + t * k);
      EXPECT_NEAR(w[t * k + j], gold_w[t * k + i], 1e-5) << what << " token " << t << " expert " << gold_ids[t * k + i];
    }
  }
  EXPECT_EQ(mismatched, 0) << what << ": tokens routed to a different expert set";
}

struct Case {
  std::string name;
  AttnImpl impl;
};

class GoldenModel : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenModel, PrefillDecodeAndMtpMatchReference) {
  const Case& cs = GetParam();
  const std::string dir = test::golden_model_dir(cs.name);
  ASSERT_TRUE(std::filesystem::exists(dir + "/golden.safetensors")) << "golden data not found at " << dir;
  Golden g{SafetensorsFile::open(dir + "/golden.safetensors")};
  const bool mtp = g.has("mtp_logits");
  Model model = Model::load(dir, {.load_mtp = mtp});
  const ModelConfig& c = model.config();
  const int64_t T = g.info("input_ids").shape[0], V = c.vocab_size, D = c.hidden_size, L = c.num_hidden_layers;
  const int64_t k = c.num_experts_per_tok, T0 = g.i32("prefill_len")[0];
  const int32_t* ids = g.i32("input_ids");
  Workspace ws(c, T, T);

  // Full-sequence forward with every intermediate checked, layer by layer first.
  std::vector<float> logits(static_cast<size_t>(T * V)), final_hidden(static_cast<size_t>(T * D));
  ForwardTrace trace;
  {
    KVCache cache(c, model.n_cache_layers(), T);
    model.forward(ids, T, 0, cache.view(), cs.impl, ws, logits.data(), 0, final_hidden.data(), &trace);
  }
  EXPECT_CLOSE(trace.embed_out.data(), g.f32("embed_out"), T * D, 0.f, "embed_out");
  for (int64_t l = 0; l < L; ++l) {
    const std::string r = "router_topk_ids." + std::to_string(l);
    if (g.has(r)) {
      ASSERT_FALSE(trace.topk_ids[size_t(l)].empty()) << "layer " << l << " should be MoE";
      expect_same_routing(g.i32(r), g.f32("router_topk_weights." + std::to_string(l)), trace.topk_ids[size_t(l)].data(),
                          trace.topk_weights[size_t(l)].data(), T, k, "prefill routing, layer " + std::to_string(l));
    }
    EXPECT_CLOSE(trace.hidden_after_layer[size_t(l)].data(), g.f32("hidden_after_layer") + l * T * D, T * D, kHiddenTol,
                 "hidden_after_layer " + std::to_string(l));
  }
  EXPECT_CLOSE(trace.final_norm_out.data(), g.f32("final_norm_out"), T * D, kHiddenTol, "final_norm_out");
  EXPECT_CLOSE(logits.data(), g.f32("logits_prefill"), T * V, kLogitTol, "logits_prefill");

  // Prefill of T0 tokens, then tokens T0..T-1 one at a time through the latent cache.
  {
    KVCache cache(c, model.n_cache_layers(), T);
    std::vector<float> last(static_cast<size_t>(V)), step(static_cast<size_t>(V));
    model.forward(ids, T0, 0, cache.view(), cs.impl, ws, last.data(), T0 - 1);
    EXPECT_CLOSE(last.data(), g.f32("logits_prefix_last"), V, kLogitTol, "logits_prefix_last");
    for (int64_t p = T0; p < T; ++p) {
      ForwardTrace st;
      model.forward(ids + p, 1, p, cache.view(), cs.impl, ws, step.data(), 0, nullptr, &st);
      EXPECT_CLOSE(step.data(), g.f32("logits_decode") + (p - T0) * V, V, kLogitTol, "logits_decode row " + std::to_string(p - T0));
      for (int64_t l = 0; l < L; ++l) {
        const std::string r = "router_topk_ids_decode." + std::to_string(l);
        if (g.has(r))
          expect_same_routing(g.i32(r) + (p - T0) * k, nullptr, st.topk_ids[size_t(l)].data(), nullptr, 1, k,
                              "decode routing, layer " + std::to_string(l) + " step " + std::to_string(p - T0));
      }
    }
  }

  if (mtp) {
    KVCache cache(c, model.n_cache_layers(), T);
    std::vector<float> mtp_logits(static_cast<size_t>((T - 1) * V));
    ForwardTrace mt;
    model.mtp_forward(g.f32("final_norm_out"), ids + 1, T - 1, 0, cache.view(), cs.impl, ws, mtp_logits.data(), &mt);
    expect_same_routing(g.i32("mtp_router_topk_ids"), nullptr, mt.topk_ids[0].data(), nullptr, T - 1, k, "MTP routing");
    EXPECT_CLOSE(mt.hidden_after_layer[0].data(), g.f32("mtp_block_out"), (T - 1) * D, kHiddenTol, "mtp_block_out");
    EXPECT_CLOSE(mtp_logits.data(), g.f32("mtp_logits"), (T - 1) * V, kLogitTol, "mtp_logits");
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (const char* name : {"v2lite", "v2", "v3", "v3-fp8"})
    for (AttnImpl impl : {AttnImpl::kNaive, AttnImpl::kAbsorb}) out.push_back({name, impl});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Reference, GoldenModel, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.name + (info.param.impl == AttnImpl::kNaive ? "_naive" : "_absorb");
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

}  // namespace
}  // namespace dseek
