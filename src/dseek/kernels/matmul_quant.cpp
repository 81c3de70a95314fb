#include "dseek/kernels/matmul_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dseek/core/error.h"

namespace dseek {

namespace {

constexpr int64_t kQ8BlockBytes = 34;  // 32 x int8 + f16 scale
constexpr int64_t kQ4BlockBytes = 18;  // 16 bytes of nibbles + f16 scale

void store_f16(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }
uint16_t load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

void check_finite(const float* x, int64_t n, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw Error(std::string(what) + ": non-finite input value " + std::to_string(x[i]) + " at column " +
                  std::to_string(i));
}

}  // namespace

bool is_block_quantized(DType t) { return t == DType::kQ8_0 || t == DType::kQ4_0 || is_r16(t); }

int64_t quant_row_bytes(DType t, int64_t cols) {
  if (!is_block_quantized(t)) return cols * int64_t(dtype_size(t));
  if (cols <= 0 || cols % kQuantBlock != 0)
    throw Error(std::string(dtype_name(t)) + " needs a positive number of columns divisible by 32, got " +
                std::to_string(cols));
  return cols / kQuantBlock * (r16_row_type(t) == DType::kQ4_0 ? kQ4BlockBytes : kQ8BlockBytes);
}

bool is_r16(DType t) { return t == DType::kQ8_0R16 || t == DType::kQ4_0R16; }
DType r16_row_type(DType t) {
  return t == DType::kQ8_0R16 ? DType::kQ8_0 : t == DType::kQ4_0R16 ? DType::kQ4_0 : t;
}

namespace {
// Where byte i of block j's codes of row r of a group goes (cb code bytes per block and row).
struct R16Layout {
  int64_t cb, nb;
  bool q8;
  R16Layout(DType t, int64_t cols) : cb(t == DType::kQ8_0R16 ? 32 : 16), nb(cols / kQuantBlock), q8(t == DType::kQ8_0R16) {
    if (!is_r16(t)) throw Error(std::string(dtype_name(t)) + " is not an _R16 format");
  }
  int64_t code(int64_t r, int64_t k) const { return 16 * cb * (k / cb) + 64 * ((k % cb) / 4) + 4 * r + k % 4; }
  int64_t scale(int64_t r, int64_t j) const { return 16 * cb * nb + 32 * j + 2 * r; }
};
}  // namespace

void interleave_r16(DType t, uint8_t* out, const uint8_t* row_major, int64_t rows, int64_t cols) {
  const R16Layout l(t, cols);
  const int64_t rb = quant_row_bytes(t, cols);
  if (rows % kR16Rows != 0)
    throw Error(std::string(dtype_name(t)) + " needs a multiple of 16 rows, got " + std::to_string(rows));
  for (int64_t g0 = 0; g0 < rows; g0 += kR16Rows) {
    uint8_t* grp = out + g0 * rb;
    for (int64_t r = 0; r < kR16Rows; ++r) {
      const uint8_t* row = row_major + (g0 + r) * rb;
      // 4 code bytes at a time: each word of a row lands whole in the group (R16Layout::code).
      const uint32_t flip = l.q8 ? 0x80808080u : 0u;
      for (int64_t k = 0; k < l.cb * l.nb; k += 4) {
        uint32_t w;
        std::memcpy(&w, row + k, 4);
        w ^= flip;
        std::memcpy(grp + l.code(r, k), &w, 4);
      }
      for (int64_t j = 0; j < l.nb; ++j) std::memcpy(grp + l.scale(r, j), row + l.cb * l.nb + 2 * j, 2);
    }
  }
}

void r16_row(DType t, uint8_t* out, const uint8_t* data, int64_t r, int64_t cols) {
  const R16Layout l(t, cols);
  const int64_t rb = quant_row_bytes(t, cols);
  const uint8_t* grp = data + (r / kR16Rows) * kR16Rows * rb;
  const int64_t i = r % kR16Rows;
  const uint32_t flip = l.q8 ? 0x80808080u : 0u;
  for (int64_t k = 0; k < l.cb * l.nb; k += 4) {  // whole words, as interleave_r16 stores them
    uint32_t w;
    std::memcpy(&w, grp + l.code(i, k), 4);
    w ^= flip;
    std::memcpy(out + k, &w, 4);
  }
  for (int64_t j = 0; j < l.nb; ++j) std::memcpy(out + l.cb * l.nb + 2 * j, grp + l.scale(i, j), 2);
}

void quantize_row_q8_0(uint8_t* out, const float* x, int64_t cols) {
  const int64_t nb = quant_row_bytes(DType::kQ8_0, cols) / kQ8BlockBytes;
  check_finite(x, cols, "quantize_row_q8_0");
  auto* q = reinterpret_cast<int8_t*>(out);
  uint8_t* d = out + cols;
  for (int64_t j = 0; j < nb; ++j) {
    const float* xb = x + j * kQuantBlock;
    float amax = 0.f;
    for (int i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const uint16_t dh = f32_to_f16(amax / 127.f);
    store_f16(d + 2 * j, dh);
    // Divide by the scale as stored, so the f16 rounding of d does not add to the value error.
    const float df = f16_to_f32(dh);
    const float id = df != 0.f ? 1.f / df : 0.f;
    for (int i = 0; i < kQuantBlock; ++i)
      q[j * kQuantBlock + i] = int8_t(std::clamp(std::nearbyint(xb[i] * id), -127.f, 127.f));
  }
}

void quantize_row_q4_0(uint8_t* out, const float* x, int64_t cols) {
  const int64_t nb = quant_row_bytes(DType::kQ4_0, cols) / kQ4BlockBytes;
  check_finite(x, cols, "quantize_row_q4_0");
  uint8_t* d = out + cols / 2;
  for (int64_t j = 0; j < nb; ++j) {
    const float* xb = x + j * kQuantBlock;
    float amax = 0.f, m = 0.f;
    for (int i = 0; i < kQuantBlock; ++i)
      if (std::fabs(xb[i]) > amax) {
        amax = std::fabs(xb[i]);
        m = xb[i];
      }
    // The largest-magnitude value lands on code 0 (= -8 after the offset), using all 16 codes.
    const uint16_t dh = f32_to_f16(m / -8.f);
    store_f16(d + 2 * j, dh);
    const float df = f16_to_f32(dh);
    const float id = df != 0.f ? 1.f / df : 0.f;
    auto code = [&](int i) { return uint8_t(std::clamp(std::nearbyint(xb[i] * id) + 8.f, 0.f, 15.f)); };
    for (int i = 0; i < 16; ++i) out[j * 16 + i] = uint8_t(code(i) | (code(i + 16) << 4));
  }
}

void quantize_rows(DType t, uint8_t* out, const float* x, int64_t rows, int64_t cols) {
  const int64_t rb = quant_row_bytes(t, cols);
  if (is_r16(t)) {
    std::vector<uint8_t> row_major(size_t(rows * rb));
    quantize_rows(r16_row_type(t), row_major.data(), x, rows, cols);
    return interleave_r16(t, out, row_major.data(), rows, cols);
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (t == DType::kQ8_0)
      quantize_row_q8_0(out + r * rb, x + r * cols, cols);
    else if (t == DType::kQ4_0)
      quantize_row_q4_0(out + r * rb, x + r * cols, cols);
    else
      throw Error("quantize_rows: " + std::string(dtype_name(t)) + " is not a block-quantized type");
  }
}

QActLayout qact_layout(DType w, int64_t K) {
  const int64_t nb = quant_row_bytes(w, K) / (w == DType::kQ8_0 ? kQ8BlockBytes : kQ4BlockBytes);
  // One 64-byte weight chunk holds 2 Q8_0 blocks or 4 Q4_0 blocks (nibbles); 16 int32 lanes each.
  const int64_t per_chunk = w == DType::kQ8_0 ? 2 : 4;
  const int64_t chunks = (nb + per_chunk - 1) / per_chunk;
  QActLayout l;
  l.lanes = 16 * chunks;
  l.corr_offset = chunks * per_chunk * kQuantBlock;  // the codes, 64 or 128 bytes per chunk
  l.scale_offset = l.corr_offset + 4 * l.lanes;
  // Per-block arrays: only the Q8_0 streams read them (Q4_0 streams use the lane arrays).
  const int64_t nb_padded = w == DType::kQ8_0 ? (nb + 15) / 16 * 16 : 0;
  l.block_scale_offset = l.scale_offset + 4 * l.lanes;
  l.block_corr_offset = l.block_scale_offset + 4 * nb_padded;
  l.stride = l.block_corr_offset + 4 * nb_padded;
  return l;
}

void quantize_act_block(int8_t* q, float* dx, const float* x) {
  float amax = 0.f;
  bool finite = true;
  for (int i = 0; i < kQuantBlock; ++i) {
    finite = finite && std::isfinite(x[i]);
    amax = std::max(amax, std::fabs(x[i]));
  }
  if (!finite) {
    std::memset(q, 0, kQuantBlock);
    *dx = NAN;
    return;
  }
  *dx = amax / 127.f;
  const float id = amax != 0.f ? 127.f / amax : 0.f;
  for (int i = 0; i < kQuantBlock; ++i) q[i] = int8_t(std::clamp(std::nearbyint(x[i] * id), -127.f, 127.f));
}

void quantize_activations(uint8_t* out, const float* x, DType w, int64_t K) {
  const QActLayout l = qact_layout(w, K);
  std::memset(out, 0, size_t(l.stride));
  auto* codes = reinterpret_cast<int8_t*>(out);
  auto* corr = reinterpret_cast<int32_t*>(out + l.corr_offset);
  auto* dxs = reinterpret_cast<float*>(out + l.scale_offset);
  auto* block_dx = reinterpret_cast<float*>(out + l.block_scale_offset);
  auto* block_cx = reinterpret_cast<float*>(out + l.block_corr_offset);
  const int64_t nb = K / kQuantBlock;
  int8_t q[kQuantBlock];
  float dx;

  if (w == DType::kQ8_0) {
    // Codes in column order; lane l (bytes 4l .. 4l + 3) lies in block l / 8. The kernels feed the
    // weights as unsigned q + 128, so each lane starts from -128 * (its four codes).
    for (int64_t j = 0; j < nb; ++j) {
      quantize_act_block(q, &dx, x + j * kQuantBlock);
      std::memcpy(codes + j * kQuantBlock, q, kQuantBlock);
      int32_t sum = 0;
      for (int i = 0; i < kQuantBlock; ++i) sum += q[i];
      block_dx[j] = dx;
      block_cx[j] = dx * float(128 * sum);
      for (int m = 0; m < 8; ++m) {
        corr[j * 8 + m] = -128 * (q[4 * m] + q[4 * m + 1] + q[4 * m + 2] + q[4 * m + 3]);
        dxs[j * 8 + m] = dx;
      }
    }
  } else {
    // Chunk c = blocks 4c .. 4c + 3: bytes [128c, 128c + 64) are the first 16 codes of each block
    // (they meet the weights' low nibbles), bytes [128c + 64, 128c + 128) the last 16 (high
    // nibbles). Lane 16c + m covers 4 low and 4 high codes of block 4c + m / 4; the weights' codes
    // are unsigned (value + 8), hence -8 * sum.
    for (int64_t j = 0; j < nb; ++j) {
      quantize_act_block(q, &dx, x + j * kQuantBlock);
      const int64_t c = j / 4, i = j % 4;
      int8_t* lo = codes + 128 * c + 16 * i;
      std::memcpy(lo, q, 16);
      std::memcpy(lo + 64, q + 16, 16);
      for (int m = 0; m < 4; ++m) {
        int32_t s = 0;
        for (int t = 0; t < 4; ++t) s += q[4 * m + t] + q[16 + 4 * m + t];
        corr[16 * c + 4 * i + m] = -8 * s;
        dxs[16 * c + 4 * i + m] = dx;
      }
    }
  }
}

void matmul_qact_ref(float* y, const float* x, const MatView& w, int64_t B) {
  DSEEK_CHECK(is_block_quantized(w.dtype), "matmul_qact_ref needs block-quantized weights");
  const int64_t K = w.cols, nb = K / kQuantBlock, rb = quant_row_bytes(w.dtype, K);
  const bool q8 = r16_row_type(w.dtype) == DType::kQ8_0;
  const auto* base = static_cast<const uint8_t*>(w.data);
  int8_t qx[kQuantBlock];
  std::vector<uint8_t> unpacked(is_r16(w.dtype) ? size_t(rb) : 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < w.rows; ++n) {
      const uint8_t* row = base + (w.row_offset + n) * rb;
      if (is_r16(w.dtype)) {
        r16_row(w.dtype, unpacked.data(), base, w.row_offset + n, K);
        row = unpacked.data();
      }
      const uint8_t* scales = row + (q8 ? K : K / 2);
      float acc = 0.f;
      for (int64_t j = 0; j < nb; ++j) {
        float dx;
        quantize_act_block(qx, &dx, x + b * K + j * kQuantBlock);
        int32_t dot = 0;
        for (int i = 0; i < kQuantBlock; ++i) {
          int32_t wq;
          if (q8)
            wq = int8_t(row[j * kQuantBlock + i]);
          else
            wq = (i < 16 ? row[j * 16 + i] & 15 : row[j * 16 + i - 16] >> 4) - 8;
          dot += wq * qx[i];
        }
        acc += float(dot) * (f16_to_f32(load_f16(scales + 2 * j)) * dx);
      }
      y[b * w.rows + n] = acc;
    }
}

}  // namespace dseek
