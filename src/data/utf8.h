// UTF-8 helpers for the tokenizer: validation, code-point decoding, lossy repair, and the
// Unicode White_Space set.
//
// Token ids map to byte strings, and a byte string need not be valid UTF-8 (a multi-byte character
// is often split across tokens). Decoding therefore ends with a lossy conversion; it follows the
// WHATWG / Unicode "maximal subpart" rule (one U+FFFD per maximal ill-formed subsequence), which is
// what both Rust's String::from_utf8_lossy and JavaScript's TextDecoder do, so qaft's decoded text
// matches the Hugging Face tokenizers byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qaft::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// Result of decoding one step: a code point, or an ill-formed subsequence of `length` bytes.
struct Step {
  char32_t code_point;  // the decoded scalar value; kReplacement when !valid
  int length;           // bytes consumed (1..4); for an ill-formed run, the maximal subpart length
  bool valid;           // false: `length` bytes form one ill-formed subsequence
  bool truncated;       // true: the bytes are a valid prefix cut short by the end of input
};

// Decodes the character that starts at s[i] (i < s.size()).
Step decode_step(std::string_view s, size_t i);

// Byte offset of the first ill-formed byte, or npos when `s` is well-formed UTF-8.
size_t first_invalid(std::string_view s);
inline bool is_valid(std::string_view s) { return first_invalid(s) == std::string_view::npos; }

// Replaces each maximal ill-formed subsequence with U+FFFD.
std::string repair(std::string_view s);

// Length of the longest prefix of `s` that ends on a complete character, treating a trailing valid
// but truncated sequence as "not yet complete" (streaming). Ill-formed bytes count as complete (they
// decode to U+FFFD whatever follows).
size_t complete_prefix(std::string_view s);

// Appends the UTF-8 encoding of `cp`.
void append(std::string& out, char32_t cp);

// Unicode White_Space property (what Rust's char::is_whitespace and Python's str.isspace use).
bool is_white_space(char32_t cp);

// Bytes in the UTF-8 sequence that starts with lead byte `b` (1 for ASCII and for stray bytes).
inline int sequence_length(uint8_t b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  return 4;
}

}  // namespace qaft::utf8
