// PCRE2 (JIT) regexes that behave like the Oniguruma regexes Hugging Face tokenizers compiles.
//
// tokenizer.json patterns are written for Oniguruma (Ruby syntax, Unicode 16.0 tables).
// onig_to_pcre2 rewrites the few constructs whose meaning differs in PCRE2 10.42:
//   \s, \S        -> the explicit White_Space set (PCRE2's \s also matches U+180E)
//   \p{X}, \P{X}  -> widened with the code points that joined category X in Unicode 15.0-16.0
//   \d, \D        -> \p{Nd}, widened the same way
//   \h, \H        -> hex digit [0-9a-fA-F] (Oniguruma), not horizontal space (PCRE2)
// and compiles with PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE (Ruby's ^ and $ are line anchors).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace dseek {

// Throws dseek::Error (without file context; the caller adds it) on a construct it cannot
// translate exactly, e.g. \P{L} inside a character class.
std::string onig_to_pcre2(std::string_view pattern);

class Regex {
 public:
  // `literal`: match `pattern` as a plain string (tokenizer.json {"String": ...}).
  // `context` ("tokenizer.json: pre_tokenizer.pretokenizers[2].pattern.Regex") prefixes errors,
  // which include PCRE2's message and the offset into the rewritten pattern.
  Regex(std::string_view pattern, bool literal, const std::string& context);
  Regex(Regex&& o) noexcept;
  Regex& operator=(Regex&& o) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  pcre2_real_code_8* code() const { return code_; }
  bool jit() const { return jit_; }

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// Per-thread match state (match data, JIT stack), reused across calls.
class RegexMatcher {
 public:
  RegexMatcher();
  RegexMatcher(const RegexMatcher&) = delete;
  RegexMatcher& operator=(const RegexMatcher&) = delete;
  ~RegexMatcher();

  // Leftmost match in `subject` starting the search at byte `from`; subject must be valid
  // UTF-8 (checked once by the caller, not per call). Returns false when there is none.
  bool search(const Regex& re, std::string_view subject, size_t from, size_t& start, size_t& end);

 private:
  pcre2_real_match_data_8* match_data_ = nullptr;
  pcre2_real_match_context_8* match_context_ = nullptr;
  pcre2_real_jit_stack_8* jit_stack_ = nullptr;
};

// Calls on_match(start, end) for each match exactly as the Rust `onig` crate's find_iter yields
// them: an empty match right after the previous match is skipped and the search moves one
// character on.
template <class F>
void for_each_match(const Regex& re, RegexMatcher& m, std::string_view subject, F&& on_match) {
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= subject.size()) {
    size_t s, e;
    if (!m.search(re, subject, last_end, s, e)) return;
    if (s == e && have_last && last_match_end == e) {
      if (last_end >= subject.size()) return;
      const auto b = static_cast<unsigned char>(subject[last_end]);
      last_end += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
      continue;
    }
    last_end = e;
    have_last = true;
    last_match_end = e;
    on_match(s, e);
  }
}

}  // namespace dseek
