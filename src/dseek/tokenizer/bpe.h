// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}).
//
// Merges are kept as a flat hash map from the pair (left_id, right_id) to (rank, merged_id);
// a piece's symbols are merged lowest rank first, leftmost first among equal pairs, which is
// the order HF's heap-based merge loop produces. In byte-level mode a piece arrives as raw
// bytes and its initial symbols are the ids of the 256 byte-level characters, so the
// byte -> character mapping never has to be materialised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dseek {

// Bounded cache of piece -> ids, owned by one encoding thread at a time (BpeScratch). The table
// starts small and doubles at half load up to kSlots: a short prompt should not zero 6 MiB first.
class WordCache {
 public:
  static constexpr size_t kMinSlots = size_t(1) << 10;
  static constexpr size_t kSlots = size_t(1) << 18;
  static constexpr size_t kMaxEntries = kSlots / 2;
  static constexpr size_t kMaxKeyBytes = 64;  // longer pieces are rare and not worth caching

  bool find(std::string_view key, uint64_t hash, std::vector<int32_t>& out) const;
  void insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n);
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t key_off = 0;
    uint32_t ids_off = 0;
    uint16_t key_len = 0;
    uint16_t ids_len = 0;
  };
  void grow();

  std::vector<Slot> slots_;  // open addressing, size a power of two
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t count_ = 0;
};

struct BpeScratch {
  WordCache cache;
  std::vector<int32_t> ids;      // (n,) symbols of the piece being merged
  std::vector<uint32_t> ranks;   // (n-1,) rank of pair (i, i+1)
  std::vector<int32_t> merged;   // (n-1,) id of pair (i, i+1) merged
  std::vector<int32_t> prev, next;
  struct HeapEntry {
    uint32_t rank;
    uint32_t pos;
  };
  std::vector<HeapEntry> heap;
};

// tokenizer.json's model.vocab and model.merges as the parser met them, taken out of the parsed
// tree (tokenizer_load.cpp): built as nlohmann objects, the ~128K vocabulary entries were a map node
// each, most of a tokenizer's load time. A list not taken stays in the tree.
struct BpeLists {
  bool has_vocab = false, has_merges = false;
  std::vector<std::pair<std::string, nlohmann::json>> vocab;  // (token, id) in file order
  std::vector<nlohmann::json> merges;
};

// std::string keys looked up by string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object; `file` names tokenizer.json in errors.
  // `byte_level`: pieces are raw bytes and symbols start as byte-level characters.
  // `lists`: model.vocab / model.merges taken out of `model` while parsing, where they were.
  static BpeModel from_json(const nlohmann::json& model, const std::string& file, bool byte_level,
                            const BpeLists* lists = nullptr);

  // Appends the ids of one pre-tokenized piece.
  void encode_piece(std::string_view piece, BpeScratch& scratch, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Vocabulary string of `id`, nullptr when the id is not in the vocabulary.
  const std::string* id_to_token(int32_t id) const;
  size_t id_limit() const { return tokens_.size(); }  // 1 + largest id
  size_t merges_count() const { return merges_count_; }

 private:
  struct PairSlot {
    uint64_t key = ~uint64_t(0);
    uint32_t rank = 0;
    int32_t merged = 0;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  const PairSlot* find_pair(int32_t a, int32_t b) const;
  void insert_pair(int32_t a, int32_t b, uint32_t rank, int32_t merged);

  void initial_symbols(std::string_view piece, std::vector<int32_t>& ids) const;
  void merge_small(BpeScratch& s) const;
  void merge_large(BpeScratch& s) const;

  StringIdMap vocab_;      // vocabulary string -> id
  StringIdMap raw_vocab_;  // byte-level mode and ignore_merges: raw bytes -> id
  std::vector<std::string> tokens_;                 // id -> vocabulary string
  std::vector<uint8_t> has_token_;                  // id -> in the vocabulary
  std::vector<PairSlot> pairs_;
  uint64_t pair_mask_ = 0;
  int pair_shift_ = 64;
  size_t merges_count_ = 0;
  int32_t byte_to_id_[256];  // byte-level mode: id of each byte's character, -1 if absent
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
};

}  // namespace dseek
