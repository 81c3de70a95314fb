#include "dseek/tokenizer/tokenizer.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::feed(int32_t id) {
  if (skip_special_tokens_ && tokenizer_->is_special(id)) return {};
  pending_ += tokenizer_->token_bytes(id);
  // Emit everything but a trailing valid prefix of a multi-byte character, which the next
  // token may complete. A prefix that cannot be completed any more is a maximal invalid
  // subsequence, so emitting U+FFFD for it here gives exactly what decode gives.
  std::string out;
  const auto* p = reinterpret_cast<const uint8_t*>(pending_.data());
  size_t i = 0;
  while (i < pending_.size()) {
    const utf8::Decoded d = utf8::decode(p + i, pending_.size() - i);
    if (d.truncated) break;
    if (d.valid) {
      out.append(pending_, i, d.length);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += d.length;
  }
  pending_.erase(0, i);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  utf8::append_lossy(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace dseek
