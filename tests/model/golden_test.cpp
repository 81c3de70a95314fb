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
  bool indexer_fp8 = true;  // V3.2: false compares against the README's `noquant.*` golden
};

// V3.2 index scores, relative to the row max. README: <= 1e-3 with FP8 emulation, since float noise
// can flip one E4M3 rounding. Returns the number of rows beyond rel_tol and the worst relative diff.
struct ScoreDiff {
  int64_t rows_over = 0;
  double worst = 0;
};
ScoreDiff index_score_diff(const float* gold, const float* got, int64_t T, int64_t n_keys, double rel_tol,
                           const std::string& what) {
  ScoreDiff d;
  for (int64_t t = 0; t < T; ++t) {
    float row_max = 0.f;
    for (int64_t j = 0; j < n_keys; ++j)
      if (std::isfinite(gold[t * n_keys + j])) row_max = std::max(row_max, std::fabs(gold[t * n_keys + j]));
    double row_worst = 0;
    for (int64_t j = 0; j < n_keys; ++j) {
      const float a = gold[t * n_keys + j], b = got[t * n_keys + j];
      if (!std::isfinite(a)) {
        EXPECT_EQ(a, b) << what << " row " << t << " key " << j << " must be masked";
        continue;
      }
      row_worst = std::max(row_worst, double(std::fabs(a - b)) / row_max);
    }
    d.rows_over += row_worst > rel_tol;
    d.worst = std::max(d.worst, row_worst);
  }
  return d;
}

class GoldenModel : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenModel, PrefillDecodeAndMtpMatchReference) {
  const Case& cs = GetParam();
  const std::string dir = test::golden_model_dir(cs.name);
  ASSERT_TRUE(std::filesystem::exists(dir + "/golden.safetensors")) << "golden data not found at " << dir;
  Golden g{SafetensorsFile::open(dir + "/golden.safetensors")};
  const bool mtp = g.has("mtp_logits");
  Model model = Model::load(dir, {.load_mtp = mtp, .indexer_fp8 = cs.indexer_fp8});
  // The alternative golden of the V3.2 case (indexer without FP8) prefixes its tensors "noquant.".
  const std::string alt = cs.indexer_fp8 ? "" : "noquant.";
  auto gname = [&](const std::string& n) { return g.has(alt + n) ? alt + n : n; };
  const ModelConfig& c = model.config();
  const int64_t T = g.info("input_ids").shape[0], V = c.vocab_size, D = c.hidden_size, L = c.num_hidden_layers;
  const int64_t k = c.num_experts_per_tok, T0 = g.i32("prefill_len")[0];
  const int32_t* ids = g.i32("input_ids");
  // The absorbed path runs its heads and (query, head) rows across a pool: 3 threads so chunks
  // are uneven; the naive reference path stays on one thread.
  ThreadPool pool(3);
  Workspace ws(c, T, T, cs.impl == AttnImpl::kAbsorb ? &pool : nullptr);
  ws.kernel = matmul_float32_kernel();  // float32 products: the reference's arithmetic

