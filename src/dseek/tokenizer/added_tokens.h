// Added tokens (tokenizer.json "added_tokens"): found in the raw text before anything else,
// leftmost-longest, as HF's AddedVocabulary does with an Aho-Corasick automaton.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dseek {

class Regex;

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched on normalized text (second pass) rather than raw text
};

// Matches a set of added tokens; HF runs one matcher for the non-normalized tokens on the raw
// text and a second for the normalized ones on each remaining (normalized) piece.
class AddedTokenMatcher {
 public:
  struct Segment {
    size_t start, end;
    int32_t token;  // index into the token list given to build(), -1 for ordinary text
  };

  void build(const std::vector<AddedToken>& tokens, bool normalized);
  bool empty() const { return nodes_.size() <= 1; }

  // Splits `text` into ordinary-text and token segments in order (HF's find_matches,
  // including lstrip/rstrip/single_word), appending to `out`.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    int32_t token = -1;  // index into tokens_ when a token ends here
    uint32_t first_child = 0, child_count = 0;
  };
  // Longest token starting at text[i]; returns its index or -1, and its length.
  int32_t longest_at(std::string_view text, size_t i, size_t& len) const;

  const std::vector<AddedToken>* tokens_ = nullptr;
  std::vector<Node> nodes_;                 // nodes_[0] is the root
  std::vector<uint8_t> child_bytes_;        // children of node k: child_bytes_/child_nodes_
  std::vector<uint32_t> child_nodes_;       //   [first_child, first_child + child_count)
  bool first_byte_[256] = {};
  std::shared_ptr<const Regex> word_re_;  // only when some token is single_word
};

}  // namespace dseek
