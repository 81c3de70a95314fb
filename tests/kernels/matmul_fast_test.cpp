// The run-time dispatched SIMD matmul kernels (matmul with an explicit MatmulKernel) against the
// scalar reference matmul_ref, for every weight dtype, on random inputs of awkward sizes,
// misaligned pointers, FP8 partial edge blocks and row slices; the Q8_0 / Q4_0 formats' quantizers,
// their round-trip error bounds and the integer-activation model matmul_qact_ref.
//
// Every kernel family this CPU supports is run (on an AVX-512 machine: scalar, avx2, avx512,
// avx512bf16), so the AVX2 and scalar paths are covered here too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_kernels.h"
#include "dseek/kernels/matmul_quant.h"

#include "common/weight_view.h"

namespace dseek {
namespace {

constexpr uint32_t kSeed = 6060601;

// F32 weights: every kernel must equal matmul_ref bit for bit (see matmul_avx512.cpp).
//
// Tolerances of the other formats, relative to S = sum_k |W[n, k] * x[b, k]| of each output (so cancellation does not
// make them meaningless):
//
// Float32 activations (F32, F16, BF16 widened, FP8 decoded exactly): the kernels see exactly the
// weights matmul_ref sees and only sum in another order (16 or 8 lanes, FMA). Each float32 sum has
// a worst-case error of (K - 1) * 2^-24 * S; K <= 1100 here, both sides err: 2 * 1100 * 6e-8 = 1.3e-4
// is the hard bound, the random-walk size is ~100x smaller. 2e-5 catches any wrong index or scale.
constexpr double kFloatActTol = 2e-5;
// BF16 weights with bf16 activations (kAvx512Bf16): each x is rounded to 8 significant bits
// (nearest even), |dx| <= 2^-8 |x|, so |error| <= 2^-8 * S plus the float32 sums above.
constexpr double kBf16ActTol = 0.00390625 + kFloatActTol;
// AMX prefill (kAmx, B >= kAmxMinTokens / kAmxQuantMinTokens) of FP8 / Q8_0 / Q4_0 weights: weights decoded exactly, then
// both weights and activations rounded to bf16, so |w'x' - wx| <= (2 * 2^-8 + 2^-16) |wx| plus the
// float32 sums. (BF16 weights: kBf16ActTol, only the activations are rounded.)
constexpr double kBf16BothTol = 2 * 0.00390625 + 0.00390625 * 0.00390625 + kFloatActTol;
// Q8_0 / Q4_0 kernels against matmul_qact_ref: the same integer block dot products, only the
// float32 sum over blocks and lanes differs in order.
constexpr double kQActModelTol = kFloatActTol;
// Q8_0 / Q4_0 kernels against matmul_ref: activation quantization moves x by at most
// dx / 2 = max|x_block| / 254 per element, so |error| <= sum_blocks (amax_b / 254) * sum_b |W|.
// That bound is computed per output (qact_bound below), times 1.01 for the float rounding of 127/amax.

struct Mat {
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0, block = 128;
  std::vector<uint8_t> storage;  // bytes + misalignment slack
  size_t offset = 0;             // data = storage.data() + offset
  std::vector<float> scale_inv;  // FP8: (ceil(rows/block), ceil(cols/block))

