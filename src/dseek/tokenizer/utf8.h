// UTF-8 validation and lossy conversion with Rust's String::from_utf8_lossy rule: one U+FFFD
// per maximal invalid subsequence (Unicode 16.0 section 3.9, "U+FFFD Substitution of Maximal
// Subparts"), which is also what Python's bytes.decode("utf-8", "replace") does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dseek::utf8 {

struct Decoded {
  char32_t cp;      // the scalar value when valid
  uint32_t length;  // bytes consumed (>= 1 when n > 0): the character, or the maximal invalid subpart
  bool valid;
  bool truncated;   // invalid only because the input ended inside a valid prefix
};

// Decodes the character at p[0..n), n > 0.
Decoded decode(const uint8_t* p, size_t n);

// Length of the longest valid UTF-8 prefix of `s`.
size_t valid_prefix(std::string_view s);
inline bool is_valid(std::string_view s) { return valid_prefix(s) == s.size(); }

// Appends `s` to `out` with each maximal invalid subsequence replaced by U+FFFD.
void append_lossy(std::string_view s, std::string& out);

// Appends the UTF-8 encoding of `cp` (a scalar value).
void append_code_point(char32_t cp, std::string& out);

// Length of the character starting with lead byte `b` in valid UTF-8.
inline uint32_t char_length(uint8_t b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

}  // namespace dseek::utf8
