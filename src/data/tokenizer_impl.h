// Internal pieces of a loaded tokenizer (not part of the public API): the normalizer, the
// pre-tokenizer, the added-token matcher, the post-processor template and the decoder chain, as
// plain data built by tokenizer_json.cpp and run by tokenizer.cpp / pretokenizer.cpp /
// normalizer.cpp / decoder.cpp.
#pragma once

#include "data/bpe.h"
#include "data/regex.h"
#include "data/tokenizer.h"

#include <array>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft::tok {

// ---- normalizer ---------------------------------------------------------------------------------

struct NormalizerStep {
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kReplace, kPrepend, kLowercase, kStrip };
  Kind kind = Kind::kNfc;          // what this step does
  std::unique_ptr<Regex> pattern;  // kReplace: what to replace (a literal or a regex)
  std::string content;             // kReplace: the replacement; kPrepend: the prefix
  bool strip_left = false;         // kStrip: remove leading white space
  bool strip_right = false;        // kStrip: remove trailing white space
};

struct Normalizer {
  std::vector<NormalizerStep> steps;  // applied in order; empty = identity
  // Normalizes `text` into `out` (out may not alias text).
  void apply(std::string_view text, std::string& out) const;
};

// ---- pre-tokenizer ------------------------------------------------------------------------------

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  Regex regex;                      // the split pattern
  SplitBehavior behavior = SplitBehavior::kIsolated;  // what happens to the matches
  bool invert = false;              // the non-matching parts are the delimiters
  bool prefix_space = false;        // ByteLevel(add_prefix_space): prepend ' ' to each piece first
};

struct PreTokenizer {
  std::vector<PreTokenizerStep> steps;  // Sequence flattened; ByteLevel's own regex is a step
  bool byte_level = false;              // ends in ByteLevel: pieces go to BPE as bytes
  bool byte_level_prefix_space = false; // ByteLevel add_prefix_space without use_regex

  // Splits `text` into pieces, appended to `pieces` as views into `text` or into `arena` (which
  // holds pieces that needed a prefix space). Pieces are never empty.
  void split(std::string_view text, std::vector<std::string_view>& pieces,
             std::deque<std::string>& arena) const;
};

// ---- added tokens -------------------------------------------------------------------------------

// Leftmost-longest matcher over a set of added tokens (a byte trie), as Hugging Face tokenizers
// match added tokens before anything else touches the text.
class AddedTokenMatcher {
 public:
  // Adds the token at `index` (into the tokenizer's added-token list) with text `content`.
  void add(std::string_view content, int32_t index);
  bool empty() const { return nodes_.size() <= 1; }

  // The longest token that starts at text[i] and satisfies its single_word flag: sets *end (one
  // past the token) and *index; false when none does.
  bool longest(std::string_view text, size_t i, const std::vector<AddedToken>& tokens, size_t* end,
               int32_t* index) const;

  // Splits `text` into plain runs, reported as on_text(begin, end), and added tokens, reported
  // as on_token(index); a token's lstrip/rstrip takes the adjacent white space with it.
  template <typename TextFn, typename TokenFn>
  void split(std::string_view text, const std::vector<AddedToken>& tokens, TextFn&& on_text,
             TokenFn&& on_token) const {
    size_t start = 0, i = 0;
    const size_t n = text.size();
    while (i < n) {
      size_t end = 0;
      int32_t index = -1;
      if (!first_[static_cast<uint8_t>(text[i])] || !longest(text, i, tokens, &end, &index)) {
        ++i;
        continue;
      }
      size_t text_end = i;
      if (tokens[static_cast<size_t>(index)].lstrip) text_end = strip_back(text, start, i);
      if (text_end > start) on_text(start, text_end);
      on_token(index);
      if (tokens[static_cast<size_t>(index)].rstrip) end = strip_front(text, end);
      start = i = end;
    }
    if (start < n) on_text(start, n);
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                  // index of the token ending here
  };
  int32_t child(int32_t node, uint8_t b) const;
  // White space before `i` (not before `floor`) / after `i`, by the Unicode White_Space property.
  static size_t strip_back(std::string_view text, size_t floor, size_t i);
  static size_t strip_front(std::string_view text, size_t i);

  std::vector<Node> nodes_{Node{}};  // nodes_[0] is the root
  std::array<bool, 256> first_{};    // bytes that start some token
};

// ---- post-processor -----------------------------------------------------------------------------

struct PostProcessor {
  bool from_template = false;     // TemplateProcessing present (else tokenizer_config's flags)
  std::vector<int32_t> prefix;    // ids before the sequence (e.g. <|begin_of_text|>)
  std::vector<int32_t> suffix;    // ids after it
};

// ---- decoder ------------------------------------------------------------------------------------

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kFuse, kStrip, kByteFallback };
  Kind kind = Kind::kByteLevel;    // what this step does
  std::unique_ptr<Regex> pattern;  // kReplace: what to replace
  std::string content;             // kReplace: the replacement; kStrip: the character to strip
  int start = 0;                   // kStrip: leading occurrences to remove
  int stop = 0;                    // kStrip: trailing occurrences to remove
};

struct Decoder {
  bool present = false;            // tokenizer.json has a decoder (else tokens join with ' ')
  std::vector<DecoderStep> steps;  // applied in order to the token strings
  bool simple_byte_level = false;  // exactly one ByteLevel step: ids decode by concatenation
  // Runs the chain on token strings (in place) and returns their concatenation, still possibly
  // ill-formed UTF-8 (the caller repairs it).
  std::string run(std::vector<std::string>& tokens) const;
};

// Text clean-up of transformers' clean_up_tokenization_spaces (" ." → ".", " n't" → "n't", ...).
std::string clean_up_tokenization(std::string_view text);

}  // namespace qaft::tok

namespace qaft {

struct Tokenizer::Impl {
  std::string source;                  // "DIR/tokenizer.json", for messages
  TokenizerConfig config;              // tokenizer_config.json essentials
  tok::Normalizer normalizer;          // before pre-tokenization
  tok::PreTokenizer pre_tokenizer;     // splits normalized text into words
  tok::BpeModel model;                 // words → ids
  tok::PostProcessor post_processor;   // special tokens around the sequence
  tok::Decoder decoder;                // ids → text
  std::vector<AddedToken> added;       // added tokens, in tokenizer.json order
  tok::StringIdMap added_by_content;   // content → id
  std::vector<int32_t> added_index_of_id;  // id → index into `added`, -1 when not added
  tok::AddedTokenMatcher match_raw;             // normalized=false tokens, matched in the raw text
  tok::AddedTokenMatcher match_raw_nonspecial;  // the same without special ones (split_special_tokens)
  tok::AddedTokenMatcher match_normalized;      // normalized=true tokens, matched after normalizing
  tok::AddedTokenMatcher match_normalized_nonspecial;  // the same without special ones
  std::vector<std::string> decoded_bytes;  // simple byte-level decoder: id → bytes
  int32_t vocab_size = 0;              // 1 + the largest id
  std::optional<int32_t> bos_id, eos_id, pad_id, unk_id;  // from tokenizer_config.json

  // Encodes one run of non-added text (normalize, split normalized tokens, pre-tokenize, BPE).
  void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;
};

}  // namespace qaft