  MatView view() const { return weight_view(storage.data() + offset, dtype, rows, cols, block, scale_inv.data()); }
};

size_t elem_bytes_for_misalign(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    default: return 1;
  }
}

// Random weights, stored `misalign` elements past a 64-byte boundary.
Mat random_mat(DType t, int64_t rows, int64_t cols, std::mt19937& rng, int64_t block = 128, size_t misalign = 1) {
  Mat m;
  m.dtype = t;
  m.rows = rows;
  m.cols = cols;
  m.block = block;
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t rb = quant_row_bytes(t, cols);
  // Bytes around the data are 0xff (NaN in every float format): a kernel that lets them into a
  // sum (e.g. reading whole lines around misaligned rows) makes NaN outputs.
  m.storage.assign(size_t(rows * rb) + misalign * elem_bytes_for_misalign(t) + 128, 0xff);
  m.offset = (64 - reinterpret_cast<uintptr_t>(m.storage.data()) % 64) % 64 + misalign * elem_bytes_for_misalign(t);
  uint8_t* p = m.storage.data() + m.offset;
  std::vector<float> f(size_t(rows * cols));
  for (auto& v : f) v = nd(rng);
  switch (t) {
    case DType::kF32: std::memcpy(p, f.data(), f.size() * 4); break;
    case DType::kBF16:
    case DType::kF16:
      for (size_t i = 0; i < f.size(); ++i) {
        const uint16_t h = t == DType::kBF16 ? f32_to_bf16(f[i]) : f32_to_f16(f[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::kF8E4M3: {
      std::uniform_int_distribution<int> byte(0, 255);
      for (size_t i = 0; i < f.size(); ++i) {
        int b;
        do b = byte(rng);
        while ((b & 0x7f) == 0x7f);  // no NaN codes here (Fp8NanPropagates has them)
        p[i] = uint8_t(b);
      }
      const int64_t sr = (rows + block - 1) / block, sc = (cols + block - 1) / block;
      std::uniform_real_distribution<float> su(0.5f, 2.f);
      m.scale_inv.resize(size_t(sr * sc));
      for (auto& s : m.scale_inv) s = su(rng) * 1e-2f;
      break;
    }
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ8_0R16:  // rows % 16 == 0
    case DType::kQ4_0R16: quantize_rows(t, p, f.data(), rows, cols); break;
    default: ADD_FAILURE() << "no generator for " << dtype_name(t);
  }
  return m;
}

// x (B, K), misaligned by one float.
struct Act {
  std::vector<float> storage;
  float* data() { return storage.data() + 1; }
};
Act random_act(int64_t B, int64_t K, std::mt19937& rng) {
  Act a;
  a.storage.resize(size_t(B * K) + 2);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : a.storage) v = nd(rng);
  return a;
}

// S[b, n] = sum_k |W[n, k] x[b, k]| in double.
std::vector<double> abs_products(const MatView& w, const float* x, int64_t B) {
  std::vector<float> row(size_t(w.cols));
  std::vector<double> s(size_t(B * w.rows), 0.0);
  for (int64_t n = 0; n < w.rows; ++n) {
    dequantize_row(row.data(), w, n);
    for (int64_t b = 0; b < B; ++b) {
      double acc = 0;
      for (int64_t k = 0; k < w.cols; ++k) acc += std::fabs(double(row[size_t(k)]) * x[b * w.cols + k]);
      s[size_t(b * w.rows + n)] = acc;
    }
  }
  return s;
}

// Per-output bound on |matmul_ref - int8-activation product| (see the constants above).
std::vector<double> qact_bound(const MatView& w, const float* x, int64_t B) {
  std::vector<float> row(size_t(w.cols));
  std::vector<double> s(size_t(B * w.rows), 0.0);
  const int64_t nb = w.cols / kQuantBlock;
  for (int64_t n = 0; n < w.rows; ++n) {
    dequantize_row(row.data(), w, n);
    for (int64_t b = 0; b < B; ++b) {
      double acc = 0;
      for (int64_t j = 0; j < nb; ++j) {
        double amax = 0, wsum = 0;
        for (int64_t i = 0; i < kQuantBlock; ++i) {
          amax = std::max(amax, std::fabs(double(x[b * w.cols + j * kQuantBlock + i])));
          wsum += std::fabs(double(row[size_t(j * kQuantBlock + i)]));
        }
        acc += amax / 254.0 * wsum * 1.01;
      }
      s[size_t(b * w.rows + n)] = acc;
    }
  }
  return s;
}

// Fails with the worst element when |got - want| > tol * S + extra (+ 1e-30 for exact zeros).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& S,
                  double tol, const std::vector<double>* extra, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  size_t worst_i = 0;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(double(got[i]) - double(want[i]));
    const double lim = tol * S[i] + (extra ? (*extra)[i] : 0.0) + 1e-30;
    const bool ok = diff <= lim && std::isfinite(got[i]) == std::isfinite(want[i]);
    if (!ok) ++bad;
    const double ratio = diff / lim;
    if (!ok || ratio > worst) {
      if (!ok && bad > 1 && ratio <= worst) continue;
      worst = std::isfinite(ratio) ? ratio : 1e300;
      worst_i = i;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " outside tolerance; worst at index "
                    << worst_i << ": got " << got[worst_i] << " want " << want[worst_i] << " (S = " << S[worst_i]
                    << ", |diff| / limit = " << worst << ")";
}

std::vector<MatmulKernel> supported_kernels() {
  std::vector<MatmulKernel> ks;
  for (int k = int(MatmulKernel::kScalar); k < int(MatmulKernel::kSentinel); ++k)
    if (matmul_kernel_supported(MatmulKernel(k))) ks.push_back(MatmulKernel(k));
  return ks;
}

std::string label(DType t, MatmulKernel k, int64_t N, int64_t K, int64_t B) {
  std::ostringstream os;
  os << dtype_name(t) << " kernel=" << matmul_kernel_family_name(k) << " (" << matmul_kernel_name(t, k) << ") N=" << N
     << " K=" << K << " B=" << B << " seed=" << kSeed;
  return os.str();
}

// Runs every supported kernel on one (dtype, N, K, B) case and checks it against matmul_ref.
void check_case(DType t, int64_t N, int64_t K, int64_t B, std::mt19937& rng, ThreadPool& pool, int64_t block = 128,
                int64_t slice_begin = -1, int64_t slice_rows = 0, size_t misalign = 1) {
  Mat m = random_mat(t, N, K, rng, block, misalign);
  MatView w = m.view();
  if (slice_begin >= 0) w = w.slice_rows(slice_begin, slice_rows);
  Act x = random_act(B, K, rng);
  const int64_t n_out = w.rows;
  std::vector<float> ref(size_t(B * n_out));
  matmul_ref(ref.data(), x.data(), w, B);
  const std::vector<double> S = abs_products(w, x.data(), B);
  const bool q = is_block_quantized(t);
  std::vector<float> model;
  std::vector<double> qbound;
  if (q) {
    model.resize(ref.size());
    matmul_qact_ref(model.data(), x.data(), w, B);
    qbound = qact_bound(w, x.data(), B);
    expect_close(model, ref, S, kFloatActTol, &qbound, label(t, MatmulKernel::kScalar, n_out, K, B) + " qact model");
  }
  for (MatmulKernel k : supported_kernels()) {
    // y misaligned by one float, with sentinels around it to catch stray writes.
    std::vector<float> buf(size_t(B * n_out) + 3, -7.f);
    float* y = buf.data() + 1;
    matmul(y, x.data(), w, B, &pool, k);
    EXPECT_EQ(buf.front(), -7.f);
    EXPECT_EQ(buf[buf.size() - 2], -7.f);
    std::vector<float> got(y, y + B * n_out);
    const std::string what = label(t, k, n_out, K, B);
    // Q8_0 / Q4_0 use int8 activations at every B (prefill: the int8 GEMM, gemm_q8.h), except on
    // AMX tiles (gemm_amx.h), where every format but F32 / F16 has bf16 products from kAmxMinTokens.
    const bool amx = k == MatmulKernel::kAmx && B >= (q ? kAmxQuantMinTokens : kAmxMinTokens) && t != DType::kF32 &&
                     t != DType::kF16;
    // kAvx512Bf16 prefill of FP8 decodes the rows into bf16 panels as the AMX tiles do.
    const bool fp8_panels = t == DType::kF8E4M3 && k == MatmulKernel::kAvx512Bf16 && B >= kFp8GemmMinTokens &&
                            w.block % 32 == 0;
    const bool int_act = q && k != MatmulKernel::kScalar && !amx;
    if (amx || fp8_panels) {
      expect_close(got, ref, S, t == DType::kBF16 ? kBf16ActTol : kBf16BothTol, nullptr,
                   what + (amx ? " (amx tiles)" : " (bf16 panels)"));
    } else if (int_act) {
      expect_close(got, model, S, kQActModelTol, nullptr, what + " vs matmul_qact_ref");
      expect_close(got, ref, S, kFloatActTol, &qbound, what + " vs matmul_ref");
    } else if (t == DType::kF32) {
      // F32 kernels keep matmul_ref's arithmetic bit for bit (the V3.2 golden test needs it).
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::memcmp(&got[i], &ref[i], 4), 0) << what << " index " << i << ": " << got[i] << " vs " << ref[i];
    } else {
      const bool bf16_act = t == DType::kBF16 && (k == MatmulKernel::kAvx512Bf16 || k == MatmulKernel::kAmx);
      expect_close(got, ref, S, bf16_act ? kBf16ActTol : kFloatActTol, nullptr, what);
    }
  }
}

TEST(MatmulFast, ReportsKernelChoice) {
  std::cout << "cpu: " << cpu_features_str(cpu_features())
            << "; best kernel: " << matmul_kernel_family_name(matmul_best_kernel()) << "\n";
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kQ8_0, DType::kQ4_0}) {
    EXPECT_NE(matmul_kernel_name(t), "unsupported");
    std::cout << "  " << dtype_name(t) << ": " << matmul_kernel_name(t) << "\n";
  }
  EXPECT_EQ(matmul_kernel_name(DType::kI32), "unsupported");
  EXPECT_TRUE(matmul_kernel_supported(MatmulKernel::kScalar));
  EXPECT_TRUE(matmul_kernel_supported(matmul_best_kernel()));
}

