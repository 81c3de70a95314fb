#include "dseek/runtime/kv_cache.h"

namespace dseek {

KVCache::KVCache(const ModelConfig& c, int64_t n_layers, int64_t capacity) {
  view_.n_layers = n_layers;
  view_.capacity = capacity;
  view_.latent_dim = c.kv_latent_dim();
  latent_.assign(size_t(n_layers * capacity * view_.latent_dim), 0.f);
  view_.latent = latent_.data();
  if (c.has_indexer()) {
    view_.index_dim = c.index_head_dim + 1;  // E4M3 values + their scale (IndexerParams::key_row)
    index_keys_.assign(size_t(n_layers * capacity * view_.index_dim), 0.f);
    view_.index_keys = index_keys_.data();
  }
}

}  // namespace dseek
