#include "dseek/kernels/vec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace dseek {
namespace {

// Dispatched (SIMD) vs scalar reference: float32 sums in another order differ by a few ulps of
// the sum of |terms|, so compare relative to that.
TEST(Vec, DotAndAxpyMatchReferenceAtAwkwardSizes) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 512, 576, 1000}) {
    for (int64_t off : {0, 1, 3}) {
      std::vector<float> a(size_t(n + off)), b(size_t(n + off)), y(size_t(n + off)), y_ref;
      for (auto& v : a) v = nd(rng);
      for (auto& v : b) v = nd(rng);
      for (auto& v : y) v = nd(rng);
      double mag = 0;
      for (int64_t i = 0; i < n; ++i) mag += std::fabs(double(a[size_t(off + i)]) * b[size_t(off + i)]);
      const float d = vec_dot(a.data() + off, b.data() + off, n), r = vec_dot_ref(a.data() + off, b.data() + off, n);
      EXPECT_NEAR(d, r, 1e-6 * (mag + 1)) << "n " << n << " off " << off;
      double amag = 0;
      for (int64_t i = 0; i < n; ++i) amag += std::fabs(a[size_t(off + i)]);
      EXPECT_NEAR(vec_sum(a.data() + off, n), vec_sum_ref(a.data() + off, n), 1e-6 * (amag + 1)) << "sum n " << n;
      y_ref = y;
      vec_axpy(y.data() + off, 0.37f, a.data() + off, n);
      vec_axpy_ref(y_ref.data() + off, 0.37f, a.data() + off, n);
      for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-6f * (1 + std::fabs(y_ref[i]))) << n << " " << i;
    }
  }
}

}  // namespace
}  // namespace dseek
