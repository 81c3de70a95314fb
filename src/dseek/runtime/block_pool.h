// Block allocator and prefix cache of the server's paged latent KV cache (docs/server.md,
// "Paged KV cache and prefix caching").
//
// Pure bookkeeping over block ids [0, n_blocks): the float storage lives elsewhere and is indexed
// by these ids. Each sequence owns a block table (one id per block_size positions); blocks are
// reference counted so sequences with a common prompt prefix can share them.
//
// Every block is in exactly one state:
//   used       refcount > 0 (it may also be registered in the prefix index)
//   evictable  refcount 0, registered: keeps its KV for a later request, in an LRU list
//   free       refcount 0, not registered: on the free list
// so used_blocks() + free_blocks() + (available_blocks() - free_blocks()) == n_blocks() always.
//
// Prefix index: a FULL block at position i of a sequence is keyed by the hash chain
// h_i = chain_hash(h_{i-1}, tokens of block i), h_{-1} = kHashSeed, i.e. by the whole prefix
// tokens[0, (i+1)*B). The hash only finds a candidate; a block is returned only when its stored
// tokens equal the query's and its stored parent is the block matched at i-1, so by induction the
// whole prefix is compared and a 64-bit collision can cost a cache hit, never wrong KV. Registered
// blocks form a tree (each one's parent is registered too): evicting a block also drops its
// registered descendants from the index, which could never be matched again without it.
//
// Not thread-safe by design: the scheduler thread owns the pool and is its only caller.
// All operations are O(1) (amortized) except match_prefix / register_full, which are O(tokens).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dseek {

class BlockPool {
 public:
  // The chain step: the hash of the prefix through a block from the hash through the previous
  // block and the block's B tokens. Replaceable so tests can force collisions.
  using ChainHash = uint64_t (*)(uint64_t prev, std::span<const int32_t> block_tokens);
  static constexpr uint64_t kHashSeed = 0x6473656b2d6b7631ull;  // h_{-1}, "dseek-kv1"
  // Default ChainHash: the splitmix64 finalizer applied per token (a bijection of the running
  // state for each token value, so different tokens after an equal prefix never merge early).
  static uint64_t chain_hash(uint64_t prev, std::span<const int32_t> block_tokens);

  // Throws dseek::Error on n_blocks < 1, block_size < 1, or n_blocks >= 2^30 (ids are int32 and
  // the index table holds 2 * n_blocks slots).
  BlockPool(int64_t n_blocks, int64_t block_size, ChainHash hash = &BlockPool::chain_hash);

  int64_t n_blocks() const { return n_blocks_; }
  int64_t block_size() const { return block_size_; }

  // A new, empty, private block (refcount 1). When no block is free, evicts the least recently
  // released evictable block (and its registered descendants, see above). -1 when every block is
  // in use.
  int32_t allocate();
  // Drops one reference. At refcount 0 a registered block becomes evictable (most recently used
  // end of the LRU); an unregistered one returns to the free list. Throws on a block that is not
  // in use.
  void release(int32_t block);
  // Releases a block table last block first, so that a prefix's tail is evicted before its head
  // (evicting the head first would drop the whole chain from the index at once).
  void release_blocks(std::span<const int32_t> blocks);
  // +1 reference (e.g. a forked sequence sharing the block). Throws on a block not in use: a
  // cached block with refcount 0 is taken through match_prefix().
  void retain(int32_t block);
  int32_t refcount(int32_t block) const;
  bool is_registered(int32_t block) const;

  struct Match {
    std::vector<int32_t> blocks;  // (k) block table for tokens[0, k*B), one reference taken on each
    int64_t n_tokens = 0;         // k * B
  };
  // The longest run of cached full blocks holding tokens[0, k*B) with k*B <= max_tokens (the
  // caller passes prompt_len - 1 so at least one prompt token is recomputed and yields logits).
  // Takes a reference on each returned block, moving evictable ones out of the LRU.
  // Throws on max_tokens < 0.
  Match match_prefix(std::span<const int32_t> tokens, int64_t max_tokens);

