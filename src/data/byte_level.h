// GPT-2's byte-to-unicode mapping, used by every byte-level BPE (GPT-2, Llama 3, Qwen, DeepSeek).
//
// Byte-level BPE vocabularies are stored as text in which each byte 0..255 is written as one
// printable code point: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
// themselves and the other 68 bytes map, in order, to U+0100..U+0143 (so a space is 'Ġ' U+0120, a
// newline 'Ċ' U+010A). qaft converts the vocabulary back to raw bytes once at load time and runs
// BPE on bytes; these tables are the two directions of that bijection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qaft::byte_level {

// The code point that stands for byte b.
char32_t byte_to_char(uint8_t b);

// The byte that code point c stands for, or nullopt when c is not one of the 256 characters.
std::optional<uint8_t> char_to_byte(char32_t c);

// Byte-level text (e.g. a vocabulary entry "Ġhello") to raw bytes (" hello"); nullopt when some
// character is outside the 256-character alphabet or the text is not valid UTF-8.
std::optional<std::string> decode(std::string_view text);

// Raw bytes to byte-level text (" hello" → "Ġhello").
std::string encode(std::string_view bytes);

}  // namespace qaft::byte_level
