// BlockPool: allocation and refcounts, prefix matching (shared prefixes, the max_tokens cap,
// forced hash collisions), LRU eviction, statistics, misuse errors, and a randomized run of
// sequences against a reference model of the invariants.
#include "dseek/runtime/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "dseek/core/error.h"

namespace dseek {
namespace {

using test::expect_error;
using Tokens = std::vector<int32_t>;

Tokens iota_tokens(int64_t n, int32_t start) {
  Tokens t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

std::span<const int32_t> head(const Tokens& t, int64_t n) { return {t.data(), size_t(n)}; }

// Fills a sequence's full blocks from scratch and registers each one, as the scheduler does
// after prefill. Returns the block table.
std::vector<int32_t> prefill(BlockPool& pool, const Tokens& tokens) {
  const int64_t B = pool.block_size();
  std::vector<int32_t> table;
  for (int64_t i = 0; i * B < int64_t(tokens.size()); ++i) {
    const int32_t b = pool.allocate();
    EXPECT_GE(b, 0);
    table.push_back(b);
    if ((i + 1) * B <= int64_t(tokens.size())) pool.register_full(b, head(tokens, (i + 1) * B));
  }
  return table;
}

// Keys every block by its own tokens only, so equal blocks after different prefixes collide.
uint64_t hash_ignoring_prefix(uint64_t, std::span<const int32_t> block_tokens) {
  return BlockPool::chain_hash(BlockPool::kHashSeed, block_tokens);
}
uint64_t hash_constant(uint64_t, std::span<const int32_t>) { return 42; }

TEST(BlockPool, RejectsBadSizes) {
  expect_error([] { BlockPool(0, 16); }, {"n_blocks", "got 0"});
  expect_error([] { BlockPool(4, 0); }, {"block_size", "got 0"});
  expect_error([] { BlockPool(-3, 16); }, {"n_blocks"});
  expect_error([] { BlockPool(4, -1); }, {"block_size"});
  BlockPool pool(3, 16);
  EXPECT_EQ(pool.n_blocks(), 3);
  EXPECT_EQ(pool.block_size(), 16);
}

TEST(BlockPool, AllocatesUntilExhausted) {
  BlockPool pool(4, 2);
  for (int32_t i = 0; i < 4; ++i) EXPECT_EQ(pool.allocate(), i);  // fresh pool: 0, 1, 2, ...
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.used_blocks(), 4);
  EXPECT_EQ(pool.free_blocks(), 0);
  EXPECT_EQ(pool.available_blocks(), 0);
  pool.check_invariants();
}

TEST(BlockPool, ReleaseReturnsToFreeList) {
  BlockPool pool(3, 2);
  const int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  EXPECT_EQ(pool.allocate(), -1);
  pool.release(b);
  EXPECT_EQ(pool.free_blocks(), 1);
  EXPECT_EQ(pool.refcount(b), 0);
  EXPECT_EQ(pool.allocate(), b);  // the only free block
  EXPECT_EQ(pool.refcount(b), 1);
  pool.release(a);
  pool.release(b);
  pool.release(c);
  EXPECT_EQ(pool.free_blocks(), 3);
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.evictions(), 0);
  pool.check_invariants();
}

TEST(BlockPool, RetainReleaseRefcounts) {
  BlockPool pool(2, 4);
  const int32_t a = pool.allocate();
  pool.retain(a);
  pool.retain(a);
  EXPECT_EQ(pool.refcount(a), 3);
  pool.release(a);
  pool.release(a);
  EXPECT_EQ(pool.refcount(a), 1);
  EXPECT_EQ(pool.free_blocks(), 1);  // still in use
  pool.release(a);
  EXPECT_EQ(pool.refcount(a), 0);
  EXPECT_EQ(pool.free_blocks(), 2);
  pool.check_invariants();
}

TEST(BlockPool, MisuseThrows) {
  BlockPool pool(2, 4);
  expect_error([&] { pool.release(0); }, {"release", "block 0", "not in use"});
  expect_error([&] { pool.retain(1); }, {"retain", "block 1", "not in use"});
  expect_error([&] { pool.release(2); }, {"release", "block 2", "out of range [0, 2)"});
  expect_error([&] { pool.retain(-1); }, {"retain", "out of range"});
  expect_error([&] { (void)pool.refcount(7); }, {"refcount", "out of range"});
  const Tokens t = iota_tokens(8, 0);
  expect_error([&] { pool.register_full(0, head(t, 4)); }, {"register_full", "not in use"});
  const int32_t a = pool.allocate();
  expect_error([&] { pool.register_full(a, head(t, 3)); }, {"not a positive multiple", "3"});
  expect_error([&] { pool.register_full(a, head(t, 0)); }, {"not a positive multiple"});
  expect_error([&] { pool.register_full(9, head(t, 4)); }, {"out of range"});
  expect_error([&] { pool.match_prefix(t, -1); }, {"max_tokens", "-1"});
  EXPECT_TRUE(pool.register_full(a, head(t, 4)));
  const Tokens other = iota_tokens(4, 100);
  expect_error([&] { pool.register_full(a, other); }, {"already registered"});
  pool.release(a);
  expect_error([&] { pool.release(a); }, {"double release"});
  pool.check_invariants();  // no error left the pool inconsistent
}

TEST(BlockPool, SharedPrefixMatchesFullBlocks) {
  BlockPool pool(8, 4);
  // Two sequences share 10 tokens = 2.5 blocks, then differ.
  Tokens s1 = iota_tokens(16, 0);
  Tokens s2 = s1;
  for (size_t i = 10; i < s2.size(); ++i) s2[i] += 1000;
  const std::vector<int32_t> t1 = prefill(pool, s1);
  EXPECT_EQ(pool.cached_blocks(), 4);
  const BlockPool::Match m = pool.match_prefix(s2, int64_t(s2.size()) - 1);
  EXPECT_EQ(m.n_tokens, 8);
  ASSERT_EQ(m.blocks.size(), 2u);
  EXPECT_EQ(m.blocks[0], t1[0]);
  EXPECT_EQ(m.blocks[1], t1[1]);
  EXPECT_EQ(pool.refcount(t1[0]), 2);
  EXPECT_EQ(pool.refcount(t1[2]), 1);
  // The third block differs in its last two tokens: no match even though 2 of 4 agree.
  EXPECT_EQ(pool.match_prefix(head(s2, 12), 12).n_tokens, 8);
  // A different first token matches nothing.
  Tokens s3 = s1;
  s3[0] = -5;
  EXPECT_EQ(pool.match_prefix(s3, 16).n_tokens, 0);
  // An identical sequence matches all 4 blocks.
  EXPECT_EQ(pool.match_prefix(s1, 16).n_tokens, 16);
  pool.check_invariants();
}

TEST(BlockPool, MaxTokensCap) {
  BlockPool pool(8, 4);
  const Tokens s = iota_tokens(12, 7);
  prefill(pool, s);
  // The caller passes prompt_len - 1: a fully cached 12-token prompt reuses 2 blocks, not 3.
  EXPECT_EQ(pool.match_prefix(s, 11).n_tokens, 8);
  EXPECT_EQ(pool.match_prefix(s, 12).n_tokens, 12);
  EXPECT_EQ(pool.match_prefix(s, 100).n_tokens, 12);
  EXPECT_EQ(pool.match_prefix(s, 4).n_tokens, 4);
  EXPECT_EQ(pool.match_prefix(s, 3).n_tokens, 0);
  EXPECT_EQ(pool.match_prefix(s, 0).n_tokens, 0);
  EXPECT_EQ(pool.match_prefix(head(s, 7), 100).n_tokens, 4);  // shorter query than the cap
}

TEST(BlockPool, HashCollisionComparesTokens) {
  BlockPool pool(4, 2, &hash_constant);  // every block gets the same key
  const Tokens a = {1, 2}, b = {3, 4};
  const int32_t x = pool.allocate();
  EXPECT_TRUE(pool.register_full(x, a));
  EXPECT_EQ(pool.match_prefix(b, 2).n_tokens, 0);  // same key, different tokens
  const int32_t y = pool.allocate();
  EXPECT_FALSE(pool.register_full(y, b));  // the slot is taken by another prefix
  EXPECT_FALSE(pool.is_registered(y));
  const BlockPool::Match m = pool.match_prefix(a, 2);
  ASSERT_EQ(m.blocks.size(), 1u);
  EXPECT_EQ(m.blocks[0], x);
  pool.check_invariants();
}

TEST(BlockPool, HashCollisionChecksParent) {
  // Keys ignore the prefix, so block 1 of [P, Q] and of [R, Q] collide; the tokens of block 1
  // are equal too, and only the stored parent tells them apart.
  BlockPool pool(8, 2, &hash_ignoring_prefix);
  const Tokens pq = {1, 1, 5, 5}, rq = {2, 2, 5, 5};
  const std::vector<int32_t> t1 = prefill(pool, pq);
  const int32_t r = pool.allocate();
  EXPECT_TRUE(pool.register_full(r, head(rq, 2)));
  const int32_t q = pool.allocate();
  EXPECT_FALSE(pool.register_full(q, rq));  // key taken by [P, Q]'s block 1
  const BlockPool::Match m = pool.match_prefix(rq, 4);
  ASSERT_EQ(m.blocks.size(), 1u);  // block 1 of [P, Q] holds KV computed after P, not R
  EXPECT_EQ(m.blocks[0], r);
  EXPECT_EQ(pool.match_prefix(pq, 4).blocks, t1);
  pool.check_invariants();
}

TEST(BlockPool, RegisterDuplicateKeepsExisting) {
  BlockPool pool(4, 2);
  const Tokens s = {1, 2, 3, 4};
  const std::vector<int32_t> t1 = prefill(pool, s);
  // A second sequence computed the same prefix itself (e.g. both were in one batch).
  const int32_t dup = pool.allocate();
  EXPECT_FALSE(pool.register_full(dup, head(s, 2)));
  EXPECT_FALSE(pool.is_registered(dup));
  EXPECT_EQ(pool.cached_blocks(), 2);
  // Registering a block that was matched from the cache is a no-op.
  const BlockPool::Match m = pool.match_prefix(s, 4);
  EXPECT_FALSE(pool.register_full(m.blocks[1], s));
  pool.release(dup);
  EXPECT_EQ(pool.refcount(dup), 0);
  EXPECT_EQ(pool.free_blocks(), 2);  // the duplicate went back to the free list, not the cache
  pool.check_invariants();
}

TEST(BlockPool, RegisterNeedsCachedParent) {
  BlockPool pool(4, 2);
  const Tokens s = {1, 2, 3, 4};
  const int32_t b0 = pool.allocate(), b1 = pool.allocate();
  EXPECT_FALSE(pool.register_full(b1, s));  // block 0 of the prefix is not cached
  EXPECT_TRUE(pool.register_full(b0, head(s, 2)));
  EXPECT_TRUE(pool.register_full(b1, s));
  EXPECT_EQ(pool.match_prefix(s, 4).n_tokens, 4);
}

TEST(BlockPool, LruEvictionOrder) {
  BlockPool pool(4, 2);
  const Tokens a = {1, 1}, b = {2, 2}, c = {3, 3};
  const int32_t xa = pool.allocate(), xb = pool.allocate(), xc = pool.allocate();
  pool.register_full(xa, a);
  pool.register_full(xb, b);
  pool.register_full(xc, c);
  // Released in the order b, a, c: that is the eviction order.
  pool.release(xb);
  pool.release(xa);
  pool.release(xc);
  EXPECT_EQ(pool.free_blocks(), 1);
  EXPECT_EQ(pool.available_blocks(), 4);
  EXPECT_EQ(pool.cached_blocks(), 3);
  const int32_t f = pool.allocate();  // the free block first, no eviction
  EXPECT_EQ(pool.evictions(), 0);
  EXPECT_EQ(pool.allocate(), xb);
  EXPECT_EQ(pool.evictions(), 1);
  EXPECT_EQ(pool.match_prefix(b, 2).n_tokens, 0);  // evicted: no longer matched
  // A hit moves `a` out of the LRU; releasing it again makes it the most recent.
  EXPECT_EQ(pool.match_prefix(a, 2).n_tokens, 2);
  pool.release(xa);
  EXPECT_EQ(pool.allocate(), xc);
  EXPECT_EQ(pool.allocate(), xa);
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.evictions(), 3);
  EXPECT_EQ(pool.cached_blocks(), 0);
  EXPECT_EQ(pool.match_prefix(a, 2).n_tokens, 0);
  EXPECT_EQ(pool.match_prefix(c, 2).n_tokens, 0);
  (void)f;
  pool.check_invariants();
}