  // Registers `block` (in use by the caller, full) as holding the last B tokens of
  // tokens_through_block, which is the sequence's tokens [0, (i+1)*B) for block position i.
  // Returns false, leaving the index unchanged, when:
  //   - an entry for this prefix already exists (the existing block is kept; the caller keeps
  //     using its own block, which returns to the free list when released), or `block` is it;
  //   - the prefix through block i-1 is not in the index (evicted, or its registration was
  //     refused), since an entry without its parent could never be matched;
  //   - another prefix with the same 64-bit key holds the slot (a hash collision).
  // Throws when the span is empty or not a multiple of B, when `block` is not in use, or when it
  // is already registered for a different prefix.
  bool register_full(int32_t block, std::span<const int32_t> tokens_through_block);

  // Statistics for /metrics.
  int64_t used_blocks() const { return n_blocks_ - available_blocks(); }  // refcount > 0
  // Registered in the prefix index (used or evictable).
  int64_t cached_blocks() const { return n_registered_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }  // allocatable without eviction
  int64_t available_blocks() const { return free_blocks() + n_evictable_; }  // free + evictable
  int64_t prefix_lookups() const { return prefix_lookups_; }        // match_prefix calls
  int64_t prefix_hit_tokens() const { return prefix_hit_tokens_; }  // sum of Match::n_tokens
  // Sum over match_prefix calls of min(tokens.size(), max_tokens).
  int64_t prefix_query_tokens() const { return prefix_query_tokens_; }
  // Evictable blocks freed by allocate(): each LRU victim plus its evictable descendants.
  int64_t evictions() const { return evictions_; }

  // Walks every structure and throws dseek::Error on an inconsistency (state counts, LRU and
  // free list membership, index lookups, tree links). O(n_blocks * B); for tests.
  void check_invariants() const;

 private:
  static constexpr int32_t kNone = -1;

  struct Block {
    int32_t refcount = 0;
    bool registered = false;
    uint64_t key = 0;           // chain hash of the prefix through this block, when registered
    int32_t parent = kNone;     // registered block before it in the prefix (kNone at position 0)
    int32_t first_child = kNone;  // registered blocks whose parent this is: a doubly linked list
    int32_t next_sibling = kNone;
    int32_t prev_sibling = kNone;
    int32_t lru_prev = kNone;   // LRU links, while evictable
    int32_t lru_next = kNone;
  };

  void check_id(int32_t block, const char* op) const;
  std::span<const int32_t> stored_tokens(int32_t block) const;
  // The registered block for `key` whose parent is `parent` and whose tokens equal
  // `block_tokens`, or kNone.
  int32_t find_verified(uint64_t key, int32_t parent, std::span<const int32_t> block_tokens) const;

  // Open-addressed index from key to block id (linear probing, backward-shift deletion).
  size_t home_slot(uint64_t key) const { return size_t(key) & slot_mask_; }
  int32_t index_find(uint64_t key) const;
  void index_insert(int32_t block);
  void index_erase(int32_t block);

  void lru_push_back(int32_t block);
  void lru_remove(int32_t block);
  void unlink_from_parent(int32_t block);
  // Removes `block` and all its registered descendants from the index; those with refcount 0
  // go to the free list.
  void unregister_subtree(int32_t block);

  int64_t n_blocks_;
  int64_t block_size_;
  ChainHash hash_;

  std::vector<Block> blocks_;     // (n_blocks)
  std::vector<int32_t> tokens_;   // (n_blocks, block_size) tokens of registered blocks
  std::vector<int32_t> free_;     // stack of free block ids
  std::vector<int32_t> slots_;    // (pow2 >= 2 * n_blocks) block id or kNone
  size_t slot_mask_ = 0;
  std::vector<int32_t> scratch_;  // (<= n_blocks) work stack of unregister_subtree
  int32_t lru_head_ = kNone;      // least recently released evictable block
  int32_t lru_tail_ = kNone;
  int64_t n_evictable_ = 0;
  int64_t n_registered_ = 0;

  int64_t prefix_lookups_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t prefix_query_tokens_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace dseek
