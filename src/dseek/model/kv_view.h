// The model's view of one sequence's KV cache. The runtime owns the memory (allocation, paging,
// eviction); the model only reads and writes rows through this view.
//
// MLA caches the latent form only: per layer and position, kv_lora_rank values of the normalised
// c_kv plus qk_rope_head_dim values of the rotated, head-shared k_pe (576 floats at V3 size).
#pragma once

#include <cstdint>

namespace dseek {

struct KVCacheView {
  float* latent = nullptr;      // (n_layers, capacity, kv_lora_rank + qk_rope_head_dim)
  float* index_keys = nullptr;  // (n_layers, capacity, index_head_dim + 1): V3.2 indexer keys + scale, else null
  int64_t n_layers = 0;         // main layers, then MTP layers
  int64_t capacity = 0;         // positions
  int64_t latent_dim = 0;
  int64_t index_dim = 0;

  float* layer_latent(int64_t l) const { return latent + l * capacity * latent_dim; }
  float* layer_index_keys(int64_t l) const { return index_keys ? index_keys + l * capacity * index_dim : nullptr; }
};

}  // namespace dseek