TEST(MatmulFast, FloatFormatsAwkwardSizes) {
  std::mt19937 rng(kSeed);
  ThreadPool pool(2);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3})
    for (int64_t N : {1, 3, 17, 130})
      for (int64_t K : {1, 15, 33, 130, 257})
        for (int64_t B : {1, 2, 3, 4, 5, 7, 8, 9, 33}) check_case(t, N, K, B, rng, pool);
  // BF16 and FP8 at every width of the small-batch kernel (1-6 groups of 16 tokens, ragged last
  // group) and just past it (the packed GEMM).
  for (DType t : {DType::kBF16, DType::kF8E4M3})
    for (int64_t N : {1, 25, 70})
      for (int64_t K : {15, 130, 257})
        for (int64_t B : {16, 17, 40, 48, 64, 65, 80, 90, 96, 97}) check_case(t, N, K, B, rng, pool);
}

// BF16 rows in whole 64-byte lines read line by line against shifted activations (the decode row
// streams, matmul_avx512.cpp) wherever the data starts: HF-written files start tensors at any
// 8-byte offset. Every element offset within a line, rows of 1 to 3 lines plus a long one, 1-5
// tokens (lockstep rows, spread rows and single rows), enough rows for every stream shape.
TEST(MatmulFast, Bf16RowsAtEveryLineOffset) {
  std::mt19937 rng(kSeed + 5);
  ThreadPool pool(2);
  for (size_t lead = 0; lead < 32; ++lead)
    for (int64_t K : {32, 64, 96})
      for (int64_t B : {1, 2, 5}) check_case(DType::kBF16, 200, K, B, rng, pool, 128, -1, 0, lead);
  for (size_t lead : {0, 4, 31})
    for (int64_t B : {1, 3, 4}) check_case(DType::kBF16, 300, 2048, B, rng, pool, 128, -1, 0, lead);
}

