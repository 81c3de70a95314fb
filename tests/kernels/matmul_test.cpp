// matmul / matmul_ref / matmul_transposed / dequantize_row against double-precision products of
// weights decoded in this file from the bit patterns (not through dseek's dtype helpers), for
// every weight dtype, awkward sizes, FP8 partial edge blocks and row-slice views.
#include "dseek/kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dseek/core/thread_pool.h"

#include "common/weight_view.h"

namespace dseek {
namespace {

constexpr uint32_t kSeed = 20240611;

// float32 accumulation over K products: each += rounds by at most 2^-24 of the running sum, whose
// magnitude is bounded by sum|w x|; the errors behave like a random walk, so sqrt(K) with a wide
// margin (worst case would be K * 6e-8, still below this for K <= 257).
constexpr double kF32AccumRelTol = 1e-5;

// ---- independent decoders (from the format definitions) ----

// bf16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
double decode_bf16(uint16_t h) {
  const int s = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
  const double mag = e == 0 ? std::ldexp(m / 128.0, -126) : std::ldexp(1.0 + m / 128.0, e - 127);
  return s ? -mag : mag;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
double decode_f16(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double mag = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, e - 15);
  return s ? -mag : mag;
}

// OCP E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, 0x7f/0xff are NaN.
double decode_e4m3(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 0xf, m = b & 0x7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

// A weight matrix in stored form plus its decoded values: W[i, j] in double.
struct TestMat {
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0, block = 128;
  std::vector<uint8_t> bytes;
  std::vector<float> scale_inv;  // (ceil(rows/block), ceil(cols/block)), FP8 only
  std::vector<double> w;         // (rows, cols) decoded

  MatView view() const { return weight_view(bytes.data(), dtype, rows, cols, block, scale_inv.data()); }
};

std::string dtype_str(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF8E4M3:
      return "F8_E4M3";
    default:
      return "?";
  }
}

TestMat make_mat(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng, int64_t block = 128) {
  TestMat m;
  m.dtype = dtype;
  m.rows = rows;
  m.cols = cols;
  m.block = block;
  const size_t n = size_t(rows * cols);
  m.w.resize(n);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  switch (dtype) {
    case DType::kF32: {
      m.bytes.resize(n * 4);
      for (size_t i = 0; i < n; ++i) {
        const float v = uni(rng);
        std::memcpy(m.bytes.data() + 4 * i, &v, 4);
        m.w[i] = v;
      }
      break;
    }
    case DType::kBF16: {
      m.bytes.resize(n * 2);
      for (size_t i = 0; i < n; ++i) {
        // exponents 120..130 (values ~2^-7 .. 2^3), random sign and mantissa; every 17th a zero
        uint16_t h = i % 17 == 0 ? 0 : uint16_t((rng() & 1) << 15 | (120 + rng() % 11) << 7 | (rng() & 0x7f));
        std::memcpy(m.bytes.data() + 2 * i, &h, 2);
        m.w[i] = decode_bf16(h);
      }
      break;
    }
    case DType::kF16: {
      m.bytes.resize(n * 2);
      for (size_t i = 0; i < n; ++i) {
        // exponents 8..20 plus some subnormals (exponent field 0) to exercise that decode path
        const uint16_t e = i % 13 == 0 ? 0 : uint16_t(8 + rng() % 13);
        uint16_t h = uint16_t((rng() & 1) << 15 | e << 10 | (rng() & 0x3ff));
        std::memcpy(m.bytes.data() + 2 * i, &h, 2);
        m.w[i] = decode_f16(h);
      }
      break;
    }
    case DType::kF8E4M3: {
      m.bytes.resize(n);
      const int64_t sr = (rows + block - 1) / block, sc = (cols + block - 1) / block;
      m.scale_inv.resize(size_t(sr * sc));
      // Distinct scales per block so that a wrong block index changes the result visibly.
      std::uniform_real_distribution<float> sdist(1e-3f, 4e-3f);
      for (auto& s : m.scale_inv) s = sdist(rng);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          uint8_t b;
          do b = uint8_t(rng());
          while ((b & 0x7f) == 0x7f);  // skip the two NaN patterns
          m.bytes[size_t(i * cols + j)] = b;
          // The stored contract: W = decode(q) * scale_inv[i / block, j / block]. float() because the
          // kernel forms that product in float32; decode(q) * scale is exact in double, so float() of
          // it is the correctly rounded float product.
          m.w[size_t(i * cols + j)] =
              double(float(decode_e4m3(b) * double(m.scale_inv[size_t(i / block * sc + j / block)])));
        }
      break;
    }
    default:
      ADD_FAILURE() << "unsupported test dtype";
  }
  return m;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = uni(rng);
  return v;
}

// Compares y (B, N) with the double product x (B, K) · W[r0 : r0 + N]ᵀ.
void expect_matmul_close(const float* y, const float* x, const TestMat& m, int64_t r0, int64_t N, int64_t B,
                         const std::string& label) {
  const int64_t K = m.cols;
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1;
  int bad = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = m.w[size_t((r0 + n) * K + k)] * double(x[b * K + k]);
        ref += p;
        mag += std::fabs(p);
      }
      const double got = y[b * N + n];
      const double diff = std::fabs(got - ref);
      const double tol = kF32AccumRelTol * std::sqrt(double(std::max<int64_t>(K, 1))) * mag;
      if (diff > max_abs) {
        max_abs = diff;
        worst = b * N + n;
      }
      if (mag > 0) max_rel = std::max(max_rel, diff / mag);
      if (!(diff <= tol) && bad++ < 5)
        ADD_FAILURE() << label << ": y[" << b << ", " << n << "] = " << got << ", reference " << ref << " (|diff| "
                      << diff << " > tol " << tol << ")";
    }
  EXPECT_EQ(bad, 0) << label << ": " << bad << " mismatches; max |diff| " << max_abs << " at flat index " << worst
                    << ", max |diff| / sum|w x| " << max_rel;
}

