// The AMX prefill GEMM (gemm_amx.h, MatmulKernel::kAmx) against a double-precision model of its
// arithmetic: every weight decoded to its exact float32 value (dequantize_row) and rounded to bf16,
// every activation rounded to bf16 (nearest even), products summed in double. TDPBF16PS multiplies
// bf16 pairs exactly and sums in float32, so the kernel may differ from the model only by float32
// summation error: kSumTol of S = sum_k |w' x'| per output (K <= 1100 here; the hard bound
// (K - 1) 2^-24 is 6.6e-5, random walks are ~100x smaller). A wrong scale, column, pair order or
// tile edge is off by far more. Also: partial tiles write nothing outside y, row slices, FP8 NaN
// codes, the thread pool's split. Skipped (with the reason) on CPUs without AMX-BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dseek/core/dtype.h"
#include "dseek/core/thread_pool.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"

#include "common/weight_view.h"

namespace dseek {
namespace {

constexpr uint32_t kSeed = 4242001;
constexpr double kSumTol = 2e-5;

struct Weights {
  DType dtype;
  int64_t rows = 0, cols = 0, block = 128;
  std::vector<uint8_t> bytes;
  std::vector<float> scale_inv;
  MatView view() const { return weight_view(bytes.data(), dtype, rows, cols, block, scale_inv.data()); }
};

Weights random_weights(DType t, int64_t rows, int64_t cols, std::mt19937& rng, int64_t block = 128) {
  Weights w{t, rows, cols, block, {}, {}};
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> f(size_t(rows * cols));
  for (auto& v : f) v = nd(rng);
  w.bytes.assign(size_t(rows * quant_row_bytes(t, cols)), 0);
  switch (t) {
    case DType::kBF16:
      for (size_t i = 0; i < f.size(); ++i) {
        const uint16_t h = f32_to_bf16(f[i]);
        std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      }
      break;
    case DType::kF8E4M3: {
      std::uniform_int_distribution<int> byte(0, 255);
      for (auto& b : w.bytes) {
        do b = uint8_t(byte(rng));
        while ((b & 0x7f) == 0x7f);
      }
      std::uniform_real_distribution<float> su(0.5f, 2.f);
      w.scale_inv.resize(size_t(((rows + block - 1) / block) * ((cols + block - 1) / block)));
      for (auto& s : w.scale_inv) s = su(rng) * 1e-2f;
      break;
    }
    default: quantize_rows(t, w.bytes.data(), f.data(), rows, cols);
  }
  return w;
}

float bf16_round(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// y = x' · W'ᵀ in double with W', x' rounded to bf16; S = the same sum of absolute products.
void model(const MatView& w, const std::vector<float>& x, int64_t B, std::vector<double>& y, std::vector<double>& S) {
  const int64_t N = w.rows, K = w.cols;
  y.assign(size_t(B * N), 0.0);
  S.assign(size_t(B * N), 0.0);
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(row.data(), w, n);
    for (auto& v : row) v = bf16_round(v);
    for (int64_t b = 0; b < B; ++b) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(row[size_t(k)]) * double(bf16_round(x[size_t(b * K + k)]));
        acc += p;
        mag += std::fabs(p);
      }
      y[size_t(b * N + n)] = acc;
      S[size_t(b * N + n)] = mag;
    }
  }
}

bool has_amx() { return matmul_kernel_supported(MatmulKernel::kAmx); }

std::string label(const MatView& w, int64_t B) {
  return std::string(dtype_name(w.dtype)) + " N=" + std::to_string(w.rows) + " K=" + std::to_string(w.cols) +
         " B=" + std::to_string(B) + " row_offset=" + std::to_string(w.row_offset) + " seed=" + std::to_string(kSeed);
}

// Runs kAmx on (w, B random tokens) and compares with the model; y is guarded by sentinels.
void check(const MatView& w, int64_t B, std::mt19937& rng, ThreadPool* pool) {
  const int64_t N = w.rows, K = w.cols;
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(B * K));
  for (auto& v : x) v = nd(rng);
  std::vector<float> buf(size_t(B * N) + 2, -7.f);
  float* y = buf.data() + 1;
  matmul(y, x.data(), w, B, pool, MatmulKernel::kAmx);
  const std::string what = label(w, B);
  EXPECT_EQ(buf.front(), -7.f) << what << ": write before y";
  EXPECT_EQ(buf.back(), -7.f) << what << ": write past y";
  std::vector<double> want, S;
  model(w, x, B, want, S);
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double diff = std::fabs(double(y[i]) - want[i]);
    if (!(diff <= kSumTol * S[i] + 1e-30) && bad++ < 3)
      ADD_FAILURE() << what << ": y[" << i / size_t(N) << ", " << i % size_t(N) << "] = " << y[i] << ", model "
                    << want[i] << " (|diff| " << diff << " > " << kSumTol * S[i] << ")";
  }
}