// FP8 decode rows (1-4 tokens) likewise, read in whole lines against activations scaled in line
// space (fp8_dot_avx512.cpp) where K % 64 == 0: every third byte offset within a line, block sizes
// whose boundaries the shift moves inside a 16-column step, NaN bytes around the data.
TEST(MatmulFast, Fp8RowsAtEveryLineOffset) {
  std::mt19937 rng(kSeed + 6);
  ThreadPool pool(2);
  for (size_t lead = 0; lead < 64; lead += 3)
    for (int64_t K : {64, 192})
      for (int64_t B : {1, 3}) check_case(DType::kF8E4M3, 70, K, B, rng, pool, 128, -1, 0, lead);
  for (size_t lead : {1, 32, 63})
    for (int64_t block : {32, 64})
      for (int64_t B : {2, 4}) check_case(DType::kF8E4M3, 40, 256, B, rng, pool, block, -1, 0, lead);
  check_case(DType::kF8E4M3, 300, 2048, 1, rng, pool, 128, -1, 0, 40);
}

TEST(MatmulFast, LargeKAndManyTokens) {
  // K = 1100 (8 full FP8 blocks + a partial one, not a multiple of 16 or 32), B = 70 crosses the
  // kernels' 64-token blocks; N * K * B is large enough for the pool to split rows.
  std::mt19937 rng(kSeed + 1);
  ThreadPool pool(2);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3}) check_case(t, 67, 1100, 70, rng, pool);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) check_case(t, 67, 1088, 70, rng, pool);
}

TEST(MatmulFast, QuantFormatsAwkwardSizes) {
  // nb = K / 32 = 1, 3, 5, 13, 17, 33 blocks: partial 2-block (Q8_0) and 4-block (Q4_0) chunks and
  // partial 16-block scale groups.
  std::mt19937 rng(kSeed + 2);
  ThreadPool pool(2);
  for (DType t : {DType::kQ8_0, DType::kQ4_0})
    for (int64_t N : {1, 3, 17, 130})
      for (int64_t K : {32, 96, 160, 416, 544, 1056})
        for (int64_t B : {1, 2, 3, 4, 5, 7, 8, 9, 33}) check_case(t, N, K, B, rng, pool);
}

TEST(MatmulFast, Fp8PartialBlocksAndRowSlices) {
  std::mt19937 rng(kSeed + 3);
  ThreadPool pool(2);
  // 130 x 300 with 128-blocks: partial last row block and column block; slices starting inside a
  // row block (MLA's per-head views of kv_b_proj) keep the right scale rows.
  for (int64_t B : {1, 3, 30}) {  // decode rows, and prefill (bf16 panels / AMX tiles)
    check_case(DType::kF8E4M3, 300, 300, B, rng, pool, 128, 120, 17);
    check_case(DType::kF8E4M3, 300, 300, B, rng, pool, 128, 250, 50);
  }
  // Block sizes 32 and 64 run the SIMD kernels, 4 falls back to scalar code.
  for (int64_t block : {32, 64, 4})
    for (int64_t B : {2, 30}) check_case(DType::kF8E4M3, 70, 200, B, rng, pool, block);
  // Slices of the other formats too.
  for (DType t : {DType::kF32, DType::kBF16, DType::kQ8_0, DType::kQ4_0})
    check_case(t, 40, 160, 2, rng, pool, 128, 13, 19);
}

TEST(MatmulFast, Fp8NanPropagates) {
  std::mt19937 rng(kSeed + 4);
  ThreadPool pool(1);
  Mat m = random_mat(DType::kF8E4M3, 9, 150, rng);
  uint8_t* p = m.storage.data() + m.offset;
  p[2 * 150 + 37] = 0x7f;   // row 2
  p[5 * 150 + 149] = 0xff;  // row 5, in the partial last block (column tail)
  for (int64_t B : {2, 12, 30}) {  // decode rows; register tiles or AMX tiles; bf16 panels or AMX tiles
    Act x = random_act(B, 150, rng);
    for (MatmulKernel k : supported_kernels()) {
      std::vector<float> y(size_t(B * 9));
      matmul(y.data(), x.data(), m.view(), B, &pool, k);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < 9; ++n)
          EXPECT_EQ(std::isnan(y[size_t(b * 9 + n)]), n == 2 || n == 5)
              << matmul_kernel_family_name(k) << " B=" << B << " b=" << b << " n=" << n;
    }
  }
}

