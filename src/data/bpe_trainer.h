// Byte-level BPE training: count pre-tokenized words of a corpus, then repeatedly merge the most
// frequent adjacent pair, and write a tokenizer.json (+ tokenizer_config.json) that Tokenizer loads.
//
// For the small models qaft trains itself. Words are split with the Qwen2/GPT-4-style pattern
// (contractions, letter runs, single digits, punctuation runs, newlines, white space), the
// pattern written into the output so that encoding splits text as training did. Pair counts are
// updated incrementally: a merge touches only the words that contain the pair (an index from pair
// to words), and a max-heap with lazy re-validation picks the next pair. Ties go to the smaller
// (left id, right id), so a corpus and options always give the same tokenizer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qaft {

// Qwen2/3's pre-tokenizer pattern (also qaft's default for trained tokenizers).
inline constexpr std::string_view kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct BpeTrainerOptions {
  int32_t vocab_size = 32000;  // total entries: special tokens + 256 bytes + merged tokens
  std::vector<std::string> special_tokens = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"};  // ids 0..k-1
  std::string bos_token;       // tokenizer_config bos_token ("" = the first special token, if any)
  std::string eos_token;       // tokenizer_config eos_token ("" = the second special token, if any)
  bool add_bos_token = false;  // tokenizer_config add_bos_token (encode prepends BOS)
  int64_t min_frequency = 2;   // a pair seen fewer times is never merged
  bool progress = true;        // log progress lines (stderr) during long runs
};

// What train() produced.
struct TrainedBpe {
  std::vector<std::string> special_tokens;             // ids 0..k-1
  std::vector<std::string> tokens;                     // raw bytes of ids k.. (256 bytes, then merges)
  std::vector<std::pair<int32_t, int32_t>> merges;     // in rank order, as ids
  std::string bos_token, eos_token;                    // names for tokenizer_config.json ("" = none)
  bool add_bos_token = false;                          // tokenizer_config.json add_bos_token

  int32_t vocab_size() const { return static_cast<int32_t>(special_tokens.size() + tokens.size()); }
  std::string tokenizer_json() const;         // the tokenizer.json text
  std::string tokenizer_config_json() const;  // the tokenizer_config.json text
  // Writes both files into `dir` (created if missing), each atomically (temporary + rename).
  void save(const std::filesystem::path& dir) const;
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options);
  ~BpeTrainer();

  // Counts the words of `text` (valid UTF-8; special tokens in it are not counted). Chunks may be
  // fed one after another; cut them at line ends.
  void add_text(std::string_view text);
  // Streams a corpus file through add_text (ill-formed UTF-8 is replaced by U+FFFD, with a
  // warning). Throws kIo when it cannot be read.
  void add_file(const std::filesystem::path& path);

  // Runs the merges. Throws kInvalidArgument when vocab_size cannot hold the special tokens and
  // the 256 bytes; stops early (with a warning) when no pair reaches min_frequency.
  TrainedBpe train();

  int64_t words_seen() const { return words_seen_; }
  size_t unique_words() const { return counts_.size(); }

 private:
  BpeTrainerOptions options_;
  std::unordered_map<std::string, int64_t> counts_;  // word bytes → occurrences
  int64_t words_seen_ = 0;                           // total words counted
  struct Impl;
  Impl* impl_;                                        // compiled patterns
};

}  // namespace qaft
