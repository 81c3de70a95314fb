// Training data: documents (text files or JSONL lines) tokenized once into a binary shard cached on
// disk, a held-out validation split by document, and batches of random windows that depend only on
// (seed, step, micro-batch), so a resumed run draws exactly the batches an uninterrupted one would.
//
// Shard file (docs/training.md, "Token shards"), all integers little-endian:
//   offset  0  char[8]  magic "DSEEKTOK"
//           8  u32      version (1)
//          12  u32      id_bytes: 2 (uint16 ids, vocab <= 65536) or 4 (uint32 ids)
//          16  u32      vocab_size (the tokenizer's; every id is below it)
//          20  u32      reserved, 0
//          24  u64      token_count
//          32  u64      doc_count
//          40  u64[doc_count + 1]  doc_offsets: token index where document i starts; last = token_count
//          ..  ids[token_count]    id_bytes each
// The cache file is <cache_dir>/tokens-<16 hex digits>.bin, the digits a hash of the shard version,
// the format options, the tokenizer files' bytes and every input file's path and bytes; any change
// gives a new name, so stale shards are never read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dseek/train/train_config.h"

namespace dseek {

class Tokenizer;

struct TokenShard {
  uint32_t vocab_size = 0;
  std::vector<int32_t> tokens;        // (token_count)
  std::vector<uint64_t> doc_offsets;  // (doc_count + 1)
  int64_t doc_count() const { return int64_t(doc_offsets.empty() ? 0 : doc_offsets.size() - 1); }
};

void write_shard(const std::string& path, const TokenShard& shard);  // atomic (tmp + rename)
TokenShard read_shard(const std::string& path);                      // validates; errors name the path

// Text -> ids: the byte tokenizer (id = UTF-8 byte, vocab 256) or a checkpoint's tokenizer.json
// (each document encoded with its special tokens, BOS for DeepSeek, then EOS appended if defined).
class TextEncoder {
 public:
  static TextEncoder byte_level();
  static TextEncoder from_dir(const std::string& dir);
  TextEncoder(TextEncoder&&) noexcept;
  ~TextEncoder();
  void encode_document(const std::string& text, std::vector<int32_t>& out) const;  // appends
  uint32_t vocab_size() const { return vocab_size_; }
  uint64_t fingerprint() const { return fingerprint_; }  // hash of the tokenizer files ("byte": constant)
  bool is_byte() const { return !tok_; }
  const std::string& dir() const { return dir_; }

 private:
  TextEncoder() = default;
  std::unique_ptr<Tokenizer> tok_;
  std::string dir_;
  uint32_t vocab_size_ = 256;
  uint64_t fingerprint_ = 0;
};

// Expands glob patterns (sorted matches, each pattern in order, duplicates removed). A pattern
// matching nothing is an error naming `field`.
std::vector<std::string> expand_globs(const std::vector<std::string>& patterns, const std::string& field);

// Tokenizes `files` (format from `data`) unless the cache already holds them; returns the shard path.
// `log` gets one line on what happened (cache hit, or documents/tokens/seconds).
std::string build_shard(const std::vector<std::string>& files, const DataConfig& data, const TextEncoder& enc,
                        const std::string& cache_dir, const std::function<void(const std::string&)>& log = {});

struct DataSplit {
  std::vector<int32_t> train;  // concatenated training documents
  std::vector<int32_t> val;    // concatenated held-out documents
  int64_t train_docs = 0, val_docs = 0;
};
// Holds out round(val_fraction * docs) documents (at least 1 when val_fraction > 0), chosen by a
// shuffle seeded with `seed`. Errors if that leaves no training document.
DataSplit split_by_document(const TokenShard& shard, double val_fraction, uint64_t seed);

// Everything the trainer needs: the token streams (+ where they came from, for logs and checkpoints).
struct TrainingData {
  DataSplit split;
  uint32_t vocab_size = 0;
  std::string train_shard, val_shard;  // cache paths
};
TrainingData prepare_data(const DataConfig& data, const TextEncoder& enc, const std::string& cache_dir, uint64_t seed,
                          const std::function<void(const std::string&)>& log = {});

// Fills out (B, T + 1) with B windows of T + 1 consecutive tokens of `stream`, each start drawn from
// a hash of (seed, step, micro, row): deterministic, with no generator state to save.
// Throws if the stream has fewer than T + 1 tokens (`what` names it).
void sample_batch(const std::vector<int32_t>& stream, int64_t B, int64_t T, uint64_t seed, uint64_t step, uint64_t micro,
                  int32_t* out, const char* what = "data");

uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull);
uint64_t splitmix64(uint64_t x);

}  // namespace dseek