std::string case_label(uint32_t seed, const TestMat& m, int64_t B) {
  std::ostringstream s;
  s << "seed " << seed << " " << dtype_str(m.dtype) << " W (" << m.rows << ", " << m.cols << ") block " << m.block
    << " B " << B;
  return s.str();
}

constexpr DType kAllWeightDTypes[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3};

// ---- tests ----

TEST(Matmul, EveryDtypeAwkwardSizesAgainstDoubleReference) {
  const int64_t sizes[] = {1, 7, 127, 129, 130, 257};
  const int64_t batches[] = {1, 3, 17};
  std::mt19937 rng(kSeed);
  for (DType dt : kAllWeightDTypes)
    for (int64_t rows : sizes)
      for (int64_t cols : sizes)
        for (int64_t B : batches) {
          TestMat m = make_mat(dt, rows, cols, rng);
          // +1: misaligned activations and outputs (not 16- or 32-byte aligned)
          std::vector<float> xbuf = random_vec(size_t(B * cols) + 1, rng);
          std::vector<float> ybuf(size_t(B * rows) + 1, NAN), yref(size_t(B * rows), NAN);
          const float* x = xbuf.data() + 1;
          float* y = ybuf.data() + 1;
          const std::string label = case_label(kSeed, m, B);
          // The scalar kernel: the SIMD kernels have their own tolerances in matmul_fast_test.cpp.
          matmul(y, x, m.view(), B, nullptr, MatmulKernel::kScalar);
          expect_matmul_close(y, x, m, 0, rows, B, label + " matmul");
          matmul_ref(yref.data(), x, m.view(), B);
          expect_matmul_close(yref.data(), x, m, 0, rows, B, label + " matmul_ref");
          if (::testing::Test::HasFailure()) return;  // one failing case is enough to read
        }
}

