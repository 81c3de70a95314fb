// Generated tokens -> streamable text: complete UTF-8 only, and stop strings honoured (text is
// held back while it could still be the start of a stop string, and generation ends before the
// first occurrence). Shared by the single-sequence Generator and the batching Engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dseek/tokenizer/tokenizer.h"

namespace dseek {

class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop, bool skip_special_tokens);

  // Feeds one generated token; returns the text that may be streamed now. Once a stop string
  // appears, returns the text before it and stopped() becomes true (feed nothing more).
  std::string feed(int32_t token);
  // End of generation (not after a stop): everything still held back, incomplete UTF-8 as U+FFFD.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  IncrementalDecoder decoder_;
  std::vector<std::string> stop_;
  std::string pending_;  // decoded, not yet streamed
  bool stopped_ = false;
};

}  // namespace dseek