TEST(MatmulFast, SpecialActivations) {
  // All-zero activation blocks (dx = 0) and a non-finite activation (NaN output, as matmul_ref).
  std::mt19937 rng(kSeed + 5);
  ThreadPool pool(1);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kBF16, DType::kF32}) {
    Mat m = random_mat(t, 5, 128, rng);
    std::vector<float> x(256, 0.f);
    for (int k = 32; k < 64; ++k) x[size_t(k)] = 0.25f;        // token 0: one non-zero block
    x[128 + 70] = std::numeric_limits<float>::infinity();  // token 1: inf
    std::vector<float> ref(10);
    matmul_ref(ref.data(), x.data(), m.view(), 2);
    for (MatmulKernel k : supported_kernels()) {
      std::vector<float> y(10);
      matmul(y.data(), x.data(), m.view(), 2, &pool, k);
      for (int n = 0; n < 5; ++n) {
        EXPECT_NEAR(y[size_t(n)], ref[size_t(n)], 1e-2 * std::fabs(ref[size_t(n)]) + 1e-6)
            << dtype_name(t) << " " << matmul_kernel_family_name(k) << " n=" << n;
        EXPECT_FALSE(std::isfinite(y[size_t(5 + n)])) << dtype_name(t) << " " << matmul_kernel_family_name(k);
      }
    }
  }
}

TEST(MatmulFast, QuantizedFormatsNeedColumnsDivisibleBy32) {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> x(64, 1.f), y(4);
  MatView w;
  w.data = bytes.data();
  w.dtype = DType::kQ8_0;
  w.rows = 2;
  w.cols = 40;
  EXPECT_THROW(matmul(y.data(), x.data(), w, 1), Error);
  EXPECT_THROW(matmul_ref(y.data(), x.data(), w, 1), Error);
  w.dtype = DType::kQ4_0;
  EXPECT_THROW(matmul(y.data(), x.data(), w, 1), Error);
  EXPECT_THROW(quantize_row_q8_0(bytes.data(), x.data(), 40), Error);
  EXPECT_THROW(quantize_row_q4_0(bytes.data(), x.data(), 0), Error);
  EXPECT_THROW(quant_row_bytes(DType::kQ4_0, 48), Error);
  EXPECT_EQ(quant_row_bytes(DType::kQ8_0, 64), 68);
  EXPECT_EQ(quant_row_bytes(DType::kQ4_0, 64), 36);
  x[3] = NAN;
  EXPECT_THROW(quantize_row_q8_0(bytes.data(), x.data(), 64), Error);
}

TEST(MatmulFast, QuantizedRowLayout) {
  // Hand case of the documented byte layout.
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = float(i - 16) / 16.f;  // amax = 1 at i = 0 (-1.0)
  std::vector<uint8_t> q8(34), q4(18);
  quantize_row_q8_0(q8.data(), x.data(), 32);
  quantize_row_q4_0(q4.data(), x.data(), 32);
  uint16_t d8, d4;
  std::memcpy(&d8, q8.data() + 32, 2);
  std::memcpy(&d4, q4.data() + 16, 2);
  EXPECT_EQ(d8, f32_to_f16(1.f / 127.f));
  EXPECT_EQ(f16_to_f32(d4), 0.125f);  // x_m = -1 -> d = -1 / -8
  EXPECT_EQ(int8_t(q8[0]), -127);
  EXPECT_EQ(int8_t(q8[16]), 0);
  // Q4_0 byte i: low nibble = element i, high nibble = element i + 16; code = x / d + 8.
  EXPECT_EQ(q4[0] & 15, 0);    // x[0] = -1 -> -8 -> code 0
  EXPECT_EQ(q4[0] >> 4, 8);    // x[16] = 0 -> code 8
  EXPECT_EQ(q4[15] >> 4, 15);  // x[31] = 15/16 -> 7.5 -> rounds to 8 (even) -> clamped to code 15
  std::vector<float> back(32);
  MatView w;
  w.data = q4.data();
  w.dtype = DType::kQ4_0;
  w.rows = 1;
  w.cols = 32;
  dequantize_row(back.data(), w, 0);
  EXPECT_EQ(back[0], -1.f);
  EXPECT_EQ(back[16], 0.f);
  EXPECT_EQ(back[31], 0.875f);
}

// x (rows, cols) quantized to t into q; the view of it.
MatView quantized_view(DType t, std::vector<uint8_t>& q, const std::vector<float>& x, int64_t rows, int64_t cols) {
  q.assign(size_t(rows * quant_row_bytes(t, cols)), 0);
  quantize_rows(t, q.data(), x.data(), rows, cols);
  MatView w;
  w.data = q.data();
  w.dtype = t;
  w.rows = rows;
  w.cols = cols;
  return w;
}