TEST(Matmul, DequantizeRowDecodesEveryDtype) {
  std::mt19937 rng(kSeed + 1);
  for (DType dt : kAllWeightDTypes) {
    TestMat m = make_mat(dt, 7, 130, rng);
    std::vector<float> row(size_t(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      dequantize_row(row.data(), m.view(), r);
      for (int64_t j = 0; j < m.cols; ++j)
        ASSERT_EQ(double(row[size_t(j)]), m.w[size_t(r * m.cols + j)])
            << dtype_str(dt) << " W[" << r << ", " << j << "] seed " << kSeed + 1;
    }
    // A column range inside the row, starting off a block boundary.
    std::vector<float> part(50);
    dequantize_row_range(part.data(), m.view(), 3, 77, 50);
    for (int64_t j = 0; j < 50; ++j)
      ASSERT_EQ(double(part[size_t(j)]), m.w[size_t(3 * m.cols + 77 + j)]) << dtype_str(dt);
  }
}

// FP8 with rows/cols not multiples of the block: the last block row/column is partial.
void check_fp8_partial_blocks(int64_t rows, int64_t cols, int64_t block, uint32_t seed) {
  std::mt19937 rng(seed);
  TestMat m = make_mat(DType::kF8E4M3, rows, cols, rng, block);
  const int64_t sc = (cols + block - 1) / block;
  ASSERT_EQ(m.view().scale_cols(), sc);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    dequantize_row(row.data(), m.view(), i);
    for (int64_t j = 0; j < cols; ++j) {
      const double want = double(
          float(decode_e4m3(m.bytes[size_t(i * cols + j)]) * double(m.scale_inv[size_t(i / block * sc + j / block)])));
      ASSERT_EQ(double(row[size_t(j)]), want) << "W[" << i << ", " << j << "] block (" << i / block << ", " << j / block
                                              << ") of " << rows << "x" << cols << "/" << block;
    }
  }
  for (int64_t B : {1, 3, 17}) {
    std::vector<float> x = random_vec(size_t(B * cols), rng), y(size_t(B * rows));
    // Float32 products (AMX and avx512bf16 prefill round FP8 to bf16: matmul_fast_test.cpp checks that).
    matmul(y.data(), x.data(), m.view(), B, nullptr, matmul_float32_kernel());
    expect_matmul_close(y.data(), x.data(), m, 0, rows, B, case_label(seed, m, B));
  }
}

TEST(Matmul, Fp8PartialEdgeBlocks128) { check_fp8_partial_blocks(130, 129, 128, kSeed + 2); }
TEST(Matmul, Fp8ManyPartialBlocks4) { check_fp8_partial_blocks(10, 9, 4, kSeed + 3); }

// ue8m0 scales (DeepSeek V3.1+ checkpoints) are powers of two: W is decode(q) * 2^e exactly.
TEST(Matmul, Fp8PowerOfTwoScalesDecodeExactly) {
  const int64_t rows = 10, cols = 9, block = 4;
  const int exps[] = {-7, 3, 0, -20, 10, -1, 5, -12, 7};  // (3, 3) blocks
  std::mt19937 rng(kSeed + 4);
  TestMat m = make_mat(DType::kF8E4M3, rows, cols, rng, block);
  for (size_t i = 0; i < m.scale_inv.size(); ++i) m.scale_inv[i] = std::ldexp(1.0f, exps[i]);
  std::vector<float> row(static_cast<size_t>(cols)), y(static_cast<size_t>(rows)), x(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    dequantize_row(row.data(), m.view(), i);
    for (int64_t j = 0; j < cols; ++j)
      ASSERT_EQ(double(row[size_t(j)]),
                std::ldexp(decode_e4m3(m.bytes[size_t(i * cols + j)]), exps[(i / block) * 3 + j / block]))
          << "W[" << i << ", " << j << "]";
  }
  // A one-hot x picks out column j exactly.
  for (int64_t j = 0; j < cols; ++j) {
    std::fill(x.begin(), x.end(), 0.f);
    x[size_t(j)] = 1.f;
    matmul(y.data(), x.data(), m.view(), 1);
    for (int64_t i = 0; i < rows; ++i)
      ASSERT_EQ(double(y[size_t(i)]),
                std::ldexp(decode_e4m3(m.bytes[size_t(i * cols + j)]), exps[(i / block) * 3 + j / block]))
          << "column " << j << " row " << i;
  }
}

