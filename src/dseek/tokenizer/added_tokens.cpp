#include "dseek/tokenizer/added_tokens.h"

#include <cstring>
#include <map>
#include <memory>

#include "dseek/tokenizer/regex.h"
#include "dseek/tokenizer/unicode_tables.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {
namespace {

bool is_white_space(char32_t c) {
  for (const auto& r : unicode::white_space()) {
    if (c >= r.first && c <= r.last) return true;
  }
  return false;
}

// Start of the character that ends at `end` (valid UTF-8).
size_t last_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

char32_t first_char(std::string_view s) {
  return utf8::decode(reinterpret_cast<const uint8_t*>(s.data()), s.size()).cp;
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens, bool normalized) {
  tokens_ = &tokens;
  word_re_.reset();
  for (const auto& tok : tokens) {
    if (tok.single_word && tok.normalized == normalized) {
      // The Rust regex crate's Unicode \w, which HF's single_word check uses: Alphabetic,
      // marks, decimal digits, connector punctuation and the joiners.
      word_re_ = std::make_shared<Regex>("^[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]", false,
                                         "single_word word-character class");
      break;
    }
  }
  // Build a pointer trie, then flatten it.
  struct TNode {
    int32_t token = -1;
    std::map<uint8_t, std::unique_ptr<TNode>> children;
  };
  TNode root;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const AddedToken& tok = tokens[t];
    if (tok.normalized != normalized || tok.content.empty()) continue;
    TNode* n = &root;
    for (unsigned char c : tok.content) {
      auto& child = n->children[c];
      if (!child) child = std::make_unique<TNode>();
      n = child.get();
    }
    if (n->token < 0) n->token = int32_t(t);  // a duplicate content keeps the first token
  }
  nodes_.clear();
  child_bytes_.clear();
  child_nodes_.clear();
  std::memset(first_byte_, 0, sizeof first_byte_);
  for (const auto& [c, _] : root.children) first_byte_[c] = true;
  // Breadth-first so each node's children are contiguous.
  std::vector<const TNode*> order{&root};
  nodes_.push_back(Node{root.token, 0, 0});
  for (size_t k = 0; k < order.size(); ++k) {
    const TNode* t = order[k];
    nodes_[k].first_child = uint32_t(child_bytes_.size());
    nodes_[k].child_count = uint32_t(t->children.size());
    for (const auto& [c, child] : t->children) {
      child_bytes_.push_back(c);
      child_nodes_.push_back(uint32_t(order.size()));
      order.push_back(child.get());
      nodes_.push_back(Node{child->token, 0, 0});
    }
  }
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t i, size_t& len) const {
  int32_t best = -1;
  uint32_t node = 0;
  for (size_t j = i; j < text.size(); ++j) {
    const Node& n = nodes_[node];
    const uint8_t c = static_cast<uint8_t>(text[j]);
    uint32_t next = 0;
    for (uint32_t k = n.first_child; k < n.first_child + n.child_count; ++k) {
      if (child_bytes_[k] == c) {
        next = child_nodes_[k];
        break;
      }
    }
    if (next == 0) break;
    node = next;
    if (nodes_[node].token >= 0) {
      best = nodes_[node].token;
      len = j + 1 - i;
    }
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  if (empty()) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return;
  }
  std::unique_ptr<RegexMatcher> word_matcher;
  auto is_word_char = [&](std::string_view at) {
    if (!word_matcher) word_matcher = std::make_unique<RegexMatcher>();
    size_t s, e;
    return word_matcher->search(*word_re_, at, 0, s, e);
  };
  size_t start_offset = 0;  // end of the previous accepted segment
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    size_t len = 0;
    const int32_t t = longest_at(text, i, len);
    if (t < 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + len;
    i = stop;  // matches never overlap, even a rejected one (HF's find_iter)
    const AddedToken& tok = (*tokens_)[size_t(t)];
    if (tok.single_word) {
      const size_t prev = start == 0 ? 0 : last_char_start(text, start);
      const bool start_space = start == 0 || !is_word_char(text.substr(prev, start - prev));
      const bool stop_space = stop == text.size() || !is_word_char(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        if (!is_white_space(first_char(text.substr(b)))) break;
        s = b;
      }
      start = std::max(s, start_offset);  // spaces an earlier match already took stay there
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        const utf8::Decoded d =
            utf8::decode(reinterpret_cast<const uint8_t*>(text.data()) + stop, text.size() - stop);
        if (!d.valid || !is_white_space(d.cp)) break;
        stop += d.length;
      }
      i = stop;
    }
    if (start < start_offset) continue;  // cannot happen with i >= start_offset; kept as a guard
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace dseek
