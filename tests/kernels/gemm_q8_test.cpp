// The int8 prefill GEMM for Q8_0 / Q4_0 weights (gemm_q8_avx512.cpp, run by matmul for the
// batch sizes mm::qgemm_tokens names on AVX-512 BF16 CPUs; Q8_0_R16 at every batch size) against matmul_qact_ref (the same integer block
// products) and the float32 reference matmul_ref, on random inputs of awkward sizes, 1 and 2
// threads; and its activation quantization against quantize_act_block, bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/kernels/gemm_q8.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"

namespace dseek {
namespace {

constexpr uint32_t kSeed = 7070701;

// Tolerances, relative to S = sum_k |W[n, k] x[b, k]| per output (the rule matmul_fast_test.cpp
// uses for the int8-activation decode kernels):
// against matmul_qact_ref the integer block dots are exact and only the float32 sum over blocks
// differs (order, FMA): 2e-5 catches any wrong index or scale;
constexpr double kModelTol = 2e-5;
// against matmul_ref, activation quantization moves each x by at most dx / 2 = max|x_block| / 254,
// so |error| <= sum_blocks (amax_b / 254) * sum_b |W| (qact_bound, times 1.01 for the float
// rounding of 127 / amax) plus the same 2e-5 * S.

struct Weights {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;  // one byte past a 64-byte boundary: misaligned rows
  MatView view() const {
    MatView v;
    v.data = bytes.data() + 1;
    v.dtype = dtype;
    v.rows = rows;
    v.cols = cols;
    return v;
  }
};

Weights random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  Weights w{t, rows, cols, {}};
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> f(size_t(rows * cols));
  for (auto& v : f) v = nd(rng);
  w.bytes.assign(size_t(rows * quant_row_bytes(t, cols)) + 1, 0);
  quantize_rows(t, w.bytes.data() + 1, f.data(), rows, cols);
  return w;
}

std::vector<float> random_act(int64_t B, int64_t K, std::mt19937& rng) {
  std::vector<float> x(size_t(B * K) + 1);  // used from x.data() + 1: misaligned
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : x) v = nd(rng);
  return x;
}

// S (above) and the activation-rounding bound, per output (B, N).
void bounds(const MatView& w, const float* x, int64_t B, std::vector<double>& S, std::vector<double>& qb) {
  std::vector<float> row(size_t(w.cols));
  S.assign(size_t(B * w.rows), 0.0);
  qb.assign(size_t(B * w.rows), 0.0);
  for (int64_t n = 0; n < w.rows; ++n) {
    dequantize_row(row.data(), w, n);
    for (int64_t b = 0; b < B; ++b) {
      double s = 0, q = 0;
      for (int64_t j = 0; j < w.cols / kQuantBlock; ++j) {
        double amax = 0, wsum = 0;
        for (int64_t i = j * kQuantBlock; i < (j + 1) * kQuantBlock; ++i) {
          const double xv = x[b * w.cols + i], wv = row[size_t(i)];
          s += std::fabs(wv * xv);
          amax = std::max(amax, std::fabs(xv));
          wsum += std::fabs(wv);
        }
        q += amax / 254.0 * wsum * 1.01;
      }
      S[size_t(b * w.rows + n)] = s;
      qb[size_t(b * w.rows + n)] = q;
    }
  }
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& S,
                  const std::vector<double>* extra, const std::string& what) {
  int bad = 0;
  size_t worst_i = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double lim = kModelTol * S[i] + (extra ? (*extra)[i] : 0.0) + 1e-30;
    const double ratio = std::fabs(double(got[i]) - double(want[i])) / lim;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = i;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " outside tolerance; worst at " << worst_i
                    << ": got " << got[worst_i] << " want " << want[worst_i] << " (S = " << S[worst_i]
                    << ", |diff| / limit = " << worst << ")";
}

bool has_int8_gemm() { return matmul_kernel_supported(MatmulKernel::kAvx512Bf16); }

