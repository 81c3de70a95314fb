// Finite-difference checks of the primitive training ops (tests/train/grad_check.h states the
// method and the tolerance), and the GEMMs against double-accumulated references.
#include "dseek/train/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "dseek/core/error.h"
#include "dseek/train/ops_gemm.h"
#include "grad_check.h"

namespace dseek {
namespace {

using test::check_gradient;
using test::project;
using test::randn;

TEST(TrainGemm, MatchesReference) {
  ThreadPool pool(2);
  // Sizes around the 4 x 32 register tile, including edges and empty dimensions.
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {4, 7, 32}, {5, 33, 31}, {9, 64, 65},
                         {37, 130, 70}, {0, 3, 5}, {3, 0, 5}}) {
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      auto A = randn(M * K, 1), At = randn(K * M, 2), Bm = randn(K * N, 3);
      auto C0 = randn(M * N, 4);
      auto c1 = C0, c2 = C0, c3 = C0, c4 = C0;
      gemm_nn_acc(c1.data(), A.data(), Bm.data(), M, K, N, p);
      gemm_nn_acc_ref(c2.data(), A.data(), Bm.data(), M, K, N);
      gemm_tn_acc(c3.data(), At.data(), Bm.data(), M, K, N, p);
      gemm_tn_acc_ref(c4.data(), At.data(), Bm.data(), M, K, N);
      for (int64_t i = 0; i < M * N; ++i) {
        // float32 FMA accumulation over K terms of size ~1: error ~ sqrt(K) * 6e-8 * K
        ASSERT_NEAR(c1[size_t(i)], c2[size_t(i)], 1e-4 * (1 + K)) << M << "x" << K << "x" << N << " at " << i;
        ASSERT_NEAR(c3[size_t(i)], c4[size_t(i)], 1e-4 * (1 + K)) << M << "x" << K << "x" << N << " at " << i;
      }
    }
  }
}

TEST(TrainOps, LinearGradient) {
  const int64_t N = 3, in = 5, out = 4;
  auto x = randn(N * in, 1), W = randn(out * in, 2), r = randn(N * out, 3);
  std::vector<float> y(static_cast<size_t>(N * out)), dx(static_cast<size_t>(N * in), 0.f), dW(static_cast<size_t>(out * in), 0.f);
  auto loss = [&] {
    linear_forward(y.data(), x.data(), W.data(), N, in, out, nullptr);
    return project(y.data(), r);
  };
  loss();
  linear_backward(dx.data(), dW.data(), r.data(), x.data(), W.data(), N, in, out, nullptr);
  check_gradient("dx", x.data(), dx.data(), N * in, loss);
  check_gradient("dW", W.data(), dW.data(), out * in, loss);
}

TEST(TrainOps, RmsnormGradient) {
  const int64_t N = 3, C = 8;
  auto x = randn(N * C, 1), w = randn(C, 2, 0.5f), r = randn(N * C, 3);
  for (auto& v : w) v += 1.f;
  std::vector<float> y(static_cast<size_t>(N * C)), rstd(static_cast<size_t>(N)), dx(static_cast<size_t>(N * C), 0.f), dw(static_cast<size_t>(C), 0.f);
  auto loss = [&] {
    rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    return project(y.data(), r);
  };
  loss();
  rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C);
  check_gradient("dx", x.data(), dx.data(), N * C, loss);
  check_gradient("dw", w.data(), dw.data(), C, loss);
}

// The strided form (rows inside wider rows, as MLA's [c_kv | k_pe] and MTP's concatenation) equals the
// contiguous one on copies, and with more than one 32-row block the pool's size changes nothing.
TEST(TrainOps, RmsnormBackwardStridedAndThreaded) {
  const int64_t N = 70, C = 24, ld_x = 40, ld_dout = 56;
  auto x = randn(N * ld_x, 1), w = randn(C, 2, 0.5f), r = randn(N * ld_dout, 3), rstd = randn(N, 4, 0.1f);
  for (auto& v : rstd) v = 1.f + std::fabs(v);
  std::vector<float> xc(size_t(N * C)), rc(size_t(N * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < C; ++i) {
      xc[size_t(n * C + i)] = x[size_t(n * ld_x + i)];
      rc[size_t(n * C + i)] = r[size_t(n * ld_dout + i)];
    }
  std::vector<float> dx(size_t(N * ld_x), 0.5f), dw(size_t(C), 0.25f), dxc(size_t(N * C), 0.5f), dwc(size_t(C), 0.25f);
  ThreadPool pool(2);
  rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C, &pool, ld_x, ld_dout);
  rmsnorm_backward(dxc.data(), dwc.data(), rc.data(), xc.data(), w.data(), rstd.data(), N, C, nullptr);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < C; ++i) ASSERT_EQ(dx[size_t(n * ld_x + i)], dxc[size_t(n * C + i)]) << n << " " << i;
    for (int64_t i = C; i < ld_x; ++i) ASSERT_EQ(dx[size_t(n * ld_x + i)], 0.5f) << "wrote past the row";
  }
  for (int64_t i = 0; i < C; ++i) ASSERT_EQ(dw[size_t(i)], dwc[size_t(i)]) << i;
}

