// Tokenizer — a Hugging Face `tokenizer.json` byte-level BPE tokenizer (DeepSeek-V3, Qwen2/3,
// Llama 3), plus IncrementalDecoder for streaming.
//
// What is read: tokenizer.json's normalizer (NFC/NFD/NFKC/NFKD, Sequence, Replace, Prepend,
// Lowercase, Strip), pre-tokenizer (Sequence, Split with every behaviour and invert, ByteLevel,
// Digits), BPE model (merges in the "a b" and the [a, b] forms, ignore_merges, byte_fallback,
// unk_token), added tokens (matched before anything else, never split; special, lstrip, rstrip,
// single_word, normalized), post-processor (ByteLevel, TemplateProcessing, Sequence) and decoder
// (ByteLevel, Sequence, Replace, Fuse, Strip, ByteFallback); and tokenizer_config.json's
// bos/eos/pad/unk tokens, add_bos_token/add_eos_token, clean_up_tokenization_spaces and
// chat_template. Anything else is a kUnsupported error that names the component type.
//
// Results match the Hugging Face tokenizers (Rust) and the transformers.js reference token for
// token; docs/tokenizer.md lists the few characters where those two references disagree and which
// one qaft follows. Encoding and decoding are const and thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// One entry of tokenizer.json's "added_tokens".
struct AddedToken {
  int32_t id = 0;            // its token id
  std::string content;       // its exact text
  bool special = false;      // a control token: skipped by decode(skip_special_tokens)
  bool lstrip = false;       // swallows the white space on its left
  bool rstrip = false;       // swallows the white space on its right
  bool single_word = false;  // matches only where not inside a word
  bool normalized = false;   // matched in the normalized text (else in the raw text)
};

// The parts of tokenizer_config.json qaft uses (all optional in the file).
struct TokenizerConfig {
  std::string tokenizer_class;               // "LlamaTokenizerFast", "Qwen2Tokenizer", ...
  std::optional<std::string> bos_token;      // beginning-of-sequence token text
  std::optional<std::string> eos_token;      // end-of-sequence token text
  std::optional<std::string> pad_token;      // padding token text
  std::optional<std::string> unk_token;      // unknown token text
  bool add_bos_token = false;                // encode(add_special_tokens) prepends bos
  bool add_eos_token = false;                // encode(add_special_tokens) appends eos
  bool clean_up_tokenization_spaces = false; // decode removes spaces before punctuation
  std::string chat_template;                 // Jinja source ("" when absent; "default" if named)
  int64_t model_max_length = 0;              // 0 when absent
  nlohmann::json raw;                        // the whole file (null when there is none)
};

// Options of one encode() call.
struct EncodeOptions {
  bool add_special_tokens = true;     // add BOS/EOS (tokenizer_config.json) or the template's
  bool split_special_tokens = false;  // true: special tokens in the text are plain text
};

class Tokenizer {
 public:
  // Loads MODEL_DIR/tokenizer.json and, when present, MODEL_DIR/tokenizer_config.json. `path`
  // may also name the tokenizer.json file itself. Throws kIo when tokenizer.json cannot be read,
  // kInvalidFile (naming the file and the JSON path) when it is malformed, kUnsupported (naming the
  // component type) when it uses something qaft does not implement.
  static Tokenizer load(const std::filesystem::path& path);

  // The same from JSON text; `config_json` may be empty. `source` names the files in errors.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json,
                             const std::string& source);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text (UTF-8; kInvalidArgument naming the byte offset when it is not) → token ids.
  // add_special_tokens adds what the model adds around a sequence (DeepSeek-V3: BOS, as
  // transformers does for add_bos_token; Llama 3: its TemplateProcessing; Qwen: nothing).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options) const;
  // Appends instead of returning (for building long sequences without copies).
  void encode_append(std::string_view text, const EncodeOptions& options,
                     std::vector<int32_t>& out) const;

  // Token ids → text. Ill-formed UTF-8 (a character cut between tokens) becomes U+FFFD.
  // Throws kInvalidArgument for an id outside [0, vocab_size()) or a hole in the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The tokens' raw bytes without UTF-8 repair or clean-up (what IncrementalDecoder streams).
  // Only for decoders that work token by token (is_streamable()).
  void append_token_bytes(int32_t id, bool skip_special_tokens, std::string& out) const;
  // True when decode(ids) == repair(concatenation of append_token_bytes) (a ByteLevel decoder
  // without clean-up): the fast, exact streaming path.
  bool is_streamable() const;

  int32_t vocab_size() const;  // 1 + the largest id (model vocabulary and added tokens)
  // The id of a vocabulary entry as written in tokenizer.json ("Ġhello") or of an added token's
  // content ("<|im_end|>").
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary entry or added-token content for `id` ("" for a hole). kInvalidArgument when
  // out of range.
  const std::string& id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;  // an added token flagged special
  const std::vector<AddedToken>& added_tokens() const;
  const TokenizerConfig& config() const;
  std::optional<int32_t> bos_id() const;  // id of config().bos_token, when it has one
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  const std::string& source() const;  // the tokenizer.json path (or label) it came from

  // The words BPE sees for `text` (after added tokens are cut out, normalization and
  // pre-tokenization), as raw bytes; added tokens appear as their content. For tests and debugging.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // Empties the BPE word cache (for cold-start benchmarks).
  void clear_cache() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streams decoded text token by token, emitting only complete UTF-8 characters; the
// concatenation of everything push() and flush() return equals tokenizer.decode(all ids).
// Keeps a reference to the tokenizer, which must outlive it. Not thread-safe (one per stream).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  // Text completed by this token ("" while a character is still incomplete).
  std::string push(int32_t id);
  std::string push(std::span<const int32_t> ids);
  // Whatever is still pending (an incomplete character becomes U+FFFD); then starts over.
  std::string flush();
  // Forgets everything pending.
  void reset();

 private:
  const Tokenizer* tokenizer_;     // what decodes the ids
  bool skip_special_;              // drop special tokens from the output
  std::string pending_;            // streamable path: bytes not yet emitted (an incomplete char)
  std::vector<int32_t> ids_;       // general path: ids since prefix_
  size_t prefix_ = 0;              // general path: ids_[0, prefix_) decoded as context only
  size_t read_ = 0;                // general path: ids_[0, read_) already emitted
};

}  // namespace qaft
