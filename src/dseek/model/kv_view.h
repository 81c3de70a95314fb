// The model's view of one sequence's KV cache. The runtime owns the memory (allocation, paging,
// eviction); the model only reads and writes rows through this view.
//
// MLA caches the latent form only: per layer and position, kv_lora_rank values of the normalised
// c_kv plus qk_rope_head_dim values of the rotated, head-shared k_pe (576 floats at V3 size).
// V3.2 also caches one lightning-indexer key row (index_head_dim values + their FP8 scale).
//
// Two layouts share the view: contiguous (one sequence owns capacity rows per layer) and paged
// (rows live in fixed-size blocks of a pool shared by many sequences; block_table maps a position's
// block index to a pool block, as in vLLM's PagedAttention).
#pragma once

#include <cstdint>

#include "dseek/core/error.h"

namespace dseek {

// Element type of the latent rows. float32 by default; bf16 halves the cache (DeepSeek's reference
// keeps its KV cache in the model's bf16): rows are rounded once when written, and every reader sees
// the rounded values (docs/model.md, "KV cache").
enum class KVDtype : uint8_t { kF32, kBF16 };
inline int64_t kv_value_bytes(KVDtype t) { return t == KVDtype::kBF16 ? 2 : 4; }

// One layer's rows of one sequence: row pos lives at slot(pos) of the layer's pool rows.
struct LayerRows {
  void* base = nullptr;              // the layer's first pool row
  int64_t dim = 0;                   // values per row
  const int32_t* blocks = nullptr;   // paged: pool block of each block_size positions; null = contiguous
  int64_t block_size = 0;
  KVDtype dtype = KVDtype::kF32;

  int64_t slot(int64_t pos) const {
    if (!blocks) return pos;
    return int64_t(blocks[pos / block_size]) * block_size + pos % block_size;
  }
  bool bf16() const { return dtype == KVDtype::kBF16; }
  // float32 rows only (the latent rows of an f32 cache, the V3.2 indexer keys).
  float* row(int64_t pos) const {
    DSEEK_CHECK(!bf16(), "KV cache: float32 access to bf16 rows");
    return static_cast<float*>(base) + slot(pos) * dim;
  }
  // The row in its stored type (what decode attention reads).
  const void* row_data(int64_t pos) const {
    return bf16() ? static_cast<const void*>(static_cast<const uint16_t*>(base) + slot(pos) * dim)
                  : static_cast<const void*>(static_cast<const float*>(base) + slot(pos) * dim);
  }
  // Rows [pos, pos + n) as float32 into dst (n * dim values); the rows must not cross a block.
  void read(int64_t pos, int64_t n, float* dst) const;
  // v (dim values) into row pos, rounded to bf16 for a bf16 cache.
  void write(int64_t pos, const float* v) const;
  explicit operator bool() const { return base != nullptr; }
};

struct KVCacheView {
  void* latent = nullptr;       // (n_layers, layer_rows, kv_lora_rank + qk_rope_head_dim) of latent_dtype
  KVDtype latent_dtype = KVDtype::kF32;
  float* index_keys = nullptr;  // (n_layers, layer_rows, index_head_dim + 1): V3.2 indexer keys + scale, else null
  int64_t n_layers = 0;         // main layers, then MTP layers
  int64_t capacity = 0;         // positions this sequence may use
  int64_t latent_dim = 0;
  int64_t index_dim = 0;
  // Paged layout only: the sequence's block table (capacity / block_size entries) and the pool's rows
  // per layer. Contiguous: block_table null and layer_rows == capacity.
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
  int64_t layer_rows = 0;

  int64_t rows_per_layer() const { return block_table ? layer_rows : capacity; }
  LayerRows latent_rows(int64_t l) const {
    const int64_t off = l * rows_per_layer() * latent_dim;
    void* base = latent_dtype == KVDtype::kBF16 ? static_cast<void*>(static_cast<uint16_t*>(latent) + off)
                                                : static_cast<void*>(static_cast<float*>(latent) + off);
    return {base, latent_dim, block_table, block_size, latent_dtype};
  }
  LayerRows index_key_rows(int64_t l) const {
    if (!index_keys) return {};
    return {index_keys + l * rows_per_layer() * index_dim, index_dim, block_table, block_size, KVDtype::kF32};
  }
};

// Where the T tokens of one forward call sit. One call may carry tokens of several sequences
// (continuous batching): sequence s owns tokens [seq_first[s], seq_first[s+1]), in position order,
// and token t is at position pos[t] of sequence seq[t].
struct TokenBatch {
  int64_t T = 0;
  int64_t n_seqs = 0;
  const int64_t* pos = nullptr;        // (T)
  const int32_t* seq = nullptr;        // (T)
  const int64_t* seq_first = nullptr;  // (n_seqs + 1)
};

}  // namespace dseek
