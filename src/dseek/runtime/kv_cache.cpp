#include "dseek/runtime/kv_cache.h"

namespace dseek {

KVCache::KVCache(const ModelConfig& c, int64_t n_layers, int64_t capacity, KVDtype dtype) {
  view_.n_layers = n_layers;
  view_.capacity = capacity;
  view_.latent_dim = c.kv_latent_dim();
  view_.latent_dtype = dtype;
  latent_bytes_ = n_layers * capacity * view_.latent_dim * kv_value_bytes(dtype);
  latent_ = HugeBuffer(size_t(latent_bytes_), "KV cache");  // zeroed, on huge pages (fewer TLB misses at depth)
  view_.latent = latent_.data();
  if (c.has_indexer()) {
    view_.index_dim = c.index_head_dim + 1;  // E4M3 values + their scale (IndexerParams::key_row)
    index_keys_ = HugeArray<float>(size_t(n_layers * capacity * view_.index_dim), "KV cache indexer keys");
    view_.index_keys = index_keys_.data();
  }
}

}  // namespace dseek
