// Contiguous latent KV cache for one sequence (the paged, multi-sequence cache of the server
// builds on the same row format).
#pragma once

#include <cstdint>
#include <vector>

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
    return int64_t(latent_f32_.size() * sizeof(float) + latent_bf16_.size() * sizeof(uint16_t) +
                   index_keys_.size() * sizeof(float));
  }

 private:
  std::vector<float> latent_f32_;
  std::vector<uint16_t> latent_bf16_;
  std::vector<float> index_keys_;
  KVCacheView view_;
};

}  // namespace dseek
