// decode_attend_rows (the SIMD kernel where the CPU has it) and its scalar version against softmax
// attention in double: awkward head counts (groups of 16 with a partial one), widths that are not
// multiples of 16, chunk edges (64 rows), masked rows, and a context split in two states (one of them
// given as 16-row runs, as a paged cache gives it, so chunks span run ends) then merged.
#include "dseek/kernels/attention_decode.h"

#include "dseek/core/dtype.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace dseek {
namespace {

struct Case {
  int64_t H, R, rope, n;
};

// The value as bf16 would hold it (nearest even), or as it is.
double as_scored(float v, bool bf16) { return bf16 ? double(bf16_to_f32(f32_to_bf16(v))) : double(v); }

// out (H, R) = softmax_j(scale q_h · c_j) · c_kv_j over the allowed rows, in double. bf16 (the AMX
// path): q and c rounded to bf16 (nearest even) in the scores and c in the weighted sum; the kernel
// also rounds each probability (relative to its chunk's running max) to bf16, which no reference
// can replay, so *p_bound gets sum_j p_j |c_jk| per output: that rounding moves o by at most 2^-8
// of it, bf16's unit roundoff (8 significant bits; one output was measured at 1.04 x 2^-9).
std::vector<double> reference(const DecodeQuery& q, const float* rows, int64_t n, int64_t stride,
                              const uint8_t* allowed, bool bf16_scores, std::vector<double>* p_bound = nullptr) {
  std::vector<double> out(size_t(q.H * q.R), 0.0);
  if (p_bound) p_bound->assign(out.size(), 0.0);
  for (int64_t h = 0; h < q.H; ++h) {
    std::vector<double> s(size_t(n), -std::numeric_limits<double>::infinity());
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      if (allowed && !allowed[j]) continue;
      double d = 0;
      const bool b = bf16_scores;
      for (int64_t k = 0; k < q.R; ++k) d += as_scored(q.q_lat[h * q.R + k], b) * as_scored(rows[j * stride + k], b);
      for (int64_t k = 0; k < q.rope; ++k)
        d += as_scored(q.q_pe[h * q.q_pe_stride + k], b) * as_scored(rows[j * stride + q.R + k], b);
      s[size_t(j)] = d * q.scale;
      mx = std::max(mx, s[size_t(j)]);
    }
    if (mx == -std::numeric_limits<double>::infinity()) continue;  // every row masked: zeros
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(s[size_t(j)] - mx);
    for (int64_t j = 0; j < n; ++j) {
      const double p = std::exp(s[size_t(j)] - mx) / sum;
      for (int64_t k = 0; k < q.R; ++k) {
        const double v = as_scored(rows[j * stride + k], bf16_scores);
        out[size_t(h * q.R + k)] += p * v;
        if (p_bound) (*p_bound)[size_t(h * q.R + k)] += p * std::fabs(v);
      }
    }
  }
  return out;
}

using AttendFn = void (*)(float*, float*, float*, const DecodeQuery&, const LatentRun*, int64_t, int64_t, bool);
void attend_simd(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* r, int64_t n, int64_t s, bool b) {
  decode_attend_rows(o, m, l, q, r, n, s, b);
}
void attend_amx(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* r, int64_t n, int64_t s, bool b) {
  decode_attend_rows(o, m, l, q, r, n, s, b, DecodeProducts::kAmx);
}
void attend_dot(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* r, int64_t n, int64_t s, bool b) {
  decode_attend_rows(o, m, l, q, r, n, s, b, DecodeProducts::kBf16Dot);
}

// Rows [j0, j1) as runs of at most `len` rows (a paged cache's blocks when len is 16).
template <class E>
std::vector<LatentRun> runs_of(const E* rows, const uint8_t* allowed, int64_t j0, int64_t j1, int64_t stride,
                               int64_t len) {
  std::vector<LatentRun> runs;
  for (int64_t j = j0; j < j1; j += len)
    runs.push_back({rows + j * stride, std::min(len, j1 - j), allowed ? allowed + j : nullptr});
  return runs;
}