// Hand case: 2x2 blocks of 2x2, q = 1.0 (0x38) everywhere, scale_inv = [[1, 2], [4, 8]].
TEST(Matmul, Fp8HandCase) {
  const uint8_t one = 0x38;  // e = 7, m = 0 -> 1.0
  ASSERT_EQ(decode_e4m3(one), 1.0);
  std::vector<uint8_t> q(16, one);
  q[5] = 0xC0;  // W[1, 1]: sign 1, e = 8, m = 0 -> -2.0
  const float scales[] = {1, 2, 4, 8};
  MatView w;
  w.data = q.data();
  w.dtype = DType::kF8E4M3;
  w.rows = 4;
  w.cols = 4;
  w.block = 2;
  w.scale_inv = scales;
  const float x[] = {1, 10, 100, 1000};
  float y[4];
  matmul(y, x, w, 1);
  // row 0: 1*1 + 1*10 + 2*100 + 2*1000; row 1: 1 - 2*10 + 200 + 2000; rows 2, 3: 4*11 + 8*1100
  EXPECT_EQ(y[0], 2211.f);
  EXPECT_EQ(y[1], 2181.f);
  EXPECT_EQ(y[2], 8844.f);
  EXPECT_EQ(y[3], 8844.f);
}

TEST(Matmul, EmptySizes) {
  std::mt19937 rng(kSeed + 5);
  for (DType dt : kAllWeightDTypes) {
    // K = 0: every output is the empty sum.
    TestMat m = make_mat(dt, 3, 0, rng);
    if (dt == DType::kF8E4M3) m.scale_inv.assign(1, 1.f);
    if (m.bytes.empty()) m.bytes.resize(1);  // non-null data pointer
    float y[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    const float x[1] = {0};
    matmul(y, x, m.view(), 2);
    for (float v : y) EXPECT_EQ(v, 0.f) << dtype_str(dt);
    // B = 0: nothing is written.
    TestMat m2 = make_mat(dt, 3, 5, rng);
    float y2[3] = {7, 7, 7};
    matmul(y2, x, m2.view(), 0);
    for (float v : y2) EXPECT_EQ(v, 7.f) << dtype_str(dt);
  }
}

// Row slices (MLA's per-head views of kv_b_proj): rows [off, off + n) must use the FP8 scale rows of
// the whole matrix, (off + r) / block, not r / block.
TEST(Matmul, SliceRowsUsesRightScaleRows) {
  const uint32_t seed = kSeed + 6;
  std::mt19937 rng(seed);
  for (DType dt : kAllWeightDTypes) {
    TestMat m = make_mat(dt, 10, 9, rng, /*block=*/4);
    const MatView full = m.view();
    struct Slice {
      int64_t begin, n;
    };
    for (Slice s : {Slice{3, 5}, Slice{4, 4}, Slice{8, 2}, Slice{0, 10}, Slice{9, 1}, Slice{1, 7}}) {
      const MatView v = full.slice_rows(s.begin, s.n);
      std::ostringstream lab;
      lab << "seed " << seed << " " << dtype_str(dt) << " slice_rows(" << s.begin << ", " << s.n << ")";
      std::vector<float> row(9);
      for (int64_t r = 0; r < s.n; ++r) {
        dequantize_row(row.data(), v, r);
        for (int64_t j = 0; j < 9; ++j)
          ASSERT_EQ(double(row[size_t(j)]), m.w[size_t((s.begin + r) * 9 + j)])
              << lab.str() << " row " << r << " col " << j;
      }
      for (int64_t B : {1, 3}) {
        std::vector<float> x = random_vec(size_t(B * 9), rng), y(size_t(B * s.n));
        matmul(y.data(), x.data(), v, B, nullptr, MatmulKernel::kScalar);
        expect_matmul_close(y.data(), x.data(), m, s.begin, s.n, B, lab.str() + " matmul");
        matmul_ref(y.data(), x.data(), v, B);
        expect_matmul_close(y.data(), x.data(), m, s.begin, s.n, B, lab.str() + " matmul_ref");
      }
    }
    // A slice of a slice accumulates the offsets: rows 3 + 2 = 5 .. 7.
    const MatView vv = full.slice_rows(3, 6).slice_rows(2, 3);
    EXPECT_EQ(vv.row_offset, 5);
    std::vector<float> x = random_vec(9, rng), y(3);
    matmul(y.data(), x.data(), vv, 1, nullptr, MatmulKernel::kScalar);
    expect_matmul_close(y.data(), x.data(), m, 5, 3, 1, dtype_str(dt) + " slice of slice");
  }
}

// y (B, K) = x (B, N) · W against the double sum over n of x[b, n] W[r0 + n, k].
void expect_transposed_close(const float* y, const float* x, const TestMat& m, int64_t r0, int64_t N, int64_t B,
                             const std::string& label) {
  const int64_t K = m.cols;
  int bad = 0;
  double max_abs = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      double ref = 0, mag = 0;
      for (int64_t n = 0; n < N; ++n) {
        const double p = double(x[b * N + n]) * m.w[size_t((r0 + n) * K + k)];
        ref += p;
        mag += std::fabs(p);
      }
      const double diff = std::fabs(double(y[b * K + k]) - ref);
      max_abs = std::max(max_abs, diff);
      const double tol = kF32AccumRelTol * std::sqrt(double(std::max<int64_t>(N, 1))) * mag;
      if (!(diff <= tol) && bad++ < 5)
        ADD_FAILURE() << label << ": y[" << b << ", " << k << "] = " << y[b * K + k] << ", reference " << ref
                      << " (|diff| " << diff << " > tol " << tol << ")";
    }
  EXPECT_EQ(bad, 0) << label << ": max |diff| " << max_abs;
}

