#include "dseek/runtime/kv_cache.h"

namespace dseek {

KVCache::KVCache(const ModelConfig& c, int64_t n_layers, int64_t capacity, KVDtype dtype) {
  view_.n_layers = n_layers;
  view_.capacity = capacity;
  view_.latent_dim = c.kv_latent_dim();
  view_.latent_dtype = dtype;
  const size_t n = size_t(n_layers * capacity * view_.latent_dim);
  if (dtype == KVDtype::kBF16) {
    latent_bf16_.assign(n, 0);
    view_.latent = latent_bf16_.data();
  } else {
    latent_f32_.assign(n, 0.f);
    view_.latent = latent_f32_.data();
  }
  if (c.has_indexer()) {
    view_.index_dim = c.index_head_dim + 1;  // E4M3 values + their scale (IndexerParams::key_row)
    index_keys_.assign(size_t(n_layers * capacity * view_.index_dim), 0.f);
    view_.index_keys = index_keys_.data();
  }
}

}  // namespace dseek