// dequantize_row_range on Q8_0 / Q4_0 (absorbed MLA decodes kv_b_proj rows with it): every value of
// ranges that start and end inside blocks equals the documented byte layout decoded here.
TEST(MatmulFast, QuantizedRowRangesDecodeTheLayout) {
  std::mt19937 rng(kSeed + 7);
  const int64_t rows = 3, cols = 160;
  std::vector<float> x(size_t(rows * cols));
  std::normal_distribution<float> nd(0.f, 1.f);
  for (float& v : x) v = nd(rng);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    std::vector<uint8_t> q;
    const MatView w = quantized_view(t, q, x, rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = mat_row_ptr(w, r);
      auto expected = [&](int64_t k) {
        const int64_t j = k / 32, i = k % 32;
        uint16_t dh;
        std::memcpy(&dh, row + (t == DType::kQ8_0 ? cols : cols / 2) + 2 * j, 2);
        const float d = f16_to_f32(dh);
        if (t == DType::kQ8_0) return float(int8_t(row[k])) * d;
        const uint8_t b = row[16 * j + (i & 15)];
        return float((i < 16 ? b & 15 : b >> 4) - 8) * d;
      };
      // Whole blocks take the SIMD path where the CPU has one, the others the scalar one.
      for (auto [k0, n] : {std::pair<int64_t, int64_t>{0, cols}, {32, 96}, {64, 32}, {17, 50}, {40, 8}, {31, 2}, {100, 60}}) {
        std::vector<float> out(size_t(n), NAN);
        dequantize_row_range(out.data(), w, r, k0, n);
        for (int64_t k = 0; k < n; ++k)
          ASSERT_EQ(out[size_t(k)], expected(k0 + k)) << dtype_name(t) << " row " << r << " k " << k0 + k;
      }
    }
  }
}

// matmul_transposed on Q8_0 / Q4_0 row slices (absorbed MLA's W_UK at decode): whole-block widths
// take the fused AVX-512 kernel (rows_t), the others dequantize rows; both against the product of the
// dequantized rows in double, within float32 rounding of the products and the running sums.
TEST(MatmulFast, TransposedQuantizedSlices) {
  std::mt19937 rng(kSeed + 8);
  const int64_t rows = 21, r0 = 5, N = 13;
  for (DType t : {DType::kQ8_0, DType::kQ4_0})
    for (int64_t cols : {32, 160, 288, 512})
      for (int64_t B : {1, 3}) {
        std::vector<float> f(size_t(rows * cols));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (float& v : f) v = nd(rng);
        std::vector<uint8_t> q;
        const MatView full = quantized_view(t, q, f, rows, cols);
        std::vector<float> x(static_cast<size_t>(B * N)), y(static_cast<size_t>(B * cols), NAN);
        std::vector<float> row(static_cast<size_t>(cols));
        for (float& v : x) v = nd(rng);
        matmul_transposed(y.data(), x.data(), full.slice_rows(r0, N), B);
        std::vector<double> ref(size_t(B * cols), 0.0), mag(size_t(B * cols), 0.0);
        for (int64_t n = 0; n < N; ++n) {
          dequantize_row(row.data(), full, r0 + n);
          for (int64_t b = 0; b < B; ++b)
            for (int64_t k = 0; k < cols; ++k) {
              const double p = double(x[size_t(b * N + n)]) * row[size_t(k)];
              ref[size_t(b * cols + k)] += p;
              mag[size_t(b * cols + k)] += std::fabs(p);
            }
        }
        for (size_t i = 0; i < ref.size(); ++i)
          // N float32 roundings of the running sum plus two per product (x[n] * d, then * q).
          ASSERT_NEAR(y[i], ref[i], double(N + 2) * 0x1p-24 * mag[i])
              << dtype_name(t) << " cols " << cols << " B " << B << " output " << i;
      }
}

