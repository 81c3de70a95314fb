// Block-quantized weight formats Q8_0 and Q4_0 (docs/kernels.md is the normative description).
//
// Both quantize every run of 32 consecutive values of a row (a "block") with one f16 scale d.
// A row of `cols` values (cols % 32 == 0, nb = cols / 32 blocks) is stored as all its quantized
// values first, then its nb scales, so 64-byte vector loads see only values:
//
//   Q8_0 row, 34 * nb bytes:  int8 q[cols]     | f16 d[nb]     W[k] = d[k / 32] * q[k]
//   Q4_0 row, 18 * nb bytes:  uint8 p[16 * nb] | f16 d[nb]     block j = bytes p[16j .. 16j + 16):
//                                 W[32j + i]      = d[j] * ((p[16j + i] & 15) - 8)   i in [0, 16)
//                                 W[32j + 16 + i] = d[j] * ((p[16j + i] >> 4) - 8)
//
// f16 and int8 are little-endian. Rows follow each other with no padding; a MatView of these
// types points at row 0 and its rows/cols are the logical (unquantized) shape. In safetensors
// files the tensors are U8 [rows, row_bytes] with metadata naming the format (docs/kernels.md).
//
// Q8_0_R16 and Q4_0_R16 hold the same codes and scales as Q8_0 / Q4_0 with every 16 consecutive
// rows (a group, rows % 16 == 0) stored together in the order the int8 kernels consume them, so a
// product reads the weights as they lie instead of transposing them per call:
//
//   Q8_0_R16 group, 16 * 34 * nb bytes:  uint8 c[nb][8][16][4] | f16 d[nb][16]
//     c[j][g][r][i] = q_r[32j + 4g + i] + 128       (row r's codes, stored unsigned)
//   Q4_0_R16 group, 16 * 18 * nb bytes:  uint8 c[nb][4][16][4] | f16 d[nb][16]
//     c[j][g][r][i] = p_r[16j + 4g + i]             (row r's Q4_0 bytes: low nibble column
//                                                    32j + 4g + i, high nibble 16 columns on)
//   d[j][r] = row r's scale of block j
//
// quant_row_bytes is the row format's (a group is 16 rows' bytes); in safetensors:
// U8 [rows / 16, 16 * row_bytes].
//
// The SIMD kernels multiply with activations quantized on the fly to 8 bits per block of 32
// (scale max|x| / 127, rounded to nearest): matmul_qact_ref is the scalar model of that product.
#pragma once

#include <cstdint>

#include "dseek/core/dtype.h"
#include "dseek/core/tensor.h"

namespace dseek {

constexpr int64_t kQuantBlock = 32;  // values per Q8_0 / Q4_0 block

bool is_block_quantized(DType t);  // Q8_0, Q4_0, Q8_0_R16, Q4_0_R16
constexpr int64_t kR16Rows = 16;  // rows per group of the _R16 formats
bool is_r16(DType t);             // Q8_0_R16, Q4_0_R16
DType r16_row_type(DType t);      // the row format of an _R16 format (Q8_0 / Q4_0), else t
// Bytes of one stored row of `cols` values; throws dseek::Error unless cols > 0 and cols % 32 == 0
// (for a block-quantized t). For other types: cols * dtype_size(t).
int64_t quant_row_bytes(DType t, int64_t cols);

// One row: x (cols) -> out (quant_row_bytes(t, cols) bytes). d = max|x| / 127 (Q8_0) or
// d = x_m / -8 with x_m the value of largest magnitude (Q4_0, so x_m maps exactly onto -8),
// rounded to f16 before the values are divided by it; values round to nearest, clamped to the
// code range. Non-finite inputs throw dseek::Error (a NaN scale would poison a whole block).
void quantize_row_q8_0(uint8_t* out, const float* x, int64_t cols);
void quantize_row_q4_0(uint8_t* out, const float* x, int64_t cols);
// rows x cols row-major; out gets rows * quant_row_bytes(t, cols) bytes (_R16: rows % 16 == 0).
void quantize_rows(DType t, uint8_t* out, const float* x, int64_t rows, int64_t cols);

// Rows of r16_row_type(t) (rows % 16 == 0) -> the same weights in the _R16 format t (out:
// rows * quant_row_bytes bytes); throws dseek::Error for other row counts.
void interleave_r16(DType t, uint8_t* out, const uint8_t* row_major, int64_t rows, int64_t cols);
// Row r of an _R16 matrix t (data at row 0) as a row of r16_row_type(t) (quant_row_bytes bytes).
void r16_row(DType t, uint8_t* out, const uint8_t* data, int64_t r, int64_t cols);

// ---- activations for the integer kernels ----

// Layout of one token's quantized activations (see quantize_activations), all offsets in bytes.
struct QActLayout {
  int64_t stride = 0;        // bytes per token (a multiple of 64)
  int64_t corr_offset = 0;   // int32 corr[lanes]
  int64_t scale_offset = 0;  // float dx[lanes]
  int64_t lanes = 0;         // 16 per 64-byte chunk of weights
  // Q8_0 only (empty for Q4_0), per block (nb, zero-padded to a multiple of 16): float dx[nb] and
  // float cx[nb] = dx * (128 * sum of the block's codes): the Q8_0 row streams start each lane
  // from zero and subtract the unsigned-code offset once per 16 blocks, as sum of d_w * cx.
  int64_t block_scale_offset = 0;
  int64_t block_corr_offset = 0;
};
QActLayout qact_layout(DType w, int64_t K);

// Quantizes one token x (K) for a product with Q8_0 or Q4_0 weights into `out` (layout.stride
// bytes, zero-padded). Each block of 32 becomes int8 q = round(x / dx), dx = max|x| / 127 (float32;
// dx = 0 for an all-zero block, NaN if the block is not finite so the product is NaN as in
// matmul_ref). The bytes are ordered as the weights' bytes are (Q4_0: the low-nibble halves of four
// blocks, then their high-nibble halves), and every int32 lane of a 64-byte chunk carries the
// offset correction for unsigned weight codes (-128 * sum for Q8_0, -8 * sum for Q4_0) and dx;
// the per-block arrays of QActLayout follow.
void quantize_activations(uint8_t* out, const float* x, DType w, int64_t K);

// Block of 32 activations -> int8 codes and scale, as quantize_activations does it.
void quantize_act_block(int8_t* q, float* dx, const float* x);

// Scalar model of the SIMD Q8_0 / Q4_0 product: per block, an exact integer dot of the weight codes
// with quantize_act_block's codes, times d_w * dx, summed in float in block order. y (B, N).
void matmul_qact_ref(float* y, const float* x, const MatView& w, int64_t B);

}  // namespace dseek
