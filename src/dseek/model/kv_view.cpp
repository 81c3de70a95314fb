// Row conversion of a bf16 latent cache (kv_view.h).
#include "dseek/model/kv_view.h"

#include <cstring>

#include "dseek/core/dtype.h"

namespace dseek {

void LayerRows::read(int64_t pos, int64_t n, float* dst) const {
  if (!bf16()) {
    std::memcpy(dst, row_data(pos), size_t(n * dim) * sizeof(float));
    return;
  }
  const uint16_t* src = static_cast<const uint16_t*>(row_data(pos));
  for (int64_t i = 0; i < n * dim; ++i) dst[i] = bf16_to_f32(src[i]);
}

void LayerRows::write(int64_t pos, const float* v) const {
  if (!bf16()) {
    std::memcpy(row(pos), v, size_t(dim) * sizeof(float));
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(base) + slot(pos) * dim;
  for (int64_t i = 0; i < dim; ++i) dst[i] = f32_to_bf16(v[i]);
}

}  // namespace dseek