// The vectorized elementwise helpers against scalar double references, at lengths off the vector width.
TEST(TrainOps, ElementwiseHelpersMatchScalar) {
  for (int64_t n : {1, 7, 15, 16, 17, 33, 255, 4097, 9000}) {
    auto a = randn(n, 1), b = randn(n, 2);
    std::vector<float> out(static_cast<size_t>(n));
    ThreadPool pool(2);
    add_vectors(out.data(), a.data(), b.data(), n, &pool);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[size_t(i)], a[size_t(i)] + b[size_t(i)]) << n;
    scale_vector(out.data(), 0.375f, a.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[size_t(i)], 0.375f * a[size_t(i)]) << n;
    // softmax_backward_row: only the sum is reordered (16 partial float sums).
    auto p = randn(n, 3), ds = randn(n, 4);
    for (auto& v : p) v = std::fabs(v) / float(n);
    std::vector<float> got = ds;
    softmax_backward_row(got.data(), p.data(), n, 0.7f);
    double sum = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      sum += double(p[size_t(i)]) * ds[size_t(i)];
      mag += std::fabs(double(p[size_t(i)]) * ds[size_t(i)]);
    }
    for (int64_t i = 0; i < n; ++i) {
      const double want = double(p[size_t(i)]) * (double(ds[size_t(i)]) - sum) * 0.7;
      // float sum error ≤ n 2⁻²⁴ Σ|p ds|, then three roundings of the product.
      const double tol = 0.7 * p[size_t(i)] * (double(n) * 0x1p-24 * mag) + 4 * 0x1p-24 * std::fabs(want) + 1e-30;
      ASSERT_NEAR(got[size_t(i)], want, tol) << n << " " << i;
    }
  }
}

TEST(TrainOps, SwigluGradient) {
  const int64_t n = 16;
  auto g = randn(n, 1, 2.f), u = randn(n, 2), r = randn(n, 3);
  std::vector<float> y(static_cast<size_t>(n)), dg(static_cast<size_t>(n), 0.f), du(static_cast<size_t>(n), 0.f);
  auto loss = [&] {
    swiglu_forward(y.data(), g.data(), u.data(), n);
    return project(y.data(), r);
  };
  loss();
  swiglu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
  check_gradient("dgate", g.data(), dg.data(), n, loss);
  check_gradient("dup", u.data(), du.data(), n, loss);
}

TEST(TrainOps, RopeGradientIsInverseRotation) {
  const int64_t half = 4, T = 5;
  // YaRN-like table with a non-unit attention factor so the adjoint (not the inverse) is tested.
  std::vector<float> inv_freq = {1.0f, 0.3f, 0.05f, 0.001f};
  std::vector<float> cs(static_cast<size_t>(T * half)), sn(static_cast<size_t>(T * half));
  rope_table(cs.data(), sn.data(), T, inv_freq.data(), half, 1.3f);
  auto x = randn(T * 2 * half, 1), r = randn(T * 2 * half, 2);
  std::vector<float> y(x.size()), dx;
  auto loss = [&] {
    y = x;
    for (int64_t t = 0; t < T; ++t) rope_forward(y.data() + t * 2 * half, cs.data() + t * half, sn.data() + t * half, half);
    return project(y.data(), r);
  };
  loss();
  dx = r;
  for (int64_t t = 0; t < T; ++t) rope_backward(dx.data() + t * 2 * half, cs.data() + t * half, sn.data() + t * half, half);
  check_gradient("dx", x.data(), dx.data(), int64_t(x.size()), loss);
}

TEST(TrainOps, EmbeddingGradient) {
  const int64_t V = 6, C = 3, N = 5;
  auto table = randn(V * C, 1), r = randn(N * C, 2);
  std::vector<int32_t> tok = {1, 4, 1, 0, 5};
  std::vector<float> y(static_cast<size_t>(N * C)), dt(static_cast<size_t>(V * C), 0.f);
  auto loss = [&] {
    embedding_forward(y.data(), tok.data(), table.data(), N, V, C);
    return project(y.data(), r);
  };
  loss();
  embedding_backward(dt.data(), r.data(), tok.data(), N, C);
  check_gradient("dtable", table.data(), dt.data(), V * C, loss);
  tok[2] = int32_t(V);
  EXPECT_THROW(embedding_forward(y.data(), tok.data(), table.data(), N, V, C), Error);
}

TEST(TrainOps, CrossEntropyGradient) {
  const int64_t N = 4, V = 7;
  auto logits = randn(N * V, 1, 2.f);
  std::vector<int32_t> tgt = {0, 6, 3, 3};
  std::vector<float> probs(static_cast<size_t>(N * V)), losses(static_cast<size_t>(N)), d(static_cast<size_t>(N * V));
  auto loss = [&] { return softmax_cross_entropy_forward(probs.data(), losses.data(), logits.data(), tgt.data(), N, V, nullptr) / N; };
  const double l = loss();
  // Against a direct double computation.
  double ref = 0;
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(logits[size_t(n * V + v)]));
    ref += std::log(s) - logits[size_t(n * V + tgt[size_t(n)])];
  }
  EXPECT_NEAR(l, ref / N, 1e-6);
  softmax_cross_entropy_backward(d.data(), probs.data(), tgt.data(), 1.f / N, N, V, nullptr);
  check_gradient("dlogits", logits.data(), d.data(), N * V, loss);
}

}  // namespace
}  // namespace dseek
