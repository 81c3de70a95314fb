#include "dseek/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"

namespace dseek {
namespace {

// The GPT-2 pattern HF's ByteLevel pre-tokenizer uses when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& file,
              const std::string& field) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(file + ": " + field + "." + key + ": expected a boolean");
  return it->get<bool>();
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& file) {
  PreTokenizer p;
  if (!j.is_null()) p.add_steps(j, file, "pre_tokenizer");
  for (size_t k = 0; k < p.steps_.size(); ++k) {
    if (p.steps_[k].kind == PreTokenizerStep::Kind::kByteLevel) {
      // Later steps would see the byte-level alphabet, which the raw-byte pieces here are not.
      if (k + 1 != p.steps_.size()) throw Error(file + ": pre_tokenizer: ByteLevel must be the last pre-tokenizer");
      p.byte_level_ = true;
    }
  }
  return p;
}

void PreTokenizer::add_steps(const nlohmann::json& j, const std::string& file, const std::string& field) {
  if (!j.is_object()) throw Error(file + ": " + field + ": expected an object");
  auto tit = j.find("type");
  if (tit == j.end() || !tit->is_string()) throw Error(file + ": " + field + ".type: missing or not a string");
  const std::string type = tit->get<std::string>();
  if (type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) throw Error(file + ": " + field + ".pretokenizers: missing or not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      add_steps((*it)[i], file, field + ".pretokenizers[" + std::to_string(i) + "]");
    }
    return;
  }
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    auto pit = j.find("pattern");
    if (pit == j.end() || !pit->is_object()) throw Error(file + ": " + field + ".pattern: missing or not an object");
    if (auto r = pit->find("Regex"); r != pit->end() && r->is_string()) {
      step.regex = std::make_shared<Regex>(r->get<std::string>(), false, file + ": " + field + ".pattern.Regex");
    } else if (auto s = pit->find("String"); s != pit->end() && s->is_string()) {
      step.regex = std::make_shared<Regex>(s->get<std::string>(), true, file + ": " + field + ".pattern.String");
    } else {
      throw Error(file + ": " + field + ".pattern: expected {\"Regex\": string} or {\"String\": string}");
    }
    auto bit = j.find("behavior");
    if (bit == j.end() || !bit->is_string()) throw Error(file + ": " + field + ".behavior: missing or not a string");
    const std::string b = bit->get<std::string>();
    if (b == "Removed") {
      step.behavior = SplitBehavior::kRemoved;
    } else if (b == "Isolated") {
      step.behavior = SplitBehavior::kIsolated;
    } else if (b == "MergedWithPrevious") {
      step.behavior = SplitBehavior::kMergedWithPrevious;
    } else if (b == "MergedWithNext") {
      step.behavior = SplitBehavior::kMergedWithNext;
    } else if (b == "Contiguous") {
      step.behavior = SplitBehavior::kContiguous;
    } else {
      throw Error(file + ": " + field + ".behavior: unknown value '" + b + "'");
    }
    step.invert = get_bool(j, "invert", false, file, field);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    // HF's defaults when the fields are absent: add_prefix_space true, use_regex true.
    step.add_prefix_space = get_bool(j, "add_prefix_space", true, file, field);
    if (get_bool(j, "use_regex", true, file, field)) {
      step.regex = std::make_shared<Regex>(kGpt2Pattern, false, file + ": " + field + " (ByteLevel GPT-2 regex)");
    }
  } else {
    throw Error(file + ": " + field + ".type: pre-tokenizer '" + type + "' is not supported (Sequence, Split, ByteLevel)");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::run(std::string_view text, PreTokenizerScratch& scratch, Sink sink, void* ctx) const {
  if (scratch.spans.size() < steps_.size()) scratch.spans.resize(steps_.size());
  if (scratch.prefixed.size() < steps_.size()) scratch.prefixed.resize(steps_.size());
  if (scratch.folded.size() < steps_.size()) scratch.folded.resize(steps_.size());
  run_step(0, text, scratch, sink, ctx);
}

void PreTokenizer::run_step(size_t k, std::string_view piece, PreTokenizerScratch& scratch, Sink sink,
                            void* ctx) const {
  if (piece.empty()) return;
  if (k == steps_.size()) {
    sink(ctx, piece);
    return;
  }
  const PreTokenizerStep& step = steps_[k];
  if (step.kind == PreTokenizerStep::Kind::kByteLevel) {
    if (step.add_prefix_space && piece[0] != ' ') {
      std::string& buf = scratch.prefixed[k];
      buf.assign(1, ' ');
      buf.append(piece);
      piece = buf;
    }
    if (!step.regex) {
      run_step(k + 1, piece, scratch, sink, ctx);
      return;
    }
  }
  const Regex& re = *step.regex;
  const SplitBehavior behavior =
      step.kind == PreTokenizerStep::Kind::kByteLevel ? SplitBehavior::kIsolated : step.behavior;

  if (behavior == SplitBehavior::kIsolated) {
    // Matches and the gaps between them are all pieces; stream them without storing spans.
    size_t prev = 0;
    for_each_match(re, scratch.matcher, piece, [&](size_t s, size_t e) {
      if (prev < s) run_step(k + 1, piece.substr(prev, s - prev), scratch, sink, ctx);
      run_step(k + 1, piece.substr(s, e - s), scratch, sink, ctx);
      prev = e;
    });
    if (prev < piece.size()) run_step(k + 1, piece.substr(prev), scratch, sink, ctx);
    return;
  }

  // HF's Pattern::find_matches: matches and gaps in order, flagged, then `invert` flips them.
  auto& spans = scratch.spans[k];
  spans.clear();
  size_t prev = 0;
  for_each_match(re, scratch.matcher, piece, [&](size_t s, size_t e) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  });
  if (prev != piece.size()) spans.push_back({prev, piece.size(), false});
  if (step.invert) {
    for (auto& sp : spans) sp.is_match = !sp.is_match;
  }
  // HF's NormalizedString::split: `out` keeps (start, end, removed).
  auto& out = scratch.folded[k];
  out.clear();
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& sp : spans) out.push_back({sp.start, sp.end, sp.is_match});
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& sp : spans) {
        if (sp.is_match && !previous_match && !out.empty()) {
          out.back().end = sp.end;
        } else {
          out.push_back({sp.start, sp.end, false});
        }
        previous_match = sp.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t i = spans.size(); i-- > 0;) {
        const auto& sp = spans[i];
        if (sp.is_match && !previous_match && !out.empty()) {
          out.back().start = sp.start;
        } else {
          out.push_back({sp.start, sp.end, false});
        }
        previous_match = sp.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const auto& sp : spans) {
        if (sp.is_match == previous_match && !out.empty()) {
          out.back().end = sp.end;
        } else {
          out.push_back({sp.start, sp.end, false});
        }
        previous_match = sp.is_match;
      }
      break;
    }
    case SplitBehavior::kIsolated:
      break;
  }
  for (const auto& sp : out) {
    if (!sp.is_match) run_step(k + 1, piece.substr(sp.start, sp.end - sp.start), scratch, sink, ctx);
  }
}

}  // namespace dseek