// Round trip: |x - dequantize(quantize(x))| within the bound of each value's rounding (half a step,
// or the distance to the end of the code range where a value is clamped).
TEST(MatmulFast, QuantizeRoundTripBounds) {
  std::mt19937 rng(kSeed + 6);
  const int64_t rows = 64, cols = 256;
  std::vector<float> x(size_t(rows * cols));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> mag(-6.f, 2.f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * std::pow(10.f, mag(rng) * (i % 7 == 0));  // outliers too
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 32; ++c) x[size_t(r * cols + c)] = 0.f;  // all-zero blocks
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    std::vector<uint8_t> q;
    const MatView w = quantized_view(t, q, x, rows, cols);
    std::vector<float> back(static_cast<size_t>(cols));
    double err2 = 0, x2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(back.data(), w, r);
      const uint8_t* scales = mat_row_ptr(w, r) + (t == DType::kQ8_0 ? cols : cols / 2);
      for (int64_t j = 0; j < cols / 32; ++j) {
        uint16_t dh;
        std::memcpy(&dh, scales + 2 * j, 2);
        const double d = f16_to_f32(dh);
        for (int64_t i = 0; i < 32; ++i) {
          const int64_t k = j * 32 + i;
          const double xv = x[size_t(r * cols + k)], got = back[size_t(k)];
          double bound;
          if (d == 0) {
            bound = 0;  // an all-zero block (or one that underflows f16) decodes to zeros
            if (xv != 0) bound = std::fabs(xv);
          } else {
            const double lo = t == DType::kQ8_0 ? -127 : -8, hi = t == DType::kQ8_0 ? 127 : 7;
            const double c = xv / d, cc = std::clamp(c, lo, hi);
            bound = (0.5 + std::fabs(c - cc)) * std::fabs(d) * (1 + 1e-6);
          }
          ASSERT_LE(std::fabs(xv - got), bound + 1e-30)
              << dtype_name(t) << " row " << r << " col " << k << " x=" << xv << " back=" << got << " d=" << d;
          err2 += (xv - got) * (xv - got);
          x2 += xv * xv;
        }
      }
    }
    // Relative RMS error ~ step / sqrt(12) / rms: measured 1.2% (Q8_0) and 9% (Q4_0) on these
    // heavy-tailed rows; the limits leave room for other seeds.
    const double rel = std::sqrt(err2 / x2);
    std::cout << dtype_name(t) << " relative RMS round-trip error " << rel << "\n";
    EXPECT_LT(rel, t == DType::kQ8_0 ? 0.02 : 0.15) << dtype_name(t);
  }
}

TEST(MatmulFast, QuantizeExactValuesRoundTripExactly) {
  // Values d * q with d a power of two are reproduced bit for bit.
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[size_t(i)] = 0.0625f * float((i * 37) % 255 - 127);
  x[0] = -127 * 0.0625f;  // makes amax = 127 d exactly
  std::vector<uint8_t> q(68);
  quantize_row_q8_0(q.data(), x.data(), 64);
  MatView w;
  w.data = q.data();
  w.dtype = DType::kQ8_0;
  w.rows = 1;
  w.cols = 64;
  std::vector<float> back(64);
  dequantize_row(back.data(), w, 0);
  // Block 0: amax = 127 * 0.0625, so d = 0.0625 exactly and every x / d is an integer.
  for (int i = 0; i < 32; ++i) EXPECT_EQ(back[size_t(i)], x[size_t(i)]) << i;
}

TEST(MatmulFast, VectorActivationPrepMatchesScalar) {
  // The AVX-512 activation conversions must produce the scalar layout byte for byte.
  if (!matmul_kernel_supported(MatmulKernel::kAvx512)) GTEST_SKIP() << "no AVX-512";
  const mm::KernelSet ks = mm::avx512_kernels();
  std::mt19937 rng(kSeed + 8);
  for (int64_t K : {32, 96, 160, 416, 1056}) {
    Act a = random_act(1, K, rng);
    float* x = a.data();
    for (int64_t k = 64; k < std::min<int64_t>(K, 96); ++k) x[k] = 0.f;  // an all-zero block
    if (K >= 160) x[130] = NAN;                                         // a non-finite block
    for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
      const QActLayout l = qact_layout(t, K);
      std::vector<uint8_t> want(size_t(l.stride)), got(size_t(l.stride) + 64);
      uint8_t* g = got.data() + (64 - reinterpret_cast<uintptr_t>(got.data()) % 64) % 64;
      quantize_activations(want.data(), x, t, K);
      mm::Job job;
      job.K = K;
      job.act_stride = l.stride;
      job.act_corr_offset = l.corr_offset;
      job.act_scale_offset = l.scale_offset;
      job.act_block_scale_offset = l.block_scale_offset;
      job.act_block_corr_offset = l.block_corr_offset;
      (t == DType::kQ8_0 ? ks.prep_q8_0 : ks.prep_q4_0)(g, x, job);
      for (int64_t i = 0; i < l.stride; ++i)
        ASSERT_EQ(want[size_t(i)], g[i]) << dtype_name(t) << " K=" << K << " byte " << i;
    }
    if (K >= 160) x[130] = 1.f;
    const int64_t stride = ((K + 31) / 32) * 64;
    std::vector<uint8_t> got(size_t(stride) + 64);
    uint8_t* g = got.data() + (64 - reinterpret_cast<uintptr_t>(got.data()) % 64) % 64;
    ks.prep_bf16(g, x, K, stride);
    for (int64_t k = 0; k < stride / 2; ++k) {
      uint16_t h;
      std::memcpy(&h, g + 2 * k, 2);
      ASSERT_EQ(h, k < K ? f32_to_bf16(x[k]) : 0) << "bf16 K=" << K << " k=" << k;
    }
  }
}

TEST(MatmulFast, ForcedKernelNotSupportedThrows) {
  for (int k = int(MatmulKernel::kScalar); k < int(MatmulKernel::kSentinel); ++k) {
    if (matmul_kernel_supported(MatmulKernel(k))) continue;
    std::vector<float> w(4, 1.f), x(2, 1.f), y(2);
    MatView v;
    v.data = w.data();
    v.rows = 2;
    v.cols = 2;
    EXPECT_THROW(matmul(y.data(), x.data(), v, 1, nullptr, MatmulKernel(k)), Error);
  }
}