// The kernel called directly (any B, also those matmul sends elsewhere), as matmul prepares it;
// rows in tasks of `task_rows` (a multiple of 32), run in turn.
void run_kernel(float* y, const float* x, const MatView& w, int64_t B, int64_t task_rows) {
  const mm::QGemmKernels k = mm::qgemm_avx512_kernels();
  const int64_t K = w.cols, stride = mm::qgemm_tile_bytes(K), tiles = (B + mm::kQGemmTokens - 1) / mm::kQGemmTokens;
  std::vector<uint8_t> buf(size_t(tiles * stride) + 64);
  uint8_t* act = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  for (int64_t t = 0; t < tiles; ++t)
    k.prep_tile(act + t * stride, x + t * mm::kQGemmTokens * K, std::min(mm::kQGemmTokens, B - t * mm::kQGemmTokens), K);
  mm::Job j;
  j.y = y;
  j.N = w.rows;
  j.B = B;
  j.K = K;
  j.x = x;
  j.act = act;
  j.act_stride = stride;
  j.w_row_bytes = quant_row_bytes(w.dtype, K);
  j.w = static_cast<const uint8_t*>(w.data) + w.row_offset * j.w_row_bytes;
  j.w_scales_offset = w.dtype == DType::kQ8_0 ? K : K / 2;
  for (int64_t n0 = 0; n0 < w.rows; n0 += task_rows)
    (w.dtype == DType::kQ8_0     ? k.q8_0
     : w.dtype == DType::kQ4_0   ? k.q4_0
     : w.dtype == DType::kQ8_0R16 ? k.q8_0_r16
                                 : k.q4_0_r16)(j, n0, std::min(w.rows, n0 + task_rows));
}

void check_case(DType t, int64_t N, int64_t K, int64_t B, std::mt19937& rng) {
  const Weights wt = random_weights(t, N, K, rng);
  const MatView w = wt.view();
  std::vector<float> xs = random_act(B, K, rng);
  const float* x = xs.data() + 1;
  std::vector<float> ref(size_t(B * N)), model(size_t(B * N));
  matmul_ref(ref.data(), x, w, B);
  matmul_qact_ref(model.data(), x, w, B);
  std::vector<double> S, qb;
  bounds(w, x, B, S, qb);
  // threads 0: the kernel called directly in 32-row tasks; 1, 2: through matmul, where it runs
  // these B (mm::qgemm_tokens).
  for (int threads : {0, 1, 2}) {
    if (threads > 0 && !mm::qgemm_tokens(B) && !is_r16(t)) continue;
    std::vector<float> buf(size_t(B * N) + 2, -7.f);  // y misaligned, sentinels on both sides
    float* y = buf.data() + 1;
    if (threads == 0) {
      run_kernel(y, x, w, B, 32);
    } else {
      ThreadPool pool(threads);
      matmul(y, x, w, B, &pool, MatmulKernel::kAvx512Bf16);
    }
    std::ostringstream what;
    what << dtype_name(t) << " N=" << N << " K=" << K << " B=" << B << " threads=" << threads << " seed=" << kSeed;
    EXPECT_EQ(buf.front(), -7.f) << what.str();
    EXPECT_EQ(buf.back(), -7.f) << what.str();
    const std::vector<float> got(y, y + B * N);
    expect_close(got, model, S, nullptr, what.str() + " vs matmul_qact_ref");
    expect_close(got, ref, S, &qb, what.str() + " vs matmul_ref");
  }
}

TEST(GemmQ8, AwkwardSizes) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  std::mt19937 rng(kSeed);
  // K: one block, a partial 64-column pack step (96), a 256-column panel plus one block (288),
  // 17 blocks (544); N: below, at and past the 32-row panels and 64-row blocks; B: tails of 1 to 5
  // tokens past whole 6-token tiles.
  for (DType t : {DType::kQ8_0, DType::kQ4_0})
    for (int64_t K : {32, 96, 288, 544})
      for (int64_t N : {1, 31, 33, 70})
        for (int64_t B : {9, 13, 16, 17, 48, 65}) check_case(t, N, K, B, rng);
}

