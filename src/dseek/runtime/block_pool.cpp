#include "dseek/runtime/block_pool.h"

#include <algorithm>
#include <string>

#include "dseek/core/error.h"

namespace dseek {

namespace {

// splitmix64 finalizer (Steele, Lea, Flood 2014): a bijection on 64 bits with full avalanche.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string block_str(int32_t block) { return "block " + std::to_string(block); }

}  // namespace

uint64_t BlockPool::chain_hash(uint64_t prev, std::span<const int32_t> block_tokens) {
  uint64_t h = prev;
  // Adding the golden-ratio constant keeps token 0 from being a fixed point of the step.
  for (int32_t t : block_tokens) h = mix64(h + 0x9e3779b97f4a7c15ull + uint64_t(uint32_t(t)));
  return h;
}

BlockPool::BlockPool(int64_t n_blocks, int64_t block_size, ChainHash hash)
    : n_blocks_(n_blocks), block_size_(block_size), hash_(hash) {
  if (n_blocks < 1 || n_blocks >= (int64_t(1) << 30))
    throw Error("BlockPool: n_blocks must be in [1, 2^30), got " + std::to_string(n_blocks));
  if (block_size < 1)
    throw Error("BlockPool: block_size must be >= 1, got " + std::to_string(block_size));
  if (hash == nullptr) throw Error("BlockPool: hash function is null");
  blocks_.resize(size_t(n_blocks));
  tokens_.assign(size_t(n_blocks * block_size), 0);
  // Stack order so that a fresh pool hands out 0, 1, 2, ...
  free_.reserve(size_t(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
  // Load factor <= 1/2 keeps linear-probing runs short.
  size_t n_slots = 1;
  while (n_slots < size_t(2 * n_blocks)) n_slots <<= 1;
  slots_.assign(n_slots, kNone);
  slot_mask_ = n_slots - 1;
  scratch_.reserve(size_t(n_blocks));
}

void BlockPool::check_id(int32_t block, const char* op) const {
  DSEEK_CHECK(block >= 0 && block < n_blocks_,
              std::string("BlockPool::") + op + ": " + block_str(block) + " out of range [0, " +
                  std::to_string(n_blocks_) + ")");
}

std::span<const int32_t> BlockPool::stored_tokens(int32_t block) const {
  return {tokens_.data() + size_t(block) * size_t(block_size_), size_t(block_size_)};
}

// ---- allocation and reference counts ----

int32_t BlockPool::allocate() {
  if (free_.empty()) {
    if (lru_head_ == kNone) return kNone;
    unregister_subtree(lru_head_);  // frees the victim (and its evictable descendants)
  }
  const int32_t b = free_.back();
  free_.pop_back();
  blocks_[size_t(b)].refcount = 1;
  return b;
}

void BlockPool::release(int32_t block) {
  check_id(block, "release");
  Block& bl = blocks_[size_t(block)];
  DSEEK_CHECK(bl.refcount > 0, "BlockPool::release: " + block_str(block) +
                                   " is not in use (refcount 0): double release?");
  if (--bl.refcount > 0) return;
  if (bl.registered) {
    lru_push_back(block);
  } else {
    free_.push_back(block);
  }
}

void BlockPool::release_blocks(std::span<const int32_t> blocks) {
  for (size_t i = blocks.size(); i-- > 0;) release(blocks[i]);
}

void BlockPool::retain(int32_t block) {
  check_id(block, "retain");
  Block& bl = blocks_[size_t(block)];
  DSEEK_CHECK(bl.refcount > 0, "BlockPool::retain: " + block_str(block) +
                                   " is not in use (refcount 0); cached blocks are taken "
                                   "through match_prefix");
  ++bl.refcount;
}

int32_t BlockPool::refcount(int32_t block) const {
  check_id(block, "refcount");
  return blocks_[size_t(block)].refcount;
}

bool BlockPool::is_registered(int32_t block) const {
  check_id(block, "is_registered");
  return blocks_[size_t(block)].registered;
}

// ---- prefix cache ----

int32_t BlockPool::find_verified(uint64_t key, int32_t parent,
                                 std::span<const int32_t> block_tokens) const {
  const int32_t b = index_find(key);
  if (b == kNone || blocks_[size_t(b)].parent != parent) return kNone;
  const std::span<const int32_t> stored = stored_tokens(b);
  return std::equal(stored.begin(), stored.end(), block_tokens.begin()) ? b : kNone;
}

BlockPool::Match BlockPool::match_prefix(std::span<const int32_t> tokens, int64_t max_tokens) {
  DSEEK_CHECK(max_tokens >= 0, "BlockPool::match_prefix: max_tokens must be >= 0, got " +
                                   std::to_string(max_tokens));
  const int64_t n_query = std::min(int64_t(tokens.size()), max_tokens);
  ++prefix_lookups_;
  prefix_query_tokens_ += n_query;
  Match m;
  const int64_t B = block_size_;
  uint64_t h = kHashSeed;
  int32_t parent = kNone;
  for (int64_t i = 0; (i + 1) * B <= n_query; ++i) {
    const std::span<const int32_t> bt = tokens.subspan(size_t(i * B), size_t(B));
    h = hash_(h, bt);
    const int32_t b = find_verified(h, parent, bt);
    if (b == kNone) break;
    Block& bl = blocks_[size_t(b)];
    if (bl.refcount == 0) lru_remove(b);
    ++bl.refcount;
    m.blocks.push_back(b);
    parent = b;
  }
  m.n_tokens = int64_t(m.blocks.size()) * B;
  prefix_hit_tokens_ += m.n_tokens;
  return m;
}

bool BlockPool::register_full(int32_t block, std::span<const int32_t> tokens_through_block) {
  check_id(block, "register_full");
  const int64_t B = block_size_;
  const int64_t n = int64_t(tokens_through_block.size());
  DSEEK_CHECK(n > 0 && n % B == 0,
              "BlockPool::register_full: " + block_str(block) + ": token span of " +
                  std::to_string(n) + " is not a positive multiple of block_size " +
                  std::to_string(B));
  Block& bl = blocks_[size_t(block)];
  DSEEK_CHECK(bl.refcount > 0, "BlockPool::register_full: " + block_str(block) +
                                   " is not in use (refcount 0)");
  const int64_t pos = n / B - 1;  // the block's position in the sequence
  // Walk the parent chain as match_prefix would; every level must already be cached.
  uint64_t h = kHashSeed;
  int32_t parent = kNone;
  bool chain_ok = true;
  for (int64_t i = 0; i < pos; ++i) {
    const std::span<const int32_t> bt = tokens_through_block.subspan(size_t(i * B), size_t(B));
    h = hash_(h, bt);
    if (chain_ok) {
      parent = find_verified(h, parent, bt);
      chain_ok = parent != kNone;
    }
  }
  const std::span<const int32_t> own = tokens_through_block.subspan(size_t(pos * B), size_t(B));
  h = hash_(h, own);
  if (bl.registered) {
    // Registering a block that was itself matched from the cache is a harmless no-op.
    DSEEK_CHECK(chain_ok && find_verified(h, parent, own) == block,
                "BlockPool::register_full: " + block_str(block) +
                    " is already registered for a different prefix");
    return false;
  }
  if (!chain_ok || index_find(h) != kNone) return false;
  bl.registered = true;
  bl.key = h;
  bl.parent = parent;
  std::copy(own.begin(), own.end(), tokens_.begin() + ptrdiff_t(size_t(block) * size_t(B)));
  if (parent != kNone) {
    Block& p = blocks_[size_t(parent)];
    bl.next_sibling = p.first_child;
    bl.prev_sibling = kNone;
    if (p.first_child != kNone) blocks_[size_t(p.first_child)].prev_sibling = block;
    p.first_child = block;
  }
  index_insert(block);
  ++n_registered_;
  return true;
}

void BlockPool::unlink_from_parent(int32_t block) {
  Block& bl = blocks_[size_t(block)];
  if (bl.parent == kNone) return;
  if (bl.prev_sibling != kNone) {
    blocks_[size_t(bl.prev_sibling)].next_sibling = bl.next_sibling;
  } else {
    blocks_[size_t(bl.parent)].first_child = bl.next_sibling;
  }
  if (bl.next_sibling != kNone) blocks_[size_t(bl.next_sibling)].prev_sibling = bl.prev_sibling;
  bl.parent = bl.next_sibling = bl.prev_sibling = kNone;
}

void BlockPool::unregister_subtree(int32_t block) {
  unlink_from_parent(block);
  scratch_.clear();
  scratch_.push_back(block);
  while (!scratch_.empty()) {
    const int32_t b = scratch_.back();
    scratch_.pop_back();
    Block& bl = blocks_[size_t(b)];
    // Children are dropped wholesale, so their sibling links need no unlinking.
    for (int32_t c = bl.first_child; c != kNone;) {
      Block& cb = blocks_[size_t(c)];
      const int32_t next = cb.next_sibling;
      cb.parent = cb.next_sibling = cb.prev_sibling = kNone;
      scratch_.push_back(c);
      c = next;
    }
    bl.first_child = kNone;
    index_erase(b);
    bl.registered = false;
    --n_registered_;
    if (bl.refcount == 0) {
      lru_remove(b);
      if (b != block) free_.push_back(b);
      ++evictions_;
    }
  }
  // Pushed last so that allocate() hands out the LRU victim itself.
  if (blocks_[size_t(block)].refcount == 0) free_.push_back(block);
}

// ---- LRU of evictable blocks ----

void BlockPool::lru_push_back(int32_t block) {
  Block& bl = blocks_[size_t(block)];
  bl.lru_prev = lru_tail_;
  bl.lru_next = kNone;
  if (lru_tail_ != kNone) {
    blocks_[size_t(lru_tail_)].lru_next = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++n_evictable_;
}

void BlockPool::lru_remove(int32_t block) {
  Block& bl = blocks_[size_t(block)];
  if (bl.lru_prev != kNone) {
    blocks_[size_t(bl.lru_prev)].lru_next = bl.lru_next;
  } else {
    lru_head_ = bl.lru_next;
  }
  if (bl.lru_next != kNone) {
    blocks_[size_t(bl.lru_next)].lru_prev = bl.lru_prev;
  } else {
    lru_tail_ = bl.lru_prev;
  }
  bl.lru_prev = bl.lru_next = kNone;
  --n_evictable_;
}

// ---- open-addressed index ----

int32_t BlockPool::index_find(uint64_t key) const {
  for (size_t s = home_slot(key);; s = (s + 1) & slot_mask_) {
    const int32_t b = slots_[s];
    if (b == kNone) return kNone;
    if (blocks_[size_t(b)].key == key) return b;
  }
}

void BlockPool::index_insert(int32_t block) {
  // At most n_blocks entries in >= 2 * n_blocks slots, so an empty slot always exists.
  size_t s = home_slot(blocks_[size_t(block)].key);
  while (slots_[s] != kNone) s = (s + 1) & slot_mask_;
  slots_[s] = block;
}

void BlockPool::index_erase(int32_t block) {
  size_t hole = home_slot(blocks_[size_t(block)].key);
  while (slots_[hole] != block) hole = (hole + 1) & slot_mask_;
  // Backward-shift deletion: move later entries of the run into the hole unless their home slot
  // lies cyclically in (hole, j], so every entry stays reachable from its home without tombstones.
  for (size_t j = (hole + 1) & slot_mask_; slots_[j] != kNone; j = (j + 1) & slot_mask_) {
    const size_t home = home_slot(blocks_[size_t(slots_[j])].key);
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = kNone;
}

// ---- consistency check for tests ----

void BlockPool::check_invariants() const {
  const auto fail = [](const std::string& msg) { throw Error("BlockPool invariant: " + msg); };
  std::vector<uint8_t> on_free(size_t(n_blocks_), 0), on_lru(size_t(n_blocks_), 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= n_blocks_ || on_free[size_t(b)]) fail("bad or repeated free-list entry");
    on_free[size_t(b)] = 1;
  }
  int64_t n_lru = 0;
  for (int32_t b = lru_head_, prev = kNone; b != kNone; prev = b, b = blocks_[size_t(b)].lru_next) {
    if (on_lru[size_t(b)] || blocks_[size_t(b)].lru_prev != prev) fail("broken LRU links");
    if (blocks_[size_t(b)].lru_next == kNone && b != lru_tail_) fail("LRU tail mismatch");
    on_lru[size_t(b)] = 1;
    ++n_lru;
  }
  if (n_lru != n_evictable_) fail("evictable count mismatch");
  int64_t n_reg = 0, n_slots_used = 0;
  for (int32_t s : slots_) n_slots_used += s != kNone;
  for (int32_t b = 0; b < n_blocks_; ++b) {
    const Block& bl = blocks_[size_t(b)];
    const std::string name = block_str(b);
    if (bl.refcount < 0) fail(name + " has a negative refcount");
    const bool want_free = bl.refcount == 0 && !bl.registered;
    const bool want_lru = bl.refcount == 0 && bl.registered;
    if (bool(on_free[size_t(b)]) != want_free) fail(name + " free-list membership is wrong");
    if (bool(on_lru[size_t(b)]) != want_lru) fail(name + " LRU membership is wrong");
    if (!bl.registered) {
      if (bl.parent != kNone || bl.first_child != kNone) fail(name + " unregistered but linked");
      continue;
    }
    ++n_reg;
    if (index_find(bl.key) != b) fail(name + " not found under its key");
    if (bl.parent != kNone) {
      const Block& p = blocks_[size_t(bl.parent)];
      if (!p.registered) fail(name + " has an unregistered parent");
      bool listed = false;
      for (int32_t c = p.first_child; c != kNone; c = blocks_[size_t(c)].next_sibling)
        listed |= c == b;
      if (!listed) fail(name + " missing from its parent's children");
      if (hash_(p.key, stored_tokens(b)) != bl.key) fail(name + " key not chained on its parent");
    } else if (hash_(kHashSeed, stored_tokens(b)) != bl.key) {
      fail(name + " key is not chained on the seed");
    }
    for (int32_t c = bl.first_child; c != kNone; c = blocks_[size_t(c)].next_sibling)
      if (blocks_[size_t(c)].parent != b) fail(name + " lists a child that is not its own");
  }
  if (n_reg != n_registered_ || n_slots_used != n_reg) fail("registered count mismatch");
}

}  // namespace dseek
