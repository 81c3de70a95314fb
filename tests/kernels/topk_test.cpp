// topk: order, ties, NaN and infinities, k = 0 and k = n, against a stable-sort reference.
#include "dseek/kernels/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

namespace dseek {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Reference: stable sort of indices by descending score, NaN after every number.
std::vector<int32_t> topk_reference(const std::vector<float>& s, int64_t k) {
  std::vector<int32_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    const bool na = std::isnan(s[size_t(a)]), nb = std::isnan(s[size_t(b)]);
    if (na || nb) return !na && nb;
    return s[size_t(a)] > s[size_t(b)];
  });
  idx.resize(size_t(k));
  return idx;
}

std::vector<int32_t> run_topk(const std::vector<float>& s, int64_t k) {
  std::vector<int32_t> idx(size_t(k), -1);
  topk(idx.data(), s.data(), int64_t(s.size()), k);
  return idx;
}

TEST(TopK, DescendingOrder) {
  const std::vector<float> s = {0.1f, 0.9f, -3, 0.5f, 2, 0.7f};
  EXPECT_EQ(run_topk(s, 3), (std::vector<int32_t>{4, 1, 5}));
  EXPECT_EQ(run_topk(s, 1), (std::vector<int32_t>{4}));
}

TEST(TopK, TiesLowerIndexFirst) {
  const std::vector<float> s = {1, 3, 3, 1, 3, 2};
  EXPECT_EQ(run_topk(s, 4), (std::vector<int32_t>{1, 2, 4, 5}));
  EXPECT_EQ(run_topk(s, 6), (std::vector<int32_t>{1, 2, 4, 5, 0, 3}));
  const std::vector<float> same(9, 0.25f);
  EXPECT_EQ(run_topk(same, 3), (std::vector<int32_t>{0, 1, 2}));
  // -0 and +0 compare equal: index order decides.
  EXPECT_EQ(run_topk({0.f, -0.f, 0.f}, 2), (std::vector<int32_t>{0, 1}));
}

TEST(TopK, KEqualsNIsAFullSort) {
  const std::vector<float> s = {5, -1, 7, 7, 0};
  EXPECT_EQ(run_topk(s, 5), (std::vector<int32_t>{2, 3, 0, 4, 1}));
  EXPECT_EQ(run_topk({42.f}, 1), (std::vector<int32_t>{0}));
}

// k = 0 must write nothing. The output pointer points one past a guard element, which must not be
// touched; scores[0] < scores[1] so that an implementation reading/writing idx[k - 1] = idx[-1] shows.
TEST(TopK, KZeroWritesNothing) {
  const std::vector<float> s = {0.f, 1.f, 2.f};
  int32_t buf[2] = {0, 12345};  // buf[0]: guard before idx; buf[1]: idx[0], also outside k = 0
  topk(buf + 1, s.data(), 3, 0);
  EXPECT_EQ(buf[0], 0) << "topk(k = 0) wrote idx[-1]";
  EXPECT_EQ(buf[1], 12345) << "topk(k = 0) wrote idx[0]";
  topk(buf + 1, s.data(), 0, 0);  // n = 0 as well
  EXPECT_EQ(buf[1], 12345);
}

TEST(TopK, NanRanksLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> s = {nan, 1, -kInf, nan, -5, 2};
  EXPECT_EQ(run_topk(s, 3), (std::vector<int32_t>{5, 1, 4}));
  EXPECT_EQ(run_topk(s, 6), (std::vector<int32_t>{5, 1, 4, 2, 0, 3}));
  EXPECT_EQ(run_topk({nan, nan}, 1), (std::vector<int32_t>{0}));
  EXPECT_EQ(run_topk({nan, -kInf}, 1), (std::vector<int32_t>{1}));
}

TEST(TopK, InfinitiesRank) {
  const std::vector<float> s = {-kInf, 0, kInf, -kInf, -1e30f};
  EXPECT_EQ(run_topk(s, 5), (std::vector<int32_t>{2, 1, 4, 0, 3}));
  // All -inf (a fully masked router row): index order.
  EXPECT_EQ(run_topk({-kInf, -kInf, -kInf}, 2), (std::vector<int32_t>{0, 1}));
}

TEST(TopK, RandomAgainstStableSort) {
  const uint32_t seed = 77;
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + int64_t(rng() % 300);
    // k >= 1 here: k = 0 has its own test (KZeroWritesNothing), where a wrong write lands in a guard
    // instead of crashing the whole binary through an empty vector's data().
    const int64_t k = 1 + int64_t(rng() % n);
    std::vector<float> s(static_cast<size_t>(n));
    // Few distinct values so ties are common; some NaN and infinities.
    for (auto& v : s) {
      const uint32_t r = rng() % 20;
      v = r == 0 ? std::numeric_limits<float>::quiet_NaN() : r == 1 ? -kInf : r == 2 ? kInf : float(r % 7) * 0.5f;
    }
    ASSERT_EQ(run_topk(s, k), topk_reference(s, k))
        << "seed " << seed << " trial " << trial << " n " << n << " k " << k;
  }
}

}  // namespace
}  // namespace dseek
