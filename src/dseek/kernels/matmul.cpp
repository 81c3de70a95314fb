#include "dseek/kernels/matmul.h"

#include <algorithm>
#include <string>

#include "dseek/core/error.h"

namespace dseek {

namespace {

const uint8_t* row_ptr(const MatView& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + size_t(w.row_offset + r) * size_t(w.cols) * dtype_size(w.dtype);
}

// Dot product of stored row r with x (K), float32 accumulation.
float dot_row(const MatView& w, int64_t r, const float* x) {
  const int64_t K = w.cols;
  float acc = 0.f;
  switch (w.dtype) {
    case DType::kF32: {
      auto* p = reinterpret_cast<const float*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += p[k] * x[k];
      return acc;
    }
    case DType::kBF16: {
      auto* p = reinterpret_cast<const uint16_t*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += bf16_to_f32(p[k]) * x[k];
      return acc;
    }
    case DType::kF16: {
      auto* p = reinterpret_cast<const uint16_t*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += f16_to_f32(p[k]) * x[k];
      return acc;
    }
    case DType::kF8E4M3: {
      DSEEK_CHECK(w.scale_inv != nullptr, "FP8 weight without scale_inv");
      const uint8_t* p = row_ptr(w, r);
      const float* lut = e4m3_table();
      const float* scales = w.scale_inv + ((w.row_offset + r) / w.block) * w.scale_cols();
      // Dequantize exactly as the reference: W = decode(q) * scale (float32 product), then dot.
      for (int64_t k = 0; k < K; ++k) acc += (lut[p[k]] * scales[k / w.block]) * x[k];
      return acc;
    }
    default:
      DSEEK_CHECK(false, std::string("matmul: unsupported weight dtype ") + std::string(dtype_name(w.dtype)));
  }
  return acc;
}

}  // namespace

void dequantize_row_range(float* out, const MatView& w, int64_t r, int64_t k0, int64_t n) {
  const uint8_t* base = row_ptr(w, r);
  switch (w.dtype) {
    case DType::kF32: {
      auto* p = reinterpret_cast<const float*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = p[k];
      return;
    }
    case DType::kBF16: {
      auto* p = reinterpret_cast<const uint16_t*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = bf16_to_f32(p[k]);
      return;
    }
    case DType::kF16: {
      auto* p = reinterpret_cast<const uint16_t*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = f16_to_f32(p[k]);
      return;
    }
    case DType::kF8E4M3: {
      DSEEK_CHECK(w.scale_inv != nullptr, "FP8 weight without scale_inv");
      const float* lut = e4m3_table();
      const float* scales = w.scale_inv + ((w.row_offset + r) / w.block) * w.scale_cols();
      for (int64_t k = 0; k < n; ++k) out[k] = lut[base[k0 + k]] * scales[(k0 + k) / w.block];
      return;
    }
    default:
      DSEEK_CHECK(false, std::string("dequantize_row: unsupported dtype ") + std::string(dtype_name(w.dtype)));
  }
}

void dequantize_row(float* out, const MatView& w, int64_t r) { dequantize_row_range(out, w, r, 0, w.cols); }

void matmul_ref(float* y, const float* x, const MatView& w, int64_t B) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < w.rows; ++n) y[b * w.rows + n] = dot_row(w, n, x + b * w.cols);
}

void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool) {
  const int64_t N = w.rows;
  auto run = [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t b = 0; b < B; ++b) y[b * N + n] = dot_row(w, n, x + b * w.cols);
  };
  // Small layers are not worth waking the pool for.
  if (pool && pool->size() > 1 && N * w.cols * B >= (1 << 16))
    pool->parallel_for(N, run, 16);
  else
    run(0, N);
}

void matmul_transposed(float* y, const float* x, const MatView& w, int64_t B) {
  const int64_t N = w.rows, K = w.cols;
  for (int64_t i = 0; i < B * K; ++i) y[i] = 0.f;
  constexpr int64_t kChunk = 256;  // decode a row piecewise into a fixed stack buffer
  float buf[kChunk];
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
      const int64_t kn = std::min(kChunk, K - k0);
      dequantize_row_range(buf, w, n, k0, kn);
      for (int64_t b = 0; b < B; ++b) {
        const float xv = x[b * N + n];
        float* yb = y + b * K + k0;
        for (int64_t k = 0; k < kn; ++k) yb[k] += xv * buf[k];
      }
    }
  }
}

int64_t mat_bytes(const MatView& w) {
  int64_t b = w.rows * w.cols * int64_t(dtype_size(w.dtype));
  if (w.scale_inv) b += ((w.rows + w.block - 1) / w.block) * w.scale_cols() * 4;
  return b;
}

}  // namespace dseek
