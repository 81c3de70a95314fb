// AdamW against a hand-computed update, schedules at their key steps, clipping, and
// gradient-accumulation equivalence.
#include "dseek/train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "dseek/train/schedule.h"
#include "train/fake_model.h"

namespace dseek {
namespace {

// AdamW in double, written out from the paper / torch docs, for two steps on scalars.
struct RefAdamW {
  double m = 0, v = 0, p;
  double lr, b1, b2, eps, wd;
  bool decay;
  int t = 0;
  void step(double g) {
    ++t;
    if (decay) p -= lr * wd * p;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double mhat = m / (1 - std::pow(b1, t)), vhat = v / (1 - std::pow(b2, t));
    p -= lr * mhat / (std::sqrt(vhat) + eps);
  }
};

TEST(AdamW, MatchesHandComputedUpdate) {
  std::vector<float> w = {0.5f, -1.25f}, gw = {0.1f, -0.3f};
  std::vector<float> b = {2.0f}, gb = {0.7f};
  std::vector<ParamTensor> params = {{"w", {2}, w.data(), gw.data(), true}, {"b", {1}, b.data(), gb.data(), false}};
  AdamWConfig cfg;  // 0.9, 0.95, 1e-8, 0.1
  AdamW opt(params, cfg);
  const double lr = 1e-2;
  RefAdamW ref[3] = {{.p = 0.5, .lr = lr, .b1 = 0.9, .b2 = 0.95, .eps = 1e-8, .wd = 0.1, .decay = true},
                     {.p = -1.25, .lr = lr, .b1 = 0.9, .b2 = 0.95, .eps = 1e-8, .wd = 0.1, .decay = true},
                     {.p = 2.0, .lr = lr, .b1 = 0.9, .b2 = 0.95, .eps = 1e-8, .wd = 0.1, .decay = false}};
  // Step 1, then step 2 with other gradients.
  const float g2[3] = {-0.2f, 0.05f, 0.7f};
  for (int s = 0; s < 2; ++s) {
    if (s == 1) gw = {g2[0], g2[1]}, gb = {g2[2]};
    opt.step(params, lr);
    ref[0].step(gw[0]);
    ref[1].step(gw[1]);
    ref[2].step(gb[0]);
    // float32 state: a few ulps of the update (~1e-2) on values of size ~1.
    constexpr double kTol = 2e-6;
    EXPECT_NEAR(w[0], ref[0].p, kTol) << "step " << s + 1;
    EXPECT_NEAR(w[1], ref[1].p, kTol) << "step " << s + 1;
    EXPECT_NEAR(b[0], ref[2].p, kTol) << "step " << s + 1;
  }
  EXPECT_EQ(opt.steps(), 2);
  // Step 1 by hand: m = 0.1 g, v = 0.05 g^2, mhat = g, vhat = g^2: the update is lr * sign(g)
  // (plus decay), the well-known first AdamW step.
  std::vector<float> x = {1.0f}, gx = {-4.0f};
  std::vector<ParamTensor> one = {{"x", {1}, x.data(), gx.data(), true}};
  AdamW o1(one, cfg);
  o1.step(one, 0.1);
  EXPECT_NEAR(x[0], 1.0 * (1 - 0.1 * 0.1) + 0.1, 1e-6);
}

// The trainer fuses clipping into the update: step(..., grad_scale) must equal scale_grads, then step,
// bit for bit, and leave the stored gradients unscaled.
TEST(AdamW, GradScaleEqualsScalingFirst) {
  const int64_t n = 1000;
  std::vector<float> w1(n), w2(n), g1(n), g2(n);
  for (int64_t i = 0; i < n; ++i) {
    w1[size_t(i)] = w2[size_t(i)] = std::sin(0.37f * float(i));
    g1[size_t(i)] = g2[size_t(i)] = 0.01f * std::cos(1.3f * float(i)) * float(i % 17);
  }
  std::vector<ParamTensor> p1 = {{"w", {n}, w1.data(), g1.data(), true}};
  std::vector<ParamTensor> p2 = {{"w", {n}, w2.data(), g2.data(), true}};
  AdamW o1(p1, AdamWConfig{}), o2(p2, AdamWConfig{});
  for (int s = 0; s < 3; ++s) {
    const double norm = grad_global_norm(p1);
    const float scale = clip_scale(norm, 0.05);
    ASSERT_LT(scale, 1.f);
    std::vector<float> g_before = g2;
    scale_grads(p1, scale);
    o1.step(p1, 1e-2);
    o2.step(p2, 1e-2, nullptr, scale);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(w1[size_t(i)], w2[size_t(i)]) << "step " << s << " index " << i;
      ASSERT_EQ(o1.m(0)[size_t(i)], o2.m(0)[size_t(i)]);
      ASSERT_EQ(o1.v(0)[size_t(i)], o2.v(0)[size_t(i)]);
      ASSERT_EQ(g2[size_t(i)], g_before[size_t(i)]);
    }
    g1 = g_before;  // the same gradients again next step
  }
}

// The vectorized update rounds as the float32 formula written out (no FMA, same order), bit for bit, on
// the vector body and the tail (1003 values), with and without decay.
TEST(AdamW, VectorUpdateEqualsScalarFormula) {
  const int64_t n = 1003;
  for (bool decay : {true, false}) {
    std::vector<float> w(n), g(n), w_ref(n), m_ref(n, 0.f), v_ref(n, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      w[size_t(i)] = w_ref[size_t(i)] = std::sin(0.37f * float(i));
      g[size_t(i)] = 0.01f * std::cos(1.3f * float(i)) * float(i % 17);
    }
    std::vector<ParamTensor> p = {{"w", {n}, w.data(), g.data(), decay}};
    AdamWConfig cfg;
    AdamW opt(p, cfg);
    const double lr = 3e-3;
    const float gs = 0.8125f;
    for (int t = 1; t <= 3; ++t) {
      opt.step(p, lr, nullptr, gs);
      const float b1 = float(cfg.beta1), b2 = float(cfg.beta2), eps = float(cfg.eps);
      const float step_size = float(lr / (1.0 - std::pow(cfg.beta1, double(t))));
      const float bc2_sqrt = float(std::sqrt(1.0 - std::pow(cfg.beta2, double(t))));
      const float wd = decay ? float(1.0 - lr * cfg.weight_decay) : 1.f;
      for (int64_t i = 0; i < n; ++i) {
        const size_t j = size_t(i);
        const float gj = g[j] * gs;
        const float wj = w_ref[j] * wd;
        m_ref[j] = b1 * m_ref[j] + (1.0f - b1) * gj;
        v_ref[j] = b2 * v_ref[j] + (1.0f - b2) * gj * gj;
        w_ref[j] = wj - step_size * (m_ref[j] / (std::sqrt(v_ref[j]) / bc2_sqrt + eps));
        ASSERT_EQ(w[j], w_ref[j]) << "step " << t << " index " << i << " decay " << decay;
        ASSERT_EQ(opt.m(0)[j], m_ref[j]);
        ASSERT_EQ(opt.v(0)[j], v_ref[j]);
      }
    }
  }
}

TEST(AdamW, NoDecayWhereNotFlagged) {
  std::vector<float> w = {3.0f}, g = {0.0f};
  std::vector<ParamTensor> p = {{"norm", {1}, w.data(), g.data(), false}};
  AdamW opt(p, AdamWConfig{});
  opt.step(p, 0.5);
  EXPECT_EQ(w[0], 3.0f);  // zero gradient, no decay: unchanged
  p[0].decay = true;
  opt.step(p, 0.5);
  EXPECT_FLOAT_EQ(w[0], 3.0f * (1 - 0.5f * 0.1f));
}

TEST(Schedule, CosineKeySteps) {
  ScheduleConfig s;
  s.type = ScheduleType::kCosine;
  s.warmup_steps = 10;
  s.min_lr_ratio = 0.1;
  const double lr = 1e-3;
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 0, 100), lr * 1 / 10);  // never 0 at the first step
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 4, 100), lr * 5 / 10);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 10, 100), lr);          // end of warm-up: the peak
  EXPECT_NEAR(lr_at(s, lr, 99, 100), lr * 0.1, 1e-15);  // last step: the floor
  // Halfway through the decay: the mean of peak and floor.
  ScheduleConfig h = s;
  h.warmup_steps = 0;
  EXPECT_NEAR(lr_at(h, lr, 50, 101), lr * 0.55, 1e-12);
  for (int64_t i = 11; i < 100; ++i) EXPECT_LE(lr_at(s, lr, i, 100), lr_at(s, lr, i - 1, 100)) << i;
}