TEST(BlockPool, CachedBlockInUseIsNeverEvicted) {
  BlockPool pool(3, 2);
  const Tokens s = {4, 4};
  const int32_t x = pool.allocate();
  pool.register_full(x, s);  // cached and in use
  const int32_t y = pool.allocate(), z = pool.allocate();
  EXPECT_EQ(pool.allocate(), -1);  // x is cached but referenced: not a victim
  pool.release(y);
  EXPECT_EQ(pool.allocate(), y);
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.refcount(x), 1);
  EXPECT_EQ(pool.evictions(), 0);
  // Shared by a second sequence, released by the first: still in use, still not a victim.
  EXPECT_EQ(pool.match_prefix(s, 2).blocks, std::vector<int32_t>{x});
  pool.release(x);
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.match_prefix(s, 2).n_tokens, 2);
  (void)z;
  pool.check_invariants();
}

TEST(BlockPool, EvictionDropsDescendants) {
  BlockPool pool(4, 2);
  const Tokens s = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> t = prefill(pool, s);
  // Head first on purpose: block 0 becomes the LRU victim while 1 and 2 are cached after it.
  pool.release(t[0]);
  pool.release(t[1]);
  pool.release(t[2]);
  pool.allocate();  // the one free block
  EXPECT_EQ(pool.allocate(), t[0]);
  // Blocks 1 and 2 could never be matched without block 0, so they were freed with it.
  EXPECT_EQ(pool.evictions(), 3);
  EXPECT_EQ(pool.cached_blocks(), 0);
  EXPECT_EQ(pool.free_blocks(), 2);
  pool.check_invariants();

  // release_blocks releases tail first, so the tail is evicted first and the head survives.
  BlockPool pool2(4, 2);
  const std::vector<int32_t> t2 = prefill(pool2, s);
  pool2.release_blocks(t2);
  pool2.allocate();
  EXPECT_EQ(pool2.allocate(), t2[2]);
  EXPECT_EQ(pool2.evictions(), 1);
  EXPECT_EQ(pool2.match_prefix(s, 6).n_tokens, 4);
  pool2.check_invariants();

  // A descendant in use leaves the index with its ancestor but stays allocated.
  BlockPool pool3(3, 2);
  const std::vector<int32_t> t3 = prefill(pool3, Tokens(s.begin(), s.begin() + 4));
  pool3.release(t3[0]);
  pool3.allocate();
  EXPECT_EQ(pool3.allocate(), t3[0]);
  EXPECT_FALSE(pool3.is_registered(t3[1]));
  EXPECT_EQ(pool3.refcount(t3[1]), 1);
  EXPECT_EQ(pool3.evictions(), 1);
  pool3.release(t3[1]);
  EXPECT_EQ(pool3.free_blocks(), 1);  // unregistered now, so back to the free list
  pool3.check_invariants();
}

