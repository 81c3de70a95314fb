// Byte-level BPE tokenizer that reproduces Hugging Face `tokenizers` (tokenizer.json) exactly.
//
// Pipeline (docs/tokenizer.md): added tokens are split off first (leftmost-longest), the rest
// goes through the normalizer, the pre-tokenizer chain (Split regexes, ByteLevel) and the BPE
// model; BOS/EOS come from tokenizer_config.json (add_bos_token/add_eos_token, as transformers'
// LlamaTokenizerFast does) or else from tokenizer.json's post_processor.
//
// Thread safety: a loaded Tokenizer is immutable; encode/decode may be called from several
// threads at once (encode scratch state and word caches are pooled, one per concurrent call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dseek {

class Tokenizer {
 public:
  // Loads `dir`/tokenizer.json and, if present, `dir`/tokenizer_config.json.
  // Throws dseek::Error naming the file and JSON field on anything malformed or unsupported.
  static Tokenizer load(const std::string& dir);
  // Same, with explicit paths; `config_path` may be empty (no tokenizer_config.json).
  static Tokenizer load_files(const std::string& tokenizer_json_path, const std::string& config_path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text to ids. `add_special_tokens` adds BOS/EOS as HF's encode does (BOS only for DeepSeek).
  // Invalid UTF-8 never throws: each maximal invalid subsequence is replaced by U+FFFD first,
  // as Python's bytes.decode("utf-8", "replace") would do before HF sees the text.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Appends to `out` (no clearing), so callers can reuse one buffer.
  void encode_into(std::string_view text, bool add_special_tokens, std::vector<int32_t>& out) const;

  // Ids to text, as HF's decode: each token's bytes are joined and converted with one U+FFFD
  // per maximal invalid subsequence. Unknown ids are dropped. `skip_special_tokens` drops only
  // added tokens marked special:true.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Pre-tokenizer pieces of `text` (raw bytes, before the byte-level alphabet mapping), for
  // tests and tools. Added tokens are not split off: pass text without them.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary string (byte-level alphabet) or added token content; "" for unknown ids.
  std::string id_to_token(int32_t id) const;
  // The bytes this id contributes to decode ("" for unknown ids); may be partial UTF-8.
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;  // an added token with special:true

  // From tokenizer_config.json's bos_token/eos_token; -1 when not configured.
  int32_t bos_id() const;
  int32_t eos_id() const;
  // Number of ids the tokenizer knows: 1 + the largest model or added-token id
  // (HF's len(tokenizer); 128815 for DeepSeek-V3, below the model's 129280 embedding rows).
  size_t vocab_size() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: feed ids one at a time and get back only complete UTF-8 text (never
// half a character). The concatenation of every feed() and the final flush() equals
// Tokenizer::decode of all the ids.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);
  // Text completed by this id (may be empty while a multi-byte character is pending).
  std::string feed(int32_t id);
  // Whatever is still pending, with U+FFFD for an incomplete trailing sequence; resets.
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of a possibly incomplete trailing UTF-8 sequence (< 4)
};

}  // namespace dseek
