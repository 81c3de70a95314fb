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
  // n_layers: main layers plus MTP layers that will run; capacity: positions.
  KVCache(const ModelConfig& c, int64_t n_layers, int64_t capacity);

  KVCacheView view() { return view_; }
  int64_t capacity() const { return view_.capacity; }
  // Bytes held (latent rows + indexer keys).
  int64_t bytes() const { return int64_t((latent_.size() + index_keys_.size()) * sizeof(float)); }

 private:
  std::vector<float> latent_;
  std::vector<float> index_keys_;
  KVCacheView view_;
};

}  // namespace dseek
