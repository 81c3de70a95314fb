// GPT-2's byte-level alphabet (HF ByteLevel pre-tokenizer/decoder): every byte maps to one
// printable code point, so that BPE vocabularies can be stored as text. Bytes 0x21-0x7E,
// 0xA1-0xAC and 0xAE-0xFF map to themselves; the other 68 map to U+0100, U+0101, ... in order
// (space 0x20 -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
#pragma once

#include <array>
#include <cstdint>

namespace dseek::byte_level {

inline constexpr bool maps_to_itself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

inline constexpr std::array<char32_t, 256> kByteToChar = [] {
  std::array<char32_t, 256> t{};
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) t[b] = maps_to_itself(b) ? char32_t(b) : next++;
  return t;
}();

// The byte a code point stands for, or -1 when it is outside the alphabet.
inline constexpr int char_to_byte(char32_t c) {
  if (c < 0x100) return maps_to_itself(int(c)) ? int(c) : -1;
  if (c < 0x100 + 68) {
    for (int b = 0; b < 256; ++b) {
      if (kByteToChar[b] == c) return b;
    }
  }
  return -1;
}

}  // namespace dseek::byte_level
