// The pre-tokenizer chain of tokenizer.json ("pre_tokenizer"): Sequence, Split and ByteLevel,
// run the way HF's PreTokenizedString runs them: each step splits every piece the previous
// step produced, and empty pieces are dropped.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/tokenizer/regex.h"

namespace dseek {

// HF's SplitDelimiterBehavior: what happens to the matches of a Split pattern.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel };
  Kind kind = Kind::kSplit;
  std::shared_ptr<const Regex> regex;  // Split's pattern; ByteLevel's GPT-2 regex when use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
};

// Per-thread state for running the chain.
struct PreTokenizerScratch {
  RegexMatcher matcher;
  struct Span {
    size_t start, end;
    bool is_match;
  };
  std::vector<std::vector<Span>> spans;   // (steps,) per step, for the non-Isolated behaviors
  std::vector<std::vector<Span>> folded;  // (steps,) the spans after the behavior's fold
  std::vector<std::string> prefixed;     // (steps,) ByteLevel add_prefix_space copies
};

class PreTokenizer {
 public:
  // `pre_tokenizer` may be null (no pre-tokenizer: each segment is one piece).
  // `file` names tokenizer.json in errors.
  static PreTokenizer from_json(const nlohmann::json& pre_tokenizer, const std::string& file);

  // True when the chain ends with ByteLevel: pieces are then raw bytes that the model maps to
  // the byte-level alphabet.
  bool byte_level() const { return byte_level_; }

  using Sink = void (*)(void* ctx, std::string_view piece);
  // Calls sink(ctx, piece) for every non-empty piece of `text` (valid UTF-8), in order.
  void run(std::string_view text, PreTokenizerScratch& scratch, Sink sink, void* ctx) const;

 private:
  void run_step(size_t k, std::string_view piece, PreTokenizerScratch& scratch, Sink sink, void* ctx) const;
  void add_steps(const nlohmann::json& j, const std::string& file, const std::string& field);

  std::vector<PreTokenizerStep> steps_;
  bool byte_level_ = false;
};

}  // namespace dseek
