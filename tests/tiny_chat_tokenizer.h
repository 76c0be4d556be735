// A tiny byte-level tokenizer (256 byte tokens, no merges) with ChatML special tokens and a given
// chat_template, for chat/dataset/batcher tests that must not depend on the npm reference models.
#pragma once

#include "data/tokenizer.h"
#include "data/utf8.h"

#include <nlohmann/json.hpp>

#include <string>

namespace qaft::test {

// The tokenizer.json and tokenizer_config.json texts of tiny_chat_tokenizer() (to write a model
// directory).
struct TinyChatTokenizerFiles {
  std::string tokenizer_json;
  std::string config_json;
};

inline TinyChatTokenizerFiles tiny_chat_tokenizer_files(
    const std::string& chat_template = "{{'<|im_start|>' + m.role}}<|im_end|>") {
  nlohmann::json vocab = nlohmann::json::object();
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    // The GPT-2 byte-level alphabet: printable bytes map to themselves, others to U+0100...
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    std::string s;
    utf8::append(s, printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++));
    vocab[s] = b;
  }
  const nlohmann::json tj = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 256}, {"content", "<|im_start|>"}, {"special", true}},
                        {{"id", 257}, {"content", "<|im_end|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                         {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  const nlohmann::json cj = {{"chat_template", chat_template}, {"eos_token", "<|im_end|>"}};
  return {tj.dump(), cj.dump()};
}

inline Tokenizer tiny_chat_tokenizer(
    const std::string& chat_template = "{{'<|im_start|>' + m.role}}<|im_end|>") {
  const TinyChatTokenizerFiles f = tiny_chat_tokenizer_files(chat_template);
  return Tokenizer::from_json(f.tokenizer_json, f.config_json, "tiny");
}

}  // namespace qaft::test
