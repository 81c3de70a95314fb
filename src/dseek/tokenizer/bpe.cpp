#include "dseek/tokenizer/bpe.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/tokenizer/byte_level.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {
namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
// Up to this many symbols the O(n^2) scan over an array beats a heap (and nearly every piece
// is this short); longer ones (10,000 spaces) use the heap.
constexpr size_t kSmallWord = 64;

std::string field_error(const std::string& file, const std::string& field, const std::string& msg) {
  return file + ": " + field + ": " + msg;
}

}  // namespace

// ---- WordCache ----

bool WordCache::find(std::string_view key, uint64_t hash, std::vector<int32_t>& out) const {
  if (slots_.empty()) return false;
  hash |= 1;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0) return false;
    if (s.hash == hash && s.key_len == key.size() && std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
      out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.ids_len);
      return true;
    }
  }
}

void WordCache::insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n) {
  if (key.size() > kMaxKeyBytes || n > 0xFFFF) return;
  if (count_ >= kMaxEntries) {  // bounded: start over rather than grow
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    count_ = 0;
  }
  if (2 * (count_ + 1) > slots_.size()) grow();
  hash |= 1;
  const size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i].hash != 0) i = (i + 1) & mask;
  Slot& s = slots_[i];
  s.hash = hash;
  s.key_off = uint32_t(keys_.size());
  s.key_len = uint16_t(key.size());
  s.ids_off = uint32_t(ids_.size());
  s.ids_len = uint16_t(n);
  keys_.append(key);
  ids_.insert(ids_.end(), ids, ids + n);
  ++count_;
}

void WordCache::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? kMinSlots : 2 * old.size(), Slot{});
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.hash == 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

// ---- BpeModel: loading ----

void BpeModel::insert_pair(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
  const uint64_t key = pair_key(a, b);
  size_t i = (key * 0x9E3779B97F4A7C15ull) >> pair_shift_;
  while (pairs_[i].key != ~uint64_t(0) && pairs_[i].key != key) i = (i + 1) & pair_mask_;
  // A repeated merge overwrites the earlier one, as HF's HashMap collect does.
  pairs_[i] = PairSlot{key, rank, merged};
}