TEST(BlockPool, Stats) {
  BlockPool pool(6, 4);
  const Tokens s = iota_tokens(10, 0);
  const std::vector<int32_t> t = prefill(pool, s);  // 3 blocks, 2 of them full
  EXPECT_EQ(pool.used_blocks(), 3);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_EQ(pool.free_blocks(), 3);
  EXPECT_EQ(pool.available_blocks(), 3);
  pool.release_blocks(t);
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_EQ(pool.free_blocks(), 4);
  EXPECT_EQ(pool.available_blocks(), 6);
  EXPECT_EQ(pool.prefix_lookups(), 0);
  const BlockPool::Match m1 = pool.match_prefix(s, 9);   // asks 9, gets 8
  const BlockPool::Match m2 = pool.match_prefix(s, 50);  // asks 10, gets 8
  const BlockPool::Match m3 = pool.match_prefix(iota_tokens(5, 99), 4);  // asks 4, gets 0
  EXPECT_EQ(pool.prefix_lookups(), 3);
  EXPECT_EQ(pool.prefix_query_tokens(), 9 + 10 + 4);
  EXPECT_EQ(pool.prefix_hit_tokens(), 16);
  EXPECT_EQ(pool.used_blocks(), 2);
  EXPECT_EQ(pool.refcount(t[0]), 2);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_EQ(pool.evictions(), 0);
  (void)m1;
  (void)m2;
  (void)m3;
  pool.check_invariants();
}

