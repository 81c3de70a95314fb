// Non-owning views of tensors. Data usually points into a memory-mapped checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dseek/core/dtype.h"

namespace dseek {

// Shape of a tensor, outermost dimension first (as in safetensors / PyTorch).
using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[64, 32]"
int64_t shape_numel(const Shape& s);

// Any tensor as stored: contiguous, row-major.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  int64_t numel() const { return shape_numel(shape); }
};

// A linear layer's weight as stored in HF checkpoints: (rows = out_features, cols = in_features),
// row-major, in any weight dtype. FP8 weights carry per-block inverse scales:
// W[i, j] = decode(q[i, j]) * scale_inv[i / block, j / block], scale_inv (ceil(rows/block), ceil(cols/block)).
// A view may cover rows [row_offset, row_offset + rows) of a larger matrix (MLA's per-head slices of
// kv_b_proj): `data` and `scale_inv` then still point at the whole matrix, so block indices stay right.
struct MatView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const float* scale_inv = nullptr;
  int64_t block = 128;
  int64_t row_offset = 0;

  bool empty() const { return data == nullptr; }
  int64_t scale_cols() const { return (cols + block - 1) / block; }
  // Rows [begin, begin + n) of this view, as a view.
  MatView slice_rows(int64_t begin, int64_t n) const {
    MatView v = *this;
    v.row_offset = row_offset + begin;
    v.rows = n;
    return v;
  }
};

}  // namespace dseek
