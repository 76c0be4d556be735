// GPT-2 byte ↔ unicode tables (see byte_level.h), built once from the rule, not stored.
#include "data/byte_level.h"

#include "data/utf8.h"

#include <array>

namespace qaft::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};      // byte → code point
  std::array<int16_t, 0x180> to_byte{};     // code point (< 0x180) → byte, -1 if none

  Tables() {
    to_byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      to_char[static_cast<size_t>(b)] = c;
      to_byte[c] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

std::optional<uint8_t> char_to_byte(char32_t c) {
  if (c >= 0x180) return std::nullopt;
  const int16_t b = tables().to_byte[c];
  if (b < 0) return std::nullopt;
  return static_cast<uint8_t>(b);
}

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const utf8::Step st = utf8::decode_step(text, i);
    if (!st.valid) return std::nullopt;
    const auto b = char_to_byte(st.code_point);
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
    i += static_cast<size_t>(st.length);
  }
  return out;
}

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) utf8::append(out, byte_to_char(static_cast<uint8_t>(ch)));
  return out;
}

}  // namespace qaft::byte_level