// ---- randomized run against a reference model ----

// The reference keeps, per block, the token prefix it holds KV for (set when the block fills)
// and the block tables of live sequences; refcounts are recounted from the tables. It checks
// that every matched block holds exactly the query's prefix, that matches are maximal over what
// is registered, and the block-state accounting, after every operation.
struct Reference {
  struct Seq {
    Tokens tokens;
    std::vector<int32_t> table;
  };
  std::vector<Seq> seqs;
  std::map<int32_t, Tokens> content;  // block -> tokens [0, end of block) once full

  // Longest k with a registered block for each prefix [0, (j+1)*B), j < k.
  int64_t expected_match_blocks(const BlockPool& pool, const Tokens& q, int64_t n_query) const {
    const int64_t B = pool.block_size();
    int64_t k = 0;
    for (; (k + 1) * B <= n_query; ++k) {
      bool found = false;
      for (const auto& [b, c] : content)
        found |= pool.is_registered(b) && int64_t(c.size()) == (k + 1) * B &&
                 std::equal(c.begin(), c.end(), q.begin());
      if (!found) break;
    }
    return k;
  }

  void check(const BlockPool& pool) const {
    pool.check_invariants();
    std::vector<int32_t> refs(size_t(pool.n_blocks()), 0);
    for (const Seq& s : seqs)
      for (int32_t b : s.table) ++refs[size_t(b)];
    int64_t used = 0, free = 0, evictable = 0;
    for (int32_t b = 0; b < pool.n_blocks(); ++b) {
      ASSERT_EQ(pool.refcount(b), refs[size_t(b)]) << "block " << b;
      if (refs[size_t(b)] > 0) {
        ++used;
      } else if (pool.is_registered(b)) {
        ++evictable;
      } else {
        ++free;
      }
    }
    ASSERT_EQ(used + free + evictable, pool.n_blocks());
    ASSERT_EQ(pool.used_blocks(), used);
    ASSERT_EQ(pool.free_blocks(), free);
    ASSERT_EQ(pool.available_blocks(), free + evictable);
  }
};

