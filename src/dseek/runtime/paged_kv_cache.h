// The server's KV cache: one pool of fixed-size blocks of latent rows (and V3.2 indexer key rows)
// shared by every sequence, with a BlockPool doing allocation, eviction and prefix caching.
// A sequence is a block table; view(table) gives the model its KVCacheView.
#pragma once

#include <cstdint>
#include <vector>

#include "dseek/core/huge_buffer.h"
#include "dseek/io/config.h"
#include "dseek/model/kv_view.h"
#include "dseek/runtime/block_pool.h"

namespace dseek {

class PagedKVCache {
 public:
  // n_layers: main layers plus the MTP layers that will run; dtype: of the latent rows.
  PagedKVCache(const ModelConfig& c, int64_t n_layers, int64_t n_blocks, int64_t block_size,
               KVDtype dtype = KVDtype::kF32);

  // Bytes one block takes in every layer (what a memory budget divides by).
  static int64_t bytes_per_block(const ModelConfig& c, int64_t n_layers, int64_t block_size,
                                 KVDtype dtype = KVDtype::kF32);

  BlockPool& blocks() { return pool_; }
  const BlockPool& blocks() const { return pool_; }
  int64_t block_size() const { return pool_.block_size(); }
  int64_t bytes() const { return latent_bytes_ + index_floats_ * int64_t(sizeof(float)); }

  // The view of a sequence whose positions [0, table.size() * block_size) live in table's blocks.
  // The view points into `table`; keep it alive and unchanged while the view is used.
  KVCacheView view(const std::vector<int32_t>& table);

 private:
  BlockPool pool_;
  // Uninitialised on purpose: large allocations come from fresh zero pages that the OS maps on first
  // write, so a multi-GB budget costs nothing until blocks are used (and start-up stays instant).
  HugeBuffer latent_;               // (n_layers, n_blocks * block_size, latent_dim) of the dtype
  HugeArray<float> index_keys_;     // (n_layers, n_blocks * block_size, index_head_dim + 1) or empty
  int64_t latent_bytes_ = 0, index_floats_ = 0;
  KVCacheView base_;
};

}  // namespace dseek