TEST(Matmul, TransposedEqualsTransposeProduct) {
  const uint32_t seed = kSeed + 7;
  std::mt19937 rng(seed);
  const int64_t sizes[] = {1, 7, 129, 257, 300};  // 300 > the kernel's 256-column chunk
  for (DType dt : kAllWeightDTypes)
    for (int64_t rows : sizes)
      for (int64_t cols : sizes)
        for (int64_t B : {1, 3}) {
          TestMat m = make_mat(dt, rows, cols, rng);
          std::vector<float> x = random_vec(size_t(B * rows), rng), y(size_t(B * cols), NAN);
          matmul_transposed(y.data(), x.data(), m.view(), B);
          expect_transposed_close(y.data(), x.data(), m, 0, rows, B, case_label(seed, m, B) + " transposed");
          if (::testing::Test::HasFailure()) return;
        }
  // Whole 32-column blocks take the AVX-512 fast path for BF16 (rows_t; Q8_0/Q4_0 in
  // matmul_fast_test.cpp): a full 256-column tile, a tile and a partial one, and one block, on a row
  // slice as MLA's W_UK is.
  for (int64_t cols : {32, 288, 512})
    for (int64_t B : {1, 3}) {
      TestMat m = make_mat(DType::kBF16, 21, cols, rng);
      std::vector<float> x = random_vec(size_t(B * 13), rng), y(size_t(B * cols), NAN);
      matmul_transposed(y.data(), x.data(), m.view().slice_rows(5, 13), B);
      expect_transposed_close(y.data(), x.data(), m, 5, 13, B, case_label(seed, m, B) + " slice_rows(5, 13) transposed");
      if (::testing::Test::HasFailure()) return;
    }
  // FP8 whole 32-column widths take rows_t_fp8 on AVX-512: a row slice crossing a 128-row scale
  // block (rows 120..139), partial and whole 256-column tiles, and a column block of 32 as well.
  for (int64_t block : {128, 32})
    for (int64_t cols : {32, 288, 512})
      for (int64_t B : {1, 3}) {
        TestMat m = make_mat(DType::kF8E4M3, 150, cols, rng, block);
        std::vector<float> x = random_vec(size_t(B * 20), rng), y(size_t(B * cols), NAN);
        matmul_transposed(y.data(), x.data(), m.view().slice_rows(120, 20), B);
        expect_transposed_close(y.data(), x.data(), m, 120, 20, B,
                                case_label(seed, m, B) + " block " + std::to_string(block) + " slice_rows(120, 20) transposed");
        if (::testing::Test::HasFailure()) return;
      }
  // A NaN code (0x7F / 0xFF) makes exactly its column NaN, as matmul_ref's product does.
  {
    TestMat m = make_mat(DType::kF8E4M3, 40, 288, rng);
    m.bytes[size_t(7 * 288 + 260)] = 0xff;
    std::vector<float> x = random_vec(40, rng), y(288);
    matmul_transposed(y.data(), x.data(), m.view(), 1);
    for (int64_t k = 0; k < 288; ++k) EXPECT_EQ(std::isnan(y[size_t(k)]), k == 260) << "FP8 NaN code, column " << k;
  }
  // On an FP8 row slice with partial blocks.
  TestMat m = make_mat(DType::kF8E4M3, 10, 9, rng, 4);
  const MatView v = m.view().slice_rows(3, 6);
  std::vector<float> x = random_vec(12, rng), y(18);
  matmul_transposed(y.data(), x.data(), v, 2);
  expect_transposed_close(y.data(), x.data(), m, 3, 6, 2, "FP8 slice_rows(3, 6) transposed");
}