// Appends tokens to a sequence, allocating blocks as positions need them and registering each
// block that fills. Returns false (the scheduler would preempt) when the pool is exhausted.
bool append(BlockPool& pool, Reference& ref, Reference::Seq& s, const Tokens& more) {
  const int64_t B = pool.block_size();
  for (int32_t t : more) {
    const int64_t pos = int64_t(s.tokens.size());
    if (pos == int64_t(s.table.size()) * B) {
      const int32_t b = pool.allocate();
      if (b < 0) return false;
      ref.content.erase(b);  // evicted or free: its old KV is gone
      s.table.push_back(b);
    }
    s.tokens.push_back(t);
    if (int64_t(s.tokens.size()) % B == 0) {
      const int32_t b = s.table.back();
      ref.content[b] = s.tokens;
      pool.register_full(b, s.tokens);
    }
  }
  return true;
}

TEST(BlockPool, RandomizedAgainstReference) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int64_t B = 1 + int64_t(seed % 3);  // 1..3
    BlockPool pool(24, B);
    Reference ref;
    // A few shared system prompts over a 3-token vocabulary, so prefixes overlap a lot.
    std::vector<Tokens> bases;
    for (int i = 0; i < 3; ++i) {
      Tokens b(static_cast<size_t>(std::uniform_int_distribution<int>(0, 8)(rng)));
      for (int32_t& t : b) t = std::uniform_int_distribution<int32_t>(0, 2)(rng);
      bases.push_back(b);
    }
    const auto rand_tokens = [&](int n) {
      Tokens t(static_cast<size_t>(n));
      for (int32_t& x : t) x = std::uniform_int_distribution<int32_t>(0, 2)(rng);
      return t;
    };
    int64_t hits = 0;
    for (int step = 0; step < 1500; ++step) {
      const int op = std::uniform_int_distribution<int>(0, 9)(rng);
      if (op < 4 && ref.seqs.size() < 8) {
        // New request: match the prefix cache, then prefill the rest of the prompt.
        Tokens prompt = bases[size_t(rng() % bases.size())];
        const Tokens tail = rand_tokens(std::uniform_int_distribution<int>(1, 6)(rng));
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        const int64_t n_query = int64_t(prompt.size()) - 1;
        const int64_t want = ref.expected_match_blocks(pool, prompt, n_query);
        const BlockPool::Match m = pool.match_prefix(prompt, n_query);
        ASSERT_EQ(int64_t(m.blocks.size()), want);
        ASSERT_EQ(m.n_tokens, want * B);
        for (size_t j = 0; j < m.blocks.size(); ++j) {
          const auto it = ref.content.find(m.blocks[j]);
          ASSERT_NE(it, ref.content.end());
          ASSERT_EQ(it->second, Tokens(prompt.begin(), prompt.begin() + ptrdiff_t((j + 1) * B)));
        }
        hits += m.n_tokens;
        Reference::Seq s;
        s.table = m.blocks;
        s.tokens.assign(prompt.begin(), prompt.begin() + m.n_tokens);
        ref.seqs.push_back(s);
        const Tokens rest(prompt.begin() + m.n_tokens, prompt.end());
        if (!append(pool, ref, ref.seqs.back(), rest)) {
          pool.release_blocks(ref.seqs.back().table);
          ref.seqs.pop_back();
        }
      } else if (op < 7 && !ref.seqs.empty()) {
        // Decode a few tokens.
        const size_t i = rng() % ref.seqs.size();
        const Tokens more = rand_tokens(std::uniform_int_distribution<int>(1, 3)(rng));
        if (!append(pool, ref, ref.seqs[i], more)) {
          pool.release_blocks(ref.seqs[i].table);
          ref.seqs.erase(ref.seqs.begin() + ptrdiff_t(i));
        }
      } else if (op < 9 && !ref.seqs.empty()) {
        // Finish a request; sometimes head first, which the pool must survive as well.
        const size_t i = rng() % ref.seqs.size();
        if (rng() % 4 == 0) {
          for (int32_t b : ref.seqs[i].table) pool.release(b);
        } else {
          pool.release_blocks(ref.seqs[i].table);
        }
        ref.seqs.erase(ref.seqs.begin() + ptrdiff_t(i));
      } else if (!ref.seqs.empty()) {
        // Fork (n > 1 completions): the copy shares every block of the original.
        const Reference::Seq copy = ref.seqs[rng() % ref.seqs.size()];
        if (int64_t(copy.tokens.size()) % B == 0 && ref.seqs.size() < 8) {
          for (int32_t b : copy.table) pool.retain(b);
          ref.seqs.push_back(copy);
        }
      }
      ref.check(pool);
      if (HasFatalFailure()) return;
    }
    EXPECT_GT(hits, 0);
    EXPECT_GT(pool.evictions(), 0);  // the pool was under pressure, so eviction was exercised
    EXPECT_EQ(pool.prefix_hit_tokens(), hits);
    for (const Reference::Seq& s : ref.seqs) pool.release_blocks(s.table);
    EXPECT_EQ(pool.used_blocks(), 0);
    EXPECT_EQ(pool.available_blocks(), pool.n_blocks());
    pool.check_invariants();
  }
}

}  // namespace
}  // namespace dseek