TEST(Schedule, MultistepKeySteps) {
  ScheduleConfig s;
  s.type = ScheduleType::kMultistep;
  s.warmup_steps = 100;
  const double lr = 4.2e-4;
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 49, 1000), lr * 0.5);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 100, 1000), lr);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 799, 1000), lr);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 800, 1000), lr * 0.316);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 899, 1000), lr * 0.316);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 900, 1000), lr * 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 999, 1000), lr * 0.1);
  s.type = ScheduleType::kConstant;
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 999, 1000), lr);
}

TEST(Clip, ScalesToMaxNormAndReportsNorm) {
  std::vector<float> a = {3.0f}, ga = {3.0f}, b = {0.0f}, gb = {4.0f};
  std::vector<ParamTensor> p = {{"a", {1}, a.data(), ga.data(), true}, {"b", {1}, b.data(), gb.data(), true}};
  EXPECT_DOUBLE_EQ(clip_grad_norm(p, 10.0), 5.0);  // below the threshold: untouched
  EXPECT_EQ(ga[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(p, 1.0), 5.0);
  EXPECT_NEAR(ga[0], 0.6, 1e-6);
  EXPECT_NEAR(gb[0], 0.8, 1e-6);
  EXPECT_NEAR(grad_global_norm(p), 1.0, 1e-6);
  gb[0] = 400.0f;
  EXPECT_NEAR(clip_grad_norm(p, 0.0), 400.0, 1e-3);  // 0 disables clipping
  EXPECT_EQ(gb[0], 400.0f);
}

TEST(Clip, NormIndependentOfThreadCount) {
  std::vector<float> w(300000), g(300000);
  for (size_t i = 0; i < g.size(); ++i) g[i] = float(std::sin(double(i))) * 1e-3f;
  std::vector<ParamTensor> p = {{"w", {int64_t(w.size())}, w.data(), g.data(), true}};
  ThreadPool one(1), two(2), three(3);
  const double n1 = grad_global_norm(p, &one), n2 = grad_global_norm(p, &two), n3 = grad_global_norm(p, &three);
  EXPECT_EQ(n1, n2);
  EXPECT_EQ(n1, n3);
}

// accum 2 x batch b (grads summed, then halved) == one batch of 2b, for a model whose loss is a mean.
TEST(GradAccum, TwoMicroBatchesEqualOneDoubleBatch) {
  const ModelConfig cfg = test::fake_config(16);
  test::FakeModel m(cfg);
  m.init_weights(3, 0.5f);
  const int64_t b = 3, T = 5;
  std::vector<int32_t> tokens(size_t(2 * b * (T + 1)));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + 3) % 16);
  m.zero_grad();
  m.forward_backward(tokens.data(), b, T);
  m.forward_backward(tokens.data() + b * (T + 1), b, T);
  scale_grads(m.params(), 0.5f);
  const std::vector<float> gw_accum = m.gw_, gb_accum = m.gb_;
  m.zero_grad();
  m.forward_backward(tokens.data(), 2 * b, T);
  for (size_t i = 0; i < gw_accum.size(); ++i) EXPECT_NEAR(gw_accum[i], m.gw_[i], 1e-6) << "w[" << i << "]";
  EXPECT_NEAR(gb_accum[0], m.gb_[0], 1e-6);
}

}  // namespace
}  // namespace dseek
