#include "dseek/runtime/paged_kv_cache.h"

#include "dseek/core/error.h"

namespace dseek {

int64_t PagedKVCache::bytes_per_block(const ModelConfig& c, int64_t n_layers, int64_t block_size, KVDtype dtype) {
  const int64_t row = c.kv_latent_dim() * kv_value_bytes(dtype) +
                      (c.has_indexer() ? (c.index_head_dim + 1) * int64_t(sizeof(float)) : 0);
  return n_layers * block_size * row;
}

PagedKVCache::PagedKVCache(const ModelConfig& c, int64_t n_layers, int64_t n_blocks, int64_t block_size,
                           KVDtype dtype)
    : pool_(n_blocks, block_size) {
  base_.n_layers = n_layers;
  base_.latent_dim = c.kv_latent_dim();
  base_.latent_dtype = dtype;
  base_.block_size = block_size;
  base_.layer_rows = n_blocks * block_size;
  latent_bytes_ = n_layers * base_.layer_rows * base_.latent_dim * kv_value_bytes(dtype);
  // Huge pages (core/huge_buffer.h): the cache is the server's largest allocation, and the
  // attention's gathers of block rows would miss the TLB on 4 KiB pages.
  latent_ = HugeBuffer(size_t(latent_bytes_), "paged KV cache");  // bytes: storage for float or bf16 rows
  base_.latent = latent_.data();
  if (c.has_indexer()) {
    base_.index_dim = c.index_head_dim + 1;
    index_floats_ = n_layers * base_.layer_rows * base_.index_dim;
    index_keys_ = HugeArray<float>(size_t(index_floats_), "paged indexer keys");
    base_.index_keys = index_keys_.data();
  }
}

KVCacheView PagedKVCache::view(const std::vector<int32_t>& table) {
  KVCacheView v = base_;
  v.block_table = table.data();
  v.capacity = int64_t(table.size()) * base_.block_size;
  return v;
}

}  // namespace dseek