// Q8_0_R16 / Q4_0_R16: the same kernel family reading the stored 16-row groups, at every B (1-8
// tokens read 64 rows at a time over the whole K, in one or two activation tiles; more, the chunked
// sweep of 32 rows).
TEST(GemmQ8, R16AwkwardSizes) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  std::mt19937 rng(kSeed + 10);
  for (DType t : {DType::kQ8_0R16, DType::kQ4_0R16}) {
    for (int64_t K : {32, 96, 288, 544})
      for (int64_t N : {16, 48, 80, 144})
        for (int64_t B : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 48}) check_case(t, N, K, B, rng);
    for (int64_t B : {1, 5, 8}) check_case(t, 208, 2048, B, rng);  // several 64-row tasks through the pool
    check_case(t, 208, 1056, 65, rng);
    // K past one streamed piece (kStreamBlocks = 256 blocks): the second piece accumulates into y.
    for (int64_t B : {4, 8, 13}) check_case(t, 32, 8224, B, rng);
  }
}

// The interleaved groups hold exactly the row format's codes and scales: rows read back bit for
// bit, and the scalar path (matmul_ref's arithmetic, CPUs without AVX-512) gives identical products.
void check_holds_rows(DType t, std::mt19937& rng) {
  SCOPED_TRACE(std::string(dtype_name(t)));
  const int64_t N = 48, K = 224, B = 3;
  const Weights q8 = random_weights(r16_row_type(t), N, K, rng);
  const int64_t rb = quant_row_bytes(t, K);
  std::vector<uint8_t> r16(size_t(N * rb));
  std::vector<uint8_t> row(static_cast<size_t>(rb));
  interleave_r16(t, r16.data(), q8.bytes.data() + 1, N, K);
  for (int64_t r = 0; r < N; ++r) {
    r16_row(t, row.data(), r16.data(), r, K);
    EXPECT_EQ(0, std::memcmp(row.data(), q8.bytes.data() + 1 + r * rb, size_t(rb))) << "row " << r;
  }
  MatView a = q8.view(), b = a;
  b.data = r16.data();
  b.dtype = t;
  std::vector<float> xs = random_act(B, K, rng);
  std::vector<float> ya(size_t(B * N)), yb(size_t(B * N)), yc(size_t(B * N));
  matmul_ref(ya.data(), xs.data() + 1, a, B);
  matmul_ref(yb.data(), xs.data() + 1, b, B);
  matmul(yc.data(), xs.data() + 1, b, B, nullptr, MatmulKernel::kScalar);
  EXPECT_EQ(ya, yb);
  EXPECT_EQ(ya, yc);
  // Slices: at a group (the SIMD kernel where there is one) and inside one (the scalar path).
  for (auto [begin, n] : {std::pair<int64_t, int64_t>{16, 32}, {5, 20}}) {
    std::vector<float> want(size_t(B * n)), got(size_t(B * n)), model(size_t(B * n));
    matmul_ref(want.data(), xs.data() + 1, a.slice_rows(begin, n), B);
    matmul_qact_ref(model.data(), xs.data() + 1, b.slice_rows(begin, n), B);
    matmul(got.data(), xs.data() + 1, b.slice_rows(begin, n), B, nullptr);
    std::vector<double> S, qb;
    bounds(a.slice_rows(begin, n), xs.data() + 1, B, S, qb);
    const std::string what = "rows [" + std::to_string(begin) + ", " + std::to_string(begin + n) + ")";
    expect_close(got, model, S, &qb, what + " vs matmul_qact_ref");
    expect_close(got, want, S, &qb, what + " vs matmul_ref");
  }
  std::vector<float> f(size_t(17 * K), 1.f);
  EXPECT_THROW(quantize_rows(t, r16.data(), f.data(), 17, K), Error);  // not 16-row groups
}

TEST(GemmQ8, R16HoldsRows) {
  std::mt19937 rng(kSeed + 11);
  for (DType t : {DType::kQ8_0R16, DType::kQ4_0R16}) check_holds_rows(t, rng);
}

TEST(GemmQ8, ManyTokensAndRows) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  std::mt19937 rng(kSeed + 1);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    check_case(t, 130, 1056, 513, rng);  // the pool splits rows into several tasks
    check_case(t, 200, 2048, 48, rng);
  }
}

TEST(GemmQ8, RowSlice) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  std::mt19937 rng(kSeed + 2);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    const Weights wt = random_weights(t, 100, 320, rng);
    const MatView w = wt.view().slice_rows(37, 45);
    const int64_t B = 20;
    std::vector<float> xs = random_act(B, 320, rng);
    std::vector<float> model(size_t(B * 45)), got(size_t(B * 45));
    matmul_qact_ref(model.data(), xs.data() + 1, w, B);
    run_kernel(got.data(), xs.data() + 1, w, B, 32);
    std::vector<double> S, qb;
    bounds(w, xs.data() + 1, B, S, qb);
    expect_close(got, model, S, nullptr, std::string(dtype_name(t)) + " rows [37, 82) of 100");
  }
}