// bf16: the kernel reads the rows as bf16 (a bf16 KV cache); the reference then attends over the
// rows rounded to bf16, which the kernel widens exactly, so the tolerance is the float32 one.
void check(const Case& c, int mask_mode, AttendFn fn, bool split, bool bf16, std::mt19937& rng, const char* name,
           bool bf16_scores = false) {
  const int64_t L = c.R + c.rope, stride = L + 3;  // rows padded, as a paged cache's never are: any stride works
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> rows(size_t(c.n * stride)), q_lat(size_t(c.H * c.R)), q_pe(size_t(c.H * (c.rope + 2)));
  std::vector<uint16_t> rows16(bf16 ? rows.size() : 0);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i] = nd(rng);
    if (bf16) {
      rows16[i] = f32_to_bf16(rows[i]);
      rows[i] = bf16_to_f32(rows16[i]);
    }
  }
  for (auto& v : q_lat) v = nd(rng);
  for (auto& v : q_pe) v = nd(rng);
  std::vector<uint8_t> allowed(size_t(c.n), 1);
  if (mask_mode == 1)
    for (int64_t j = 0; j < c.n; ++j) allowed[size_t(j)] = uint8_t(j % 3 != 1);
  if (mask_mode == 2) std::fill(allowed.begin(), allowed.end(), 0);
  DecodeQuery q;
  q.q_lat = q_lat.data();
  q.q_pe = q_pe.data();
  q.q_pe_stride = c.rope + 2;
  q.H = c.H;
  q.R = c.R;
  q.rope = c.rope;
  q.scale = 1.f / std::sqrt(float(L));
  const uint8_t* al = mask_mode ? allowed.data() : nullptr;
  std::vector<float> o(size_t(c.H * c.R)), m(size_t(c.H)), l(size_t(c.H));
  decode_state_init(o.data(), m.data(), l.data(), c.H, c.R);
  if (split) {  // rows [0, h) in one state, [h, n) in another as 16-row runs (paged blocks), merged
    const int64_t half = c.n / 2;
    std::vector<float> o2(o.size()), m2(m.size()), l2(l.size());
    decode_state_init(o2.data(), m2.data(), l2.data(), c.H, c.R);
    const std::vector<LatentRun> a = bf16 ? runs_of(rows16.data(), al, 0, half, stride, half)
                                          : runs_of(rows.data(), al, 0, half, stride, half);
    const std::vector<LatentRun> b = bf16 ? runs_of(rows16.data(), al, half, c.n, stride, 16)
                                          : runs_of(rows.data(), al, half, c.n, stride, 16);
    fn(o.data(), m.data(), l.data(), q, a.data(), int64_t(a.size()), stride, bf16);
    fn(o2.data(), m2.data(), l2.data(), q, b.data(), int64_t(b.size()), stride, bf16);
    decode_state_merge(o.data(), m.data(), l.data(), o2.data(), m2.data(), l2.data(), c.H, c.R);
  } else {
    const std::vector<LatentRun> a =
        bf16 ? runs_of(rows16.data(), al, 0, c.n, stride, c.n) : runs_of(rows.data(), al, 0, c.n, stride, c.n);
    fn(o.data(), m.data(), l.data(), q, a.data(), int64_t(a.size()), stride, bf16);
  }
  decode_state_finish(o.data(), l.data(), c.H, c.R);
  std::vector<double> p_bound;
  const std::vector<double> ref = reference(q, rows.data(), c.n, stride, al, bf16_scores, &p_bound);
  // The output is a convex combination of the rows (|c| <~ 4): float32 products and sums, and an exp
  // within a few ulp, leave ~1e-6 relative per term; bf16 probabilities (the AMX path) add up to
  // 2^-8 of sum p |c| (reference above).
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(o[i], ref[i], 2e-5 * (1.0 + std::fabs(ref[i])) + (bf16_scores ? 0x1p-8 * p_bound[i] : 0.0))
        << name << " H " << c.H << " R " << c.R << " rope " << c.rope << " n " << c.n << " mask " << mask_mode
        << " split " << split << " bf16 " << bf16 << " output " << i;
}

TEST(AttentionDecode, MatchesSoftmaxAttention) {
  std::mt19937 rng(20261206);
  // {16, 512, 64, 1000}: over 1 MiB of rows (both types), where the kernel prefetches the next chunk.
  const Case cases[] = {{1, 16, 16, 1},     {4, 64, 16, 5},    {6, 40, 8, 64},  {16, 512, 64, 65},
                        {16, 512, 64, 200}, {20, 64, 16, 130}, {3, 24, 8, 129}, {16, 512, 64, 1000}};
  for (const Case& c : cases)
    for (int mask_mode : {0, 1, 2})
      for (bool split : {false, true})
        for (bool bf16 : {false, true}) {
          check(c, mask_mode, &attend_simd, split, bf16, rng, "decode_attend_rows");
          if (c.n <= 200) check(c, mask_mode, &decode_attend_rows_ref, split, bf16, rng, "decode_attend_rows_ref");
          if (::testing::Test::HasFatalFailure()) return;
        }
}