const BpeModel::PairSlot* BpeModel::find_pair(int32_t a, int32_t b) const {
  const uint64_t key = pair_key(a, b);
  size_t i = (key * 0x9E3779B97F4A7C15ull) >> pair_shift_;
  for (;; i = (i + 1) & pair_mask_) {
    const PairSlot& s = pairs_[i];
    if (s.key == key) return &s;
    if (s.key == ~uint64_t(0)) return nullptr;
  }
}

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& file, bool byte_level,
                             const BpeLists* lists) {
  using nlohmann::json;
  BpeModel m;
  m.byte_level_ = byte_level;

  auto null_or_empty_string = [&](const char* key) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null()) return;
    if (it->is_string() && it->get<std::string>().empty()) return;
    throw Error(field_error(file, std::string("model.") + key, "not supported (only null)"));
  };
  null_or_empty_string("continuing_subword_prefix");
  null_or_empty_string("end_of_word_suffix");
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0) {
      throw Error(field_error(file, "model.dropout", "BPE dropout is not supported (only null)"));
    }
  }
  if (auto it = model.find("byte_fallback"); it != model.end() && !it->is_null()) {
    if (!it->is_boolean()) throw Error(field_error(file, "model.byte_fallback", "expected a boolean"));
    if (it->get<bool>()) throw Error(field_error(file, "model.byte_fallback", "true is not supported"));
  }
  if (auto it = model.find("ignore_merges"); it != model.end() && !it->is_null()) {
    if (!it->is_boolean()) throw Error(field_error(file, "model.ignore_merges", "expected a boolean"));
    m.ignore_merges_ = it->get<bool>();
  }
  if (auto it = model.find("fuse_unk"); it != model.end() && !it->is_null()) {
    if (!it->is_boolean()) throw Error(field_error(file, "model.fuse_unk", "expected a boolean"));
    m.fuse_unk_ = it->get<bool>();
  }

  int64_t max_id = -1;
  auto add_token = [&](const std::string& tok, const json& value) {
    if (!value.is_number_integer()) throw Error(field_error(file, "model.vocab[\"" + tok + "\"]", "expected an integer id"));
    const int64_t id = value.get<int64_t>();
    if (id < 0 || id >= (int64_t(1) << 30)) {
      throw Error(field_error(file, "model.vocab[\"" + tok + "\"]", "id " + std::to_string(id) + " out of range"));
    }
    m.vocab_.insert_or_assign(tok, int32_t(id));  // a repeated key: the last one wins, as in the JSON object
  };
  if (lists && lists->has_vocab) {
    m.vocab_.reserve(lists->vocab.size());
    for (const auto& [tok, value] : lists->vocab) add_token(tok, value);
  } else {
    auto vit = model.find("vocab");
    if (vit == model.end()) throw Error(field_error(file, "model.vocab", "missing"));
    if (!vit->is_object()) throw Error(field_error(file, "model.vocab", "expected an object"));
    m.vocab_.reserve(vit->size());
    for (auto it = vit->begin(); it != vit->end(); ++it) add_token(it.key(), it.value());
  }
  for (const auto& [tok, id] : m.vocab_) max_id = std::max<int64_t>(max_id, id);
  m.tokens_.resize(size_t(max_id + 1));
  m.has_token_.assign(size_t(max_id + 1), 0);
  for (const auto& [tok, id] : m.vocab_) {
    m.tokens_[size_t(id)] = tok;
    m.has_token_[size_t(id)] = 1;
  }

  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) throw Error(field_error(file, "model.unk_token", "expected a string or null"));
    auto id = m.token_to_id(it->get<std::string>());
    if (!id) throw Error(field_error(file, "model.unk_token", "'" + it->get<std::string>() + "' is not in model.vocab"));
    m.unk_id_ = *id;
  }

  const json* merges_json = nullptr;
  if (!(lists && lists->has_merges)) {
    auto mit = model.find("merges");
    if (mit == model.end()) throw Error(field_error(file, "model.merges", "missing"));
    if (!mit->is_array()) throw Error(field_error(file, "model.merges", "expected an array"));
    merges_json = &*mit;
  }
  const size_t n_merges = merges_json ? merges_json->size() : lists->merges.size();
  size_t cap = 16;
  while (cap < n_merges * 2) cap <<= 1;
  m.pairs_.assign(cap, PairSlot{});
  m.pair_mask_ = cap - 1;
  m.pair_shift_ = 64 - std::countr_zero(cap);
  std::string merged;
  for (size_t r = 0; r < n_merges; ++r) {
    const json& e = merges_json ? (*merges_json)[r] : lists->merges[r];
    std::string_view a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        throw Error(field_error(file, "model.merges[" + std::to_string(r) + "]",
                                "expected \"left right\" with exactly one space, got '" + s + "'"));
      }
      a = std::string_view(s).substr(0, sp);
      b = std::string_view(s).substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get_ref<const std::string&>();
      b = e[1].get_ref<const std::string&>();
    } else {
      throw Error(field_error(file, "model.merges[" + std::to_string(r) + "]",
                              "expected a string \"a b\" or an array [\"a\", \"b\"]"));
    }
    auto ia = m.token_to_id(a), ib = m.token_to_id(b);
    merged.assign(a);
    merged.append(b);
    auto im = m.token_to_id(merged);
    if (!ia || !ib || !im) {
      const std::string field = "model.merges[" + std::to_string(r) + "]";
      if (!ia) throw Error(field_error(file, field, "unknown token '" + std::string(a) + "' (not in model.vocab)"));
      if (!ib) throw Error(field_error(file, field, "unknown token '" + std::string(b) + "' (not in model.vocab)"));
      throw Error(field_error(file, field, "merged token '" + merged + "' is not in model.vocab"));
    }
    m.insert_pair(*ia, *ib, uint32_t(r), *im);
  }
  m.merges_count_ = n_merges;

  std::string ch;
  for (int b = 0; b < 256; ++b) {
    ch.clear();
    utf8::append_code_point(byte_level::kByteToChar[b], ch);
    auto id = m.token_to_id(ch);
    m.byte_to_id_[b] = id ? *id : -1;
  }
  if (byte_level && m.ignore_merges_) {
    std::string raw;
    for (const auto& [tok, id] : m.vocab_) {
      raw.clear();
      bool ok = true;
      for (size_t i = 0; i < tok.size() && ok;) {
        utf8::Decoded d = utf8::decode(reinterpret_cast<const uint8_t*>(tok.data()) + i, tok.size() - i);
        const int byte = d.valid ? byte_level::char_to_byte(d.cp) : -1;
        ok = byte >= 0;
        raw.push_back(char(byte));
        i += d.length;
      }
      if (ok) m.raw_vocab_.emplace(raw, id);
    }
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= tokens_.size() || !has_token_[size_t(id)]) return nullptr;
  return &tokens_[size_t(id)];
}

// ---- BpeModel: encoding ----

