// Internals of dseek::Tokenizer shared by tokenizer.cpp, tokenizer_load.cpp and
// incremental_decoder.cpp (not part of the public API).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "dseek/tokenizer/added_tokens.h"
#include "dseek/tokenizer/bpe.h"
#include "dseek/tokenizer/pre_tokenizer.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek {

// Scratch for one encode call: regex match state, BPE buffers and the word cache.
struct EncodeState {
  PreTokenizerScratch pre;
  BpeScratch bpe;
  std::vector<AddedTokenMatcher::Segment> raw_segments, norm_segments;
  std::string lossy;  // the input with invalid UTF-8 replaced, when it had any
};

struct Tokenizer::Impl {
  std::string path;  // tokenizer.json, for messages

  std::vector<AddedToken> added;  // in file order
  std::unordered_map<std::string, int32_t> added_by_content;
  AddedTokenMatcher raw_matcher;   // normalized:false tokens, on the raw text
  AddedTokenMatcher norm_matcher;  // normalized:true tokens, on each normalized piece
  PreTokenizer pre_tokenizer;
  BpeModel model;

  // add_special_tokens: ids around the sequence (TemplateProcessing single / add_bos_token).
  std::vector<int32_t> prefix_ids, suffix_ids;
  int32_t bos = -1, eos = -1;
  size_t id_limit = 0;

  // decode: the bytes each id contributes (ByteLevel decoder rule), and flags per id.
  std::string id_bytes;               // all ids' bytes, concatenated
  std::vector<uint32_t> id_bytes_off;  // (id_limit + 1,)
  std::vector<uint8_t> id_known;       // (id_limit,)
  std::vector<uint8_t> id_special;     // (id_limit,)
  std::vector<int32_t> id_added;       // (id_limit,) index into `added`, -1 when not added

  // Encode states (each with its word cache) are pooled: a call takes one, or makes one when
  // all are in use, and gives it back, so the pool grows to the number of concurrent callers.
  mutable std::mutex pool_mu;
  mutable std::vector<std::unique_ptr<EncodeState>> pool;

  void encode(std::string_view text, bool add_special_tokens, EncodeState& st, std::vector<int32_t>& out) const;
};

}  // namespace dseek
