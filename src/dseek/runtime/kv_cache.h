// Contiguous latent KV cache for one sequence (the paged, multi-sequence cache of the server
// builds on the same row format).
#pragma once

#include <cstdint>
#include "dseek/core/huge_buffer.h"
#include "dseek/io/config.h"
#include "dseek/model/kv_view.h"

namespace dseek {

class KVCache {
 public:
  // n_layers: main layers plus MTP layers that will run; capacity: positions; dtype: of the latent
  // rows (the V3.2 indexer keys stay float32).
  KVCache(const ModelConfig& c, int64_t n_layers, int64_t capacity, KVDtype dtype = KVDtype::kF32);

  KVCacheView view() { return view_; }
  int64_t capacity() const { return view_.capacity; }
  // Bytes held (latent rows + indexer keys).
  int64_t bytes() const {
    return latent_bytes_ + int64_t(index_keys_.size() * sizeof(float));
  }

 private:
  HugeBuffer latent_;  // float or bf16 rows
  int64_t latent_bytes_ = 0;
  HugeArray<float> index_keys_;
  KVCacheView view_;
};

}  // namespace dseek