// matmul_transposed(x, W) == matmul(x, Wᵀ) with Wᵀ stored as its own F32 matrix: a hand-built
// transpose, compared exactly where the F32 sums are exact (small integers).
TEST(Matmul, TransposedHandCase) {
  const float w[] = {1, 2, 3,   //
                     4, 5, 6};  // (N = 2, K = 3)
  MatView v;
  v.data = w;
  v.dtype = DType::kF32;
  v.rows = 2;
  v.cols = 3;
  const float x[] = {1, -1,   //
                     2, 10};  // (B = 2, N = 2)
  float y[6];
  matmul_transposed(y, x, v, 2);
  const float want[] = {-3, -3, -3, 42, 54, 66};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[i], want[i]) << i;
}

// The pool splits output rows; with the scalar kernel each output is still one dot product in index
// order, so the result must equal matmul_ref bit for bit (SIMD kernels reorder sums: matmul_fast_test).
TEST(Matmul, ThreadPoolEqualsRefExactly) {
  const uint32_t seed = kSeed + 8;
  std::mt19937 rng(seed);
  struct Case {
    int64_t rows, cols, B;
  };
  // N * K * B >= 2^16 so the pool is used (kernel threshold), plus one below it.
  const Case cases[] = {{257, 257, 1}, {130, 129, 17}, {1000, 67, 3}, {7, 130, 3}, {129, 1, 17}};
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (DType dt : kAllWeightDTypes)
      for (Case c : cases) {
        TestMat m = make_mat(dt, c.rows, c.cols, rng);
        std::vector<float> x = random_vec(size_t(c.B * c.cols), rng);
        std::vector<float> y(size_t(c.B * c.rows), NAN), yref(size_t(c.B * c.rows), NAN);
        matmul(y.data(), x.data(), m.view(), c.B, &pool, MatmulKernel::kScalar);
        matmul_ref(yref.data(), x.data(), m.view(), c.B);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_EQ(std::memcmp(&y[i], &yref[i], 4), 0) << case_label(seed, m, c.B) << " threads " << threads
                                                        << " index " << i << ": " << y[i] << " vs " << yref[i];
      }
  }
}

TEST(Matmul, MatBytesCountsScales) {
  std::mt19937 rng(kSeed + 9);
  TestMat m = make_mat(DType::kF8E4M3, 130, 129, rng, 128);
  EXPECT_EQ(mat_bytes(m.view()), 130 * 129 + 2 * 2 * 4);
  TestMat b = make_mat(DType::kBF16, 7, 9, rng);
  EXPECT_EQ(mat_bytes(b.view()), 7 * 9 * 2);
}

}  // namespace
}  // namespace dseek
