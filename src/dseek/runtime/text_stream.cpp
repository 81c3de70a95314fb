#include "dseek/runtime/text_stream.h"

#include <algorithm>
#include <string_view>

namespace dseek {

namespace {
// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
// text must be held back while streaming, since the next token may complete the stop string.
size_t stop_holdback(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
        hold = n;
        break;
      }
  return hold;
}
}  // namespace

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop, bool skip_special_tokens)
    : decoder_(tokenizer, skip_special_tokens), stop_(std::move(stop)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::string TextStream::feed(int32_t token) {
  pending_ += decoder_.feed(token);
  size_t cut = std::string::npos;
  for (const std::string& s : stop_)
    if (size_t at = pending_.find(s); at != std::string::npos) cut = std::min(cut, at);
  if (cut != std::string::npos) {
    pending_.resize(cut);
    stopped_ = true;
  }
  const size_t emit = stopped_ ? pending_.size() : pending_.size() - stop_holdback(pending_, stop_);
  std::string out = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return {};
  std::string out = std::move(pending_) + decoder_.flush();
  pending_.clear();
  return out;
}

}  // namespace dseek
