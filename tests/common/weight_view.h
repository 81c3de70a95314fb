// MatView over weights a test holds in its own buffers (tests/kernels).
#pragma once

#include <cstdint>

#include "dseek/core/dtype.h"
#include "dseek/core/tensor.h"

namespace dseek {

// scale_inv is used for FP8 only (ceil(rows / block) x ceil(cols / block) floats).
inline MatView weight_view(const void* data, DType t, int64_t rows, int64_t cols, int64_t block,
                           const float* scale_inv) {
  MatView v;
  v.data = data;
  v.dtype = t;
  v.rows = rows;
  v.cols = cols;
  v.block = block;
  v.scale_inv = t == DType::kF8E4M3 ? scale_inv : nullptr;
  return v;
}

}  // namespace dseek