// A non-finite activation makes its token's outputs NaN (as matmul_ref's sums are not finite);
// the other tokens are unaffected.
TEST(GemmQ8, NonFiniteActivations) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  std::mt19937 rng(kSeed + 3);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    const int64_t N = 40, K = 128, B = 12;  // B in mm::qgemm_tokens: matmul runs the kernel
    const Weights wt = random_weights(t, N, K, rng);
    std::vector<float> xs = random_act(B, K, rng);
    float* x = xs.data() + 1;
    x[3 * K + 70] = INFINITY;
    x[8 * K + 5] = NAN;
    std::vector<float> model(size_t(B * N)), got(size_t(B * N));
    matmul_qact_ref(model.data(), x, wt.view(), B);
    matmul(got.data(), x, wt.view(), B, nullptr, MatmulKernel::kAvx512Bf16);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t n = 0; n < N; ++n) {
        const size_t i = size_t(b * N + n);
        if (b == 3 || b == 8) {
          EXPECT_TRUE(std::isnan(got[i])) << dtype_name(t) << " token " << b << " row " << n;
        } else {
          EXPECT_NEAR(got[i], model[i], 1e-4 * (1 + std::fabs(model[i]))) << dtype_name(t) << " token " << b;
        }
      }
  }
}

// prep_tile's codes and scales equal quantize_act_block's bit for bit (the tolerances above rely
// on it), zero and tiny blocks included; padding tokens are zero.
TEST(GemmQ8, TileQuantizationMatchesScalar) {
  if (!has_int8_gemm()) GTEST_SKIP() << "no AVX-512 BF16 + VNNI";
  const mm::QGemmKernels k = mm::qgemm_avx512_kernels();  // compiled for AVX-512: only called here
  ASSERT_NE(k.prep_tile, nullptr);
  std::mt19937 rng(kSeed + 4);
  const int64_t K = 160, nb = K / kQuantBlock;
  for (int64_t rows = 1; rows <= mm::kQGemmTokens; ++rows) {
    std::vector<float> x = random_act(rows, K, rng);
    for (int i = 0; i < kQuantBlock; ++i) x[size_t(32 + i)] = 0.f;     // token 0, block 1: zeros
    for (int i = 0; i < kQuantBlock; ++i) x[size_t(64 + i)] *= 1e-30f;  // token 0, block 2: tiny
    std::vector<uint8_t> buf(size_t(mm::qgemm_tile_bytes(K)) + 64, 0xAB);
    uint8_t* out = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
    k.prep_tile(out, x.data(), rows, K);
    const auto* codes = reinterpret_cast<const uint32_t*>(out);
    const auto* dxs = reinterpret_cast<const float*>(out + mm::qgemm_dx_offset(K));
    const auto* corr = reinterpret_cast<const int32_t*>(out + mm::qgemm_corr_offset(K));
    for (int64_t t = 0; t < mm::kQGemmTokens; ++t)
      for (int64_t j = 0; j < nb; ++j) {
        int8_t q[kQuantBlock] = {};
        float dx = 0.f;
        if (t < rows) quantize_act_block(q, &dx, x.data() + t * K + j * kQuantBlock);
        int32_t sum = 0;
        for (int i = 0; i < kQuantBlock; ++i) sum += q[i];
        for (int g = 0; g < 8; ++g) {
          uint32_t want;
          std::memcpy(&want, q + 4 * g, 4);
          ASSERT_EQ(codes[(8 * j + g) * mm::kQGemmTokens + t], want) << "rows " << rows << " token " << t << " block " << j;
        }
        ASSERT_EQ(std::memcmp(&dxs[j * mm::kQGemmTokens + t], &dx, 4), 0) << "rows " << rows << " token " << t;
        ASSERT_EQ(corr[j * mm::kQGemmTokens + t], -128 * sum) << "rows " << rows << " token " << t;
      }
  }
}

}  // namespace
}  // namespace dseek