  // Full-sequence forward with every intermediate checked, layer by layer first.
  std::vector<float> logits(static_cast<size_t>(T * V)), final_hidden(static_cast<size_t>(T * D));
  ForwardTrace trace;
  {
    KVCache cache(c, model.n_cache_layers(), T);
    model.forward(ids, T, 0, cache.view(), cs.impl, ws, logits.data(), 0, final_hidden.data(), &trace);
  }
  EXPECT_CLOSE(trace.embed_out.data(), g.f32("embed_out"), T * D, 0.f, "embed_out");
  if (c.has_indexer()) {
    ASSERT_EQ(int64_t(trace.indexer_mask.size()), L);
    for (int64_t l = 0; l < L; ++l) {
      const std::string ls = std::to_string(l);
      const float* gold_mask = g.f32(gname("indexer_topk_mask." + ls));
      int64_t diffs = 0;
      for (int64_t i = 0; i < T * T; ++i) diffs += (gold_mask[i] != 0.f) != (trace.indexer_mask[size_t(l)][size_t(i)] != 0);
      EXPECT_EQ(diffs, 0) << "indexer selection differs in layer " << l;
      if (cs.indexer_fp8) {  // the golden stores scores of the FP8 indexer only
        ScoreDiff sd = index_score_diff(g.f32("indexer_scores." + ls), trace.indexer_scores[size_t(l)].data(), T, T,
                                        1e-3, "indexer_scores." + ls);
        if (cs.impl == AttnImpl::kNaive) {
          // The reference's prefill is this (MHA) path: every row within the README's bound.
          EXPECT_EQ(sd.rows_over, 0) << "indexer_scores." << ls << " worst relative diff " << sd.worst;
        } else {
          // Absorbed prefill differs from the reference's MHA prefill by float noise (hidden states
          // 4.5e-6 apart at layer 2), and the indexer's E4M3 rounding of q can amplify that into one
          // flipped query element. Measured on v32: exactly one row (layer 2, query 21) moves, by
          // 2.5e-3 relative; keys and every other row agree to 1e-6. Allow one such row per layer,
          // bounded, while the selections above must still match exactly.
          EXPECT_LE(sd.rows_over, 1) << "indexer_scores." << ls;
          EXPECT_LE(sd.worst, 1e-2) << "indexer_scores." << ls;
        }
      }
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    const std::string r = "router_topk_ids." + std::to_string(l);
    if (g.has(r) && cs.indexer_fp8) {  // routing is stored for the primary golden only
      ASSERT_FALSE(trace.topk_ids[size_t(l)].empty()) << "layer " << l << " should be MoE";
      expect_same_routing(g.i32(r), g.f32("router_topk_weights." + std::to_string(l)), trace.topk_ids[size_t(l)].data(),
                          trace.topk_weights[size_t(l)].data(), T, k, "prefill routing, layer " + std::to_string(l));
    }
    if (cs.indexer_fp8)
      EXPECT_CLOSE(trace.hidden_after_layer[size_t(l)].data(), g.f32("hidden_after_layer") + l * T * D, T * D, kHiddenTol,
                   "hidden_after_layer " + std::to_string(l));
  }
  if (cs.indexer_fp8) {  // the noquant golden stores logits only
    EXPECT_CLOSE(trace.final_norm_out.data(), g.f32("final_norm_out"), T * D, kHiddenTol, "final_norm_out");
  }
  EXPECT_CLOSE(logits.data(), g.f32(gname("logits_prefill")), T * V, kLogitTol, "logits_prefill");

  // Prefill of T0 tokens, then tokens T0..T-1 one at a time through the latent cache.
  {
    KVCache cache(c, model.n_cache_layers(), T);
    std::vector<float> last(static_cast<size_t>(V)), step(static_cast<size_t>(V));
    model.forward(ids, T0, 0, cache.view(), cs.impl, ws, last.data(), T0 - 1);
    if (cs.indexer_fp8) EXPECT_CLOSE(last.data(), g.f32("logits_prefix_last"), V, kLogitTol, "logits_prefix_last");
    for (int64_t p = T0; p < T; ++p) {
      ForwardTrace st;
      model.forward(ids + p, 1, p, cache.view(), cs.impl, ws, step.data(), 0, nullptr, &st);
      EXPECT_CLOSE(step.data(), g.f32(gname("logits_decode")) + (p - T0) * V, V, kLogitTol,
                   "logits_decode row " + std::to_string(p - T0));
      for (int64_t l = 0; l < L && c.has_indexer() && cs.indexer_fp8; ++l) {
        const float* gm = g.f32("indexer_topk_mask_decode." + std::to_string(l)) + (p - T0) * T;
        int64_t diffs = 0;
        for (int64_t j = 0; j <= p; ++j) diffs += (gm[j] != 0.f) != (st.indexer_mask[size_t(l)][size_t(j)] != 0);
        EXPECT_EQ(diffs, 0) << "decode indexer selection, layer " << l << " step " << p - T0;
      }
      for (int64_t l = 0; l < L; ++l) {
        const std::string r = "router_topk_ids_decode." + std::to_string(l);
        if (g.has(r) && cs.indexer_fp8)
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
  for (const char* name : {"v2lite", "v2", "v3", "v3-fp8", "v32"})
    for (AttnImpl impl : {AttnImpl::kNaive, AttnImpl::kAbsorb}) out.push_back({name, impl});
  for (AttnImpl impl : {AttnImpl::kNaive, AttnImpl::kAbsorb}) out.push_back({"v32", impl, false});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Reference, GoldenModel, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.name + (info.param.impl == AttnImpl::kNaive ? "_naive" : "_absorb") +
                  (info.param.indexer_fp8 ? "" : "_noquant");
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

}  // namespace
}  // namespace dseek