TEST(MatmulFast, AutoIsTheBestKernel) {
  std::mt19937 rng(kSeed + 7);
  ThreadPool pool(2);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF8E4M3, DType::kQ8_0, DType::kQ4_0}) {
    Mat m = random_mat(t, 33, 320, rng);
    Act x = random_act(3, 320, rng);
    std::vector<float> a(99), b(99);
    matmul(a.data(), x.data(), m.view(), 3, &pool);
    matmul(b.data(), x.data(), m.view(), 3, nullptr, matmul_best_kernel());
    EXPECT_EQ(a, b) << dtype_name(t);  // threading does not change any output's summation order
  }
}

// matmul_many (MoE: all expert products of a layer in one dispatch) gives every task exactly what
// matmul gives it alone, for mixed dtypes, shapes and token counts (stream and tile kernels), with
// and without a pool; empty tasks are skipped.
TEST(MatmulFast, ManyEqualsOneByOne) {
  std::mt19937 rng(kSeed + 8);
  ThreadPool pool(2);
  struct Case {
    DType t;
    int64_t N, K, B;
  };
  const Case cases[] = {{DType::kBF16, 300, 160, 1}, {DType::kQ8_0, 130, 96, 3}, {DType::kQ4_0, 70, 544, 8},
                        {DType::kBF16, 1, 33, 9},    {DType::kF8E4M3, 200, 256, 2}, {DType::kQ8_0, 0, 64, 2},
                        {DType::kF32, 40, 17, 5},    {DType::kQ4_0, 520, 1056, 1}};
  std::vector<Mat> mats;
  std::vector<Act> acts;
  for (const Case& c : cases) {
    mats.push_back(random_mat(c.t, c.N, c.K, rng));
    acts.push_back(random_act(c.B, c.K, rng));
  }
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<std::vector<float>> one(std::size(cases)), many(std::size(cases));
    std::vector<MatmulTask> tasks;
    for (size_t i = 0; i < std::size(cases); ++i) {
      const Case& c = cases[i];
      one[i].assign(size_t(c.B * c.N), NAN);
      many[i].assign(size_t(c.B * c.N), NAN);
      matmul(one[i].data(), acts[i].data(), mats[i].view(), c.B, p);
      tasks.push_back({many[i].data(), acts[i].data(), mats[i].view(), c.B});
    }
    matmul_many(tasks, p);
    for (size_t i = 0; i < std::size(cases); ++i)
      for (size_t j = 0; j < one[i].size(); ++j)
        ASSERT_EQ(one[i][j], many[i][j]) << "task " << i << " (" << dtype_name(cases[i].t) << ") value " << j
                                         << (p ? " with pool" : " without pool");
  }
}

// Consecutive tasks over the same rows x (a MoE expert's gate and up) share one conversion of x in
// matmul_many; the results stay those of matmul alone, also when the next task has other rows of
// the same shape (which must be converted again) or the same rows for another weight type.
TEST(MatmulFast, ManySharedActivationsEqualOneByOne) {
  std::mt19937 rng(kSeed + 9);
  ThreadPool pool(2);
  for (DType t : {DType::kBF16, DType::kF8E4M3, DType::kQ8_0, DType::kQ4_0, DType::kQ8_0R16, DType::kQ4_0R16})
    for (int64_t B : {1, 3, 30, 48}) {
      const int64_t K = 256;
      Mat gate = random_mat(t, 64, K, rng), up = random_mat(t, 48, K, rng), other = random_mat(t, 32, K, rng);
      Mat f32 = random_mat(DType::kF32, 16, K, rng);
      Act x = random_act(B, K, rng), x2 = random_act(B, K, rng);
      // gate(x), up(x), other(x2), f32(x2): shared, then not (other rows), then not (other type).
      const Mat* w[] = {&gate, &up, &other, &f32};
      float* xs[] = {x.data(), x.data(), x2.data(), x2.data()};
      std::vector<std::vector<float>> one(4), many(4);
      std::vector<MatmulTask> tasks;
      for (int i = 0; i < 4; ++i) {
        const MatView v = w[i]->view();
        one[size_t(i)].assign(size_t(B * v.rows), NAN);
        many[size_t(i)].assign(size_t(B * v.rows), NAN);
        matmul(one[size_t(i)].data(), xs[i], v, B, &pool);
        tasks.push_back({many[size_t(i)].data(), xs[i], v, B});
      }
      matmul_many(tasks, &pool);
      for (int i = 0; i < 4; ++i)
        ASSERT_EQ(one[size_t(i)], many[size_t(i)]) << dtype_name(t) << " B=" << B << " task " << i;
    }
}

}  // namespace
}  // namespace dseek