TEST(GemmAmx, Reports) {
  std::cout << "cpu: " << cpu_features_str(cpu_features()) << "; amx permitted: " << amx_permitted()
            << "; kAmx supported: " << has_amx() << "\n";
  if (!cpu_features().amx_bf16) {
    EXPECT_FALSE(has_amx());
  }
  if (has_amx()) {
    EXPECT_EQ(matmul_best_kernel(), MatmulKernel::kAmx);
  }
  EXPECT_NE(matmul_best_kernel_without_amx(), MatmulKernel::kAmx);
}

TEST(GemmAmx, FloatFormatsAwkwardSizes) {
  if (!has_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the OS refused the tile state)";
  std::mt19937 rng(kSeed);
  // N: partial 16- and 32-row slabs; K: partial 32-column steps and FP8 blocks; B: partial 16-token
  // tiles, an odd number of tiles, and both sides of the 2-tile pairing.
  for (DType t : {DType::kBF16, DType::kF8E4M3})
    for (int64_t N : {1, 17, 40, 70})
      for (int64_t K : {15, 33, 130, 257})
        for (int64_t B : {kAmxMinTokens, int64_t(16), int64_t(33), int64_t(50)}) {
          const Weights w = random_weights(t, N, K, rng);
          check(w.view(), B, rng, nullptr);
          if (::testing::Test::HasFailure()) return;
        }
}

TEST(GemmAmx, BlockFormatsAwkwardSizes) {
  if (!has_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the OS refused the tile state)";
  std::mt19937 rng(kSeed + 1);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ8_0R16, DType::kQ4_0R16})
    for (int64_t N : {16, 48, 80})
      for (int64_t K : {32, 96, 416})
        for (int64_t B : {kAmxQuantMinTokens, int64_t(63), int64_t(70)}) {
          const Weights w = random_weights(t, is_r16(t) ? N : N + 3, K, rng);
          check(w.view(), B, rng, nullptr);
          if (::testing::Test::HasFailure()) return;
        }
}

TEST(GemmAmx, SlicesAndThreads) {
  if (!has_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the OS refused the tile state)";
  std::mt19937 rng(kSeed + 2);
  ThreadPool pool(2);
  // Row slices (an expert's rows, a head's rows): FP8 across a scale-block boundary, _R16 at groups.
  const Weights fp8 = random_weights(DType::kF8E4M3, 300, 1100, rng);
  check(fp8.view().slice_rows(5, 250), 70, rng, &pool);
  for (DType t : {DType::kQ8_0R16, DType::kQ4_0R16, DType::kQ8_0, DType::kBF16}) {
    const Weights w = random_weights(t, 320, 1088, rng);
    check(w.view().slice_rows(32, 272), 77, rng, &pool);
    check(w.view(), 48, rng, &pool);
  }
}

TEST(GemmAmx, Fp8NanCodesPropagate) {
  if (!has_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the OS refused the tile state)";
  std::mt19937 rng(kSeed + 3);
  Weights w = random_weights(DType::kF8E4M3, 40, 96, rng);
  w.bytes[size_t(7 * 96 + 50)] = 0x7f;  // row 7
  w.bytes[size_t(33 * 96 + 3)] = 0xff;  // row 33
  const int64_t B = 20;
  std::vector<float> x(size_t(B * 96), 0.5f), y(size_t(B * 40));
  matmul(y.data(), x.data(), w.view(), B, nullptr, MatmulKernel::kAmx);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < 40; ++n)
      EXPECT_EQ(std::isnan(y[size_t(b * 40 + n)]), n == 7 || n == 33) << "token " << b << " row " << n;
}

// The model code's products go through matmul_many too (MoE experts): same kernel, same bits.
TEST(GemmAmx, ManyEqualsOneByOne) {
  if (!has_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the OS refused the tile state)";
  std::mt19937 rng(kSeed + 4);
  ThreadPool pool(2);
  const Weights a = random_weights(DType::kBF16, 96, 256, rng), b = random_weights(DType::kQ8_0R16, 64, 256, rng);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> xa(size_t(40 * 256)), xb(size_t(60 * 256));
  for (auto& v : xa) v = nd(rng);
  for (auto& v : xb) v = nd(rng);
  std::vector<float> ya(size_t(40 * 96)), yb(size_t(60 * 64)), ra(ya.size()), rb(yb.size());
  const MatmulTask tasks[] = {{ya.data(), xa.data(), a.view(), 40}, {yb.data(), xb.data(), b.view(), 60}};
  matmul_many(tasks, &pool, MatmulKernel::kAmx);
  matmul(ra.data(), xa.data(), a.view(), 40, &pool, MatmulKernel::kAmx);
  matmul(rb.data(), xb.data(), b.view(), 60, &pool, MatmulKernel::kAmx);
  EXPECT_EQ(0, std::memcmp(ya.data(), ra.data(), ya.size() * 4));
  EXPECT_EQ(0, std::memcmp(yb.data(), rb.data(), yb.size() * 4));
}

}  // namespace
}  // namespace dseek