void BpeModel::initial_symbols(std::string_view piece, std::vector<int32_t>& ids) const {
  ids.clear();
  if (byte_level_) {
    // A byte whose character is missing from the vocabulary is dropped, as HF drops unknown
    // characters when unk_token is null (and then its neighbours may merge).
    for (unsigned char c : piece) {
      const int32_t id = byte_to_id_[c];
      if (id >= 0) {
        ids.push_back(id);
      } else if (unk_id_ && !(fuse_unk_ && !ids.empty() && ids.back() == *unk_id_)) {
        ids.push_back(*unk_id_);
      }
    }
    return;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(piece.data());
  for (size_t i = 0; i < piece.size();) {
    const uint32_t len = std::min<uint32_t>(utf8::char_length(p[i]), uint32_t(piece.size() - i));
    auto it = vocab_.find(piece.substr(i, len));
    if (it != vocab_.end()) {
      ids.push_back(it->second);
    } else if (unk_id_ && !(fuse_unk_ && !ids.empty() && ids.back() == *unk_id_)) {
      ids.push_back(*unk_id_);
    }
    i += len;
  }
}

void BpeModel::merge_small(BpeScratch& s) const {
  size_t n = s.ids.size();
  int32_t* ids = s.ids.data();
  s.ranks.resize(n);
  s.merged.resize(n);
  uint32_t* ranks = s.ranks.data();
  int32_t* merged = s.merged.data();
  auto set_pair = [&](size_t i) {
    const PairSlot* p = find_pair(ids[i], ids[i + 1]);
    ranks[i] = p ? p->rank : kNoRank;
    merged[i] = p ? p->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) set_pair(i);
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) best_rank = ranks[i], best = i;
    }
    if (best_rank == kNoRank) break;
    ids[best] = merged[best];
    const size_t tail = n - best - 2;  // symbols after best + 1
    std::memmove(ids + best + 1, ids + best + 2, tail * sizeof(int32_t));
    if (tail > 1) {  // pairs after the new pair (best, best + 1) move down by one
      std::memmove(ranks + best + 1, ranks + best + 2, (tail - 1) * sizeof(uint32_t));
      std::memmove(merged + best + 1, merged + best + 2, (tail - 1) * sizeof(int32_t));
    }
    --n;
    if (best + 1 < n) set_pair(best);
    if (best > 0) set_pair(best - 1);
  }
  s.ids.resize(n);
}

void BpeModel::merge_large(BpeScratch& s) const {
  const size_t n = s.ids.size();
  int32_t* ids = s.ids.data();
  s.prev.resize(n);
  s.next.resize(n);
  int32_t* prev = s.prev.data();
  int32_t* next = s.next.data();
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  // Min-heap on (rank, pos): lowest rank first, leftmost first among equal ranks.
  auto greater = [](const BpeScratch::HeapEntry& a, const BpeScratch::HeapEntry& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  auto& heap = s.heap;
  heap.clear();
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const PairSlot* p = find_pair(ids[pos], ids[next[pos]]);
    if (!p) return;
    heap.push_back({p->rank, uint32_t(pos)});
    std::push_heap(heap.begin(), heap.end(), greater);
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const auto top = heap.back();
    heap.pop_back();
    const int32_t pos = int32_t(top.pos);
    if (ids[pos] < 0 || next[pos] < 0) continue;  // merged away meanwhile
    const PairSlot* p = find_pair(ids[pos], ids[next[pos]]);
    if (!p || p->rank != top.rank) continue;  // stale: the pair here changed
    const int32_t right = next[pos];
    ids[pos] = p->merged;
    ids[right] = -1;
    next[pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = pos;
    push(prev[pos]);
    push(pos);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] >= 0) ids[w++] = ids[i];
  }
  s.ids.resize(w);
}

void BpeModel::encode_piece(std::string_view piece, BpeScratch& s, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (byte_level_ && piece.size() == 1) {
    const int32_t id = byte_to_id_[static_cast<unsigned char>(piece[0])];
    if (id >= 0) {
      out.push_back(id);
    } else if (unk_id_) {
      out.push_back(*unk_id_);
    }
    return;
  }
  const bool cacheable = piece.size() <= WordCache::kMaxKeyBytes;
  uint64_t hash = 0;
  if (cacheable) {
    hash = std::hash<std::string_view>{}(piece);
    if (s.cache.find(piece, hash, out)) return;
  }
  if (ignore_merges_) {
    const auto& map = byte_level_ ? raw_vocab_ : vocab_;
    auto it = map.find(std::string(piece));
    if (it != map.end()) {
      out.push_back(it->second);
      if (cacheable) s.cache.insert(piece, hash, &it->second, 1);
      return;
    }
  }
  initial_symbols(piece, s.ids);
  if (s.ids.size() <= kSmallWord) {
    merge_small(s);
  } else {
    merge_large(s);
  }
  out.insert(out.end(), s.ids.begin(), s.ids.end());
  if (cacheable) s.cache.insert(piece, hash, s.ids.data(), s.ids.size());
}

}  // namespace dseek