// bf16 products over bf16 rows (kAmx: AMX tiles; kBf16Dot: vdpbf16ps): q and the probabilities
// rounded to bf16, softmax float32. The reference rounds the same q and rows, so beside the float32
// tolerance only the probabilities' rounding is allowed for (a wrong pair order, head, column or row
// tile edge misses it by far). Over float32 rows the choice changes nothing, bit for bit.
void check_bf16_products(DecodeProducts products, AttendFn fn, std::mt19937& rng, const char* name) {
  const Case cases[] = {{1, 16, 16, 1},     {4, 64, 16, 5},     {6, 40, 8, 64},  {16, 512, 64, 65},
                        {16, 512, 64, 200}, {20, 64, 16, 130},  {3, 24, 8, 129}, {16, 512, 64, 1000},
                        {16, 500, 60, 33},  {12, 48, 24, 67}};
  for (const Case& c : cases)
    for (int mask_mode : {0, 1, 2})
      for (bool split : {false, true}) {
        check(c, mask_mode, fn, split, /*bf16=*/true, rng, name, /*bf16_scores=*/true);
        if (::testing::Test::HasFatalFailure()) return;
      }
  std::normal_distribution<float> nd(0.f, 1.f);
  {  // One-row runs, pairs swapped (1, 0, 3, 2, ...: no 16 rows at one stride, the first step falls).
    const int64_t H = 16, R = 64, rope = 32, n = 40, L = R + rope;
    std::vector<uint16_t> rows16(size_t(n * L));
    std::vector<float> rows(rows16.size()), q_lat(size_t(H * R)), q_pe(size_t(H * rope));
    for (size_t i = 0; i < rows16.size(); ++i) rows[i] = bf16_to_f32(rows16[i] = f32_to_bf16(nd(rng)));
    for (auto* v : {&q_lat, &q_pe})
      for (auto& x : *v) x = nd(rng);
    const DecodeQuery q{q_lat.data(), q_pe.data(), rope, H, R, rope, 0.1f};
    std::vector<LatentRun> runs;
    for (int64_t i = 0; i < n; ++i) runs.push_back({rows16.data() + (i ^ 1) * L, 1, nullptr});
    std::vector<float> o(static_cast<size_t>(H * R)), m(static_cast<size_t>(H)), l(static_cast<size_t>(H));
    decode_state_init(o.data(), m.data(), l.data(), H, R);
    decode_attend_rows(o.data(), m.data(), l.data(), q, runs.data(), n, L, true, products);
    decode_state_finish(o.data(), l.data(), H, R);
    std::vector<double> p_bound;
    const std::vector<double> ref = reference(q, rows.data(), n, L, nullptr, true, &p_bound);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_NEAR(o[i], ref[i], 2e-5 * (1.0 + std::fabs(ref[i])) + 0x1p-8 * p_bound[i])
          << name << " swapped runs, output " << i;
  }
  // Float32 rows: identical with and without bf16 products.
  const int64_t H = 16, R = 512, rope = 64, n = 300, L = R + rope;
  std::vector<float> rows(size_t(n * L)), q_lat(size_t(H * R)), q_pe(size_t(H * rope));
  for (auto* v : {&rows, &q_lat, &q_pe})
    for (auto& x : *v) x = nd(rng);
  const DecodeQuery q{q_lat.data(), q_pe.data(), rope, H, R, rope, 0.05f};
  const LatentRun run{rows.data(), n, nullptr};
  std::vector<float> o[2], m[2], l[2];
  for (int i = 0; i < 2; ++i) {
    o[i].resize(size_t(H * R)), m[i].resize(size_t(H)), l[i].resize(size_t(H));
    decode_state_init(o[i].data(), m[i].data(), l[i].data(), H, R);
    decode_attend_rows(o[i].data(), m[i].data(), l[i].data(), q, &run, 1, L, false,
                       i == 1 ? products : DecodeProducts::kFloat32);
  }
  EXPECT_EQ(o[0], o[1]) << name;
  EXPECT_EQ(l[0], l[1]) << name;
}

TEST(AttentionDecode, AmxOverBf16RowsMatchesBf16RoundedReference) {
  if (!matmul_kernel_supported(MatmulKernel::kAmx)) GTEST_SKIP() << "no AMX-BF16 on this CPU (or no tile state)";
  std::mt19937 rng(20261207);
  check_bf16_products(DecodeProducts::kAmx, &attend_amx, rng, "decode_attend_rows amx");
}

TEST(AttentionDecode, Bf16DotOverBf16RowsMatchesBf16RoundedReference) {
  if (!cpu_features().avx512bf16 || !cpu_features().avx512_fma()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  std::mt19937 rng(20261208);
  check_bf16_products(DecodeProducts::kBf16Dot, &attend_dot, rng, "decode_attend_rows bf16dot");
}

}  // namespace
}  // namespace dseek
