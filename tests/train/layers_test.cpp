// Finite-difference checks of the layer pairs (MLP, MLA with and without q-LoRA, MoE with each
// routing method and the balance loss, decoder block). Method and tolerance: tests/train/grad_check.h
// (float32 forward, double loss, central differences). The layer outputs are many O(1) floats, so the
// projected loss carries ~1e-6 of rounding noise: eps = 1e-2 keeps its share of the difference
// quotient near 1e-4 (O(eps²) truncation ~1e-4 relative), and
// |num - ana| <= 1e-2 max(|num|, |ana|) + max(1e-4, 2e-3 max_i |grad_i|).
#include "dseek/train/layers.h"

#include <gtest/gtest.h>

#include <cstring>

#include "dseek/kernels/rope.h"
#include "dseek/train/ops.h"
#include "grad_check.h"

namespace dseek {
namespace {

using test::check_gradient;
using test::project;
using test::randn;

const test::GradCheck kLayerCheck{1e-2, 1e-2, 1e-4, 2e-3};

// A named weight with its gradient buffer.
struct Buf {
  std::vector<float> w, g;
  Buf(int64_t n, uint64_t seed, float std, float mean = 0.f) : w(randn(n, seed, std)), g(static_cast<size_t>(n), 0.f) {
    for (auto& v : w) v += mean;
  }
};

struct ArenaBuf {
  std::vector<float> f;
  std::vector<int32_t> i;
  FloatArena fa;
  IntArena ia;
  ArenaBuf(int64_t nf, int64_t ni) : f(static_cast<size_t>(nf)), i(static_cast<size_t>(ni)) {
    fa = FloatArena{f.data(), nf};
    ia = IntArena{i.data(), ni};
  }
};

TEST(TrainLayers, MlpGradient) {
  const int64_t N = 3, D = 6, I = 5;
  Buf gate(I * D, 1, 0.5f), up(I * D, 2, 0.5f), down(D * I, 3, 0.5f);
  MlpTensors w{gate.w.data(), up.w.data(), down.w.data(), I}, dw{gate.g.data(), up.g.data(), down.g.data(), I};
  auto x = randn(N * D, 4), r = randn(N * D, 5);
  std::vector<float> out(static_cast<size_t>(N * D)), dx(static_cast<size_t>(N * D), 0.f);
  ArenaBuf acts(3 * N * I, 0), scratch(2 * N * I, 0);
  MlpActs a;
  plan_mlp_acts(a, acts.fa, N, I);
  auto loss = [&] {
    mlp_forward(out.data(), a, x.data(), w, N, D, nullptr);
    return project(out.data(), r);
  };
  loss();
  mlp_backward(dx.data(), dw, r.data(), x.data(), a, w, N, D, scratch.fa, nullptr);
  check_gradient("dx", x.data(), dx.data(), N * D, loss, kLayerCheck);
  check_gradient("gate_proj", gate.w.data(), gate.g.data(), I * D, loss, kLayerCheck);
  check_gradient("up_proj", up.w.data(), up.g.data(), I * D, loss, kLayerCheck);
  check_gradient("down_proj", down.w.data(), down.g.data(), D * I, loss, kLayerCheck);
}

// B × T tokens; T > 64 spans several of mla_forward's causal row blocks (the last one partial), and
// then `samples` entries per tensor are checked instead of all.
void check_mla(int64_t q_lora_rank, int64_t B = 2, int64_t T = 4, int64_t samples = 0) {
  SCOPED_TRACE(q_lora_rank);
  SCOPED_TRACE(T);
  MlaDims d;
  d.D = 8;
  d.H = 2;
  d.q_lora_rank = q_lora_rank;
  d.kv_lora_rank = 6;
  d.nope = 4;
  d.rope = 4;
  d.vd = 3;
  d.softmax_scale = 0.4f;
  const int64_t N = B * T, H = d.H, qkd = d.qk_head_dim(), R = d.kv_lora_rank;
  // YaRN table with a non-unit attention factor.
  RopeParams rp;
  rp.dim = d.rope;
  rp.yarn = true;
  rp.factor = 40;
  std::vector<float> inv_freq(2), cs(static_cast<size_t>(T * 2)), sn(static_cast<size_t>(T * 2));
  rope_inv_freq(inv_freq.data(), rp);
  rope_table(cs.data(), sn.data(), T, inv_freq.data(), 2, 1.2f);
  d.cos = cs.data();
  d.sin = sn.data();
  const int64_t Q = std::max<int64_t>(q_lora_rank, 1);
  Buf q_proj(H * qkd * d.D, 1, 0.4f), q_a(Q * d.D, 2, 0.4f), q_aln(Q, 3, 0.1f, 1.f), q_b(H * qkd * Q, 4, 0.4f);
  Buf kv_a(( R + d.rope) * d.D, 5, 0.4f), kv_aln(R, 6, 0.1f, 1.f), kv_b(H * (d.nope + d.vd) * R, 7, 0.4f);
  Buf o(d.D * H * d.vd, 8, 0.4f);
  MlaTensors w, dw;
  if (q_lora_rank > 0) {
    w.q_a_proj = q_a.w.data(), w.q_a_layernorm = q_aln.w.data(), w.q_b_proj = q_b.w.data();
    dw.q_a_proj = q_a.g.data(), dw.q_a_layernorm = q_aln.g.data(), dw.q_b_proj = q_b.g.data();
  } else {
    w.q_proj = q_proj.w.data();
    dw.q_proj = q_proj.g.data();
  }
  w.kv_a_proj_with_mqa = kv_a.w.data(), w.kv_a_layernorm = kv_aln.w.data(), w.kv_b_proj = kv_b.w.data();
  w.o_proj = o.w.data();
  dw.kv_a_proj_with_mqa = kv_a.g.data(), dw.kv_a_layernorm = kv_aln.g.data(), dw.kv_b_proj = kv_b.g.data();
  dw.o_proj = o.g.data();
  auto x = randn(N * d.D, 9), r = randn(N * d.D, 10);
  std::vector<float> out(static_cast<size_t>(N * d.D)), dx(static_cast<size_t>(N * d.D), 0.f);
  FloatArena count;
  MlaActs a;
  plan_mla_acts(a, count, d, B, T);
  ArenaBuf acts(count.used, 0), scratch(1 << 14, 0);
  plan_mla_acts(a, acts.fa, d, B, T);
  ThreadPool pool(2);
  auto loss = [&] {
    mla_forward(out.data(), a, x.data(), w, d, B, T, &pool);
    return project(out.data(), r);
  };
  loss();
  mla_backward(dx.data(), dw, r.data(), x.data(), a, w, d, B, T, scratch.fa, &pool);
  check_gradient("dx", x.data(), dx.data(), N * d.D, loss, kLayerCheck, samples);
  if (q_lora_rank > 0) {
    check_gradient("q_a_proj", q_a.w.data(), q_a.g.data(), Q * d.D, loss, kLayerCheck, samples);
    check_gradient("q_a_layernorm", q_aln.w.data(), q_aln.g.data(), Q, loss, kLayerCheck, samples);
    check_gradient("q_b_proj", q_b.w.data(), q_b.g.data(), H * qkd * Q, loss, kLayerCheck, samples);
  } else {
    check_gradient("q_proj", q_proj.w.data(), q_proj.g.data(), H * qkd * d.D, loss, kLayerCheck, samples);
  }
  check_gradient("kv_a_proj_with_mqa", kv_a.w.data(), kv_a.g.data(), (R + d.rope) * d.D, loss, kLayerCheck, samples);
  check_gradient("kv_a_layernorm", kv_aln.w.data(), kv_aln.g.data(), R, loss, kLayerCheck, samples);
  check_gradient("kv_b_proj", kv_b.w.data(), kv_b.g.data(), H * (d.nope + d.vd) * R, loss, kLayerCheck, samples);
  check_gradient("o_proj", o.w.data(), o.g.data(), d.D * H * d.vd, loss, kLayerCheck, samples);
}

TEST(TrainLayers, MlaGradientWithQLora) { check_mla(5); }
TEST(TrainLayers, MlaGradientWithoutQLora) { check_mla(0); }
TEST(TrainLayers, MlaGradientLongSequenceCausalBlocks) { check_mla(5, 1, 150, 24); }

// MoE with E = 4 experts top-2 (+ shared). Routing is piecewise constant in the router logits; the
// router weights are drawn so that no eps = 1e-3 step changes a selection for these seeds.
void check_moe(TopKMethod method, ScoringFunc scoring, bool norm, int64_t n_group, int64_t topk_group, float alpha,
               bool shared) {
  SCOPED_TRACE(int(method) * 100 + int(scoring) * 10 + int(norm));
  const int64_t B = 2, T = 3, N = B * T, D = 6, E = 4, k = 2, I = 4, Is = shared ? 5 : 0;
  Buf gate(E * D, 1, 0.6f);
  std::vector<Buf> ex;
  for (int64_t e = 0; e < E; ++e)
    for (int j = 0; j < 3; ++j) ex.emplace_back(I * D, 10 + uint64_t(e) * 3 + j, 0.5f);
  Buf sg(Is * D, 30, 0.5f), su(Is * D, 31, 0.5f), sd(D * Is, 32, 0.5f);
  MoeTensors w, dw;
  w.gate = gate.w.data();
  dw.gate = gate.g.data();
  for (int64_t e = 0; e < E; ++e) {
    Buf* b = &ex[size_t(e * 3)];
    w.experts.push_back({b[0].w.data(), b[1].w.data(), b[2].w.data(), I});
    dw.experts.push_back({b[0].g.data(), b[1].g.data(), b[2].g.data(), I});
  }
  if (shared) {
    w.shared_experts = {sg.w.data(), su.w.data(), sd.w.data(), Is};
    dw.shared_experts = {sg.g.data(), su.g.data(), sd.g.data(), Is};
  }
  std::vector<float> bias = {0.02f, -0.03f, 0.05f, 0.0f};
  MoeDims d;
  d.D = D;
  d.router.n_routed_experts = E;
  d.router.num_experts_per_tok = k;
  d.router.n_group = n_group;
  d.router.topk_group = topk_group;
  d.router.topk_method = method;
  d.router.scoring_func = scoring;
  d.router.norm_topk_prob = norm;
  d.router.routed_scaling_factor = 2.5f;
  d.router.e_score_correction_bias = method == TopKMethod::kNoauxTc ? bias.data() : nullptr;
  d.balance_alpha = alpha;
  FloatArena fc;
  IntArena ic;
  MoeActs a;
  plan_moe_acts(a, fc, ic, d, N, I, Is);
  ArenaBuf acts(fc.used, ic.used), scratch(1 << 14, 0);
  plan_moe_acts(a, acts.fa, acts.ia, d, N, I, Is);
  auto x = randn(N * D, 40), r = randn(N * D, 41);
  std::vector<float> out(static_cast<size_t>(N * D)), dx(static_cast<size_t>(N * D), 0.f);
  std::vector<int64_t> load(static_cast<size_t>(E), 0);
  ThreadPool pool(2);
  auto loss = [&] {
    const double bal = moe_forward(out.data(), a, x.data(), w, d, B, T, load.data(), scratch.fa, &pool);
    return project(out.data(), r) + bal;
  };
  loss();
  int64_t total = 0;
  for (int64_t v : load) total += v;
  EXPECT_EQ(total, N * k);
  moe_backward(dx.data(), dw, r.data(), x.data(), a, w, d, B, T, 1.f, scratch.fa, &pool);
  check_gradient("dx", x.data(), dx.data(), N * D, loss, kLayerCheck);
  check_gradient("gate", gate.w.data(), gate.g.data(), E * D, loss, kLayerCheck);
  for (size_t i = 0; i < ex.size(); ++i) check_gradient("expert " + std::to_string(i), ex[i].w.data(), ex[i].g.data(), I * D, loss, kLayerCheck);
  if (shared) {
    check_gradient("shared gate", sg.w.data(), sg.g.data(), Is * D, loss, kLayerCheck);
    check_gradient("shared down", sd.w.data(), sd.g.data(), D * Is, loss, kLayerCheck);
  }
}

TEST(TrainLayers, MoeGradientNoauxTcSigmoid) {
  check_moe(TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, true, 2, 1, 0.f, true);
}
TEST(TrainLayers, MoeGradientNoauxTcWithBalanceLoss) {
  check_moe(TopKMethod::kNoauxTc, ScoringFunc::kSigmoid, true, 1, 1, 0.5f, true);
}
TEST(TrainLayers, MoeGradientGreedySoftmax) {
  check_moe(TopKMethod::kGreedy, ScoringFunc::kSoftmax, false, 1, 1, 0.f, false);
}
TEST(TrainLayers, MoeGradientGroupLimitedSoftmaxNormalised) {
  check_moe(TopKMethod::kGroupLimitedGreedy, ScoringFunc::kSoftmax, true, 2, 1, 0.3f, true);
}

}  // namespace
}  // namespace dseek
