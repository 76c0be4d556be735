// JSONL training datasets: OpenAI chat format ({"messages": [{"role", "content"}...], "weight": w})
// and prompt/completion ({"prompt": ..., "completion": ...}), streamed line by line with a bounded
// buffer (never the whole file in memory), validated per line, tokenized through the model's chat
// template into (ids, loss mask) examples, with statistics. See docs/data.md.
#pragma once

#include "data/chat_template.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace qaft {

// What is done with an example longer than max_length tokens.
enum class OverflowPolicy {
  kDrop,      // reject it (an error of class kTooLong)
  kTruncate,  // keep its first max_length tokens (dropped if no trained token is left)
  kSplit,     // cut it into consecutive pieces of max_length tokens, each an example (pretraining
              // documents; a piece without a trained token is left out)
};

// Classes of per-line problems (the order is the order of the report).
enum class DataErrorClass {
  kLineTooLong,     // the line exceeds max_line_bytes (not even parsed)
  kInvalidUtf8,     // the line is not well-formed UTF-8
  kInvalidJson,     // not parseable JSON
  kNotObject,       // JSON, but not an object
  kBadSchema,       // neither "messages" nor "prompt"/"completion", or a field of the wrong type
  kUnknownRole,     // a role other than system/user/assistant
  kEmptyContent,    // a message (or prompt/completion) without content or with empty content
  kNoAssistant,     // no assistant turn: nothing to train on
  kBadWeight,       // "weight" not a finite number >= 0
  kTooLong,         // longer than max_length tokens with the drop policy
  kDuplicate,       // the same example (canonical JSON) as an earlier line
  kEmptyFile,       // the file holds no example at all (reported on line 0)
  kCount,           // number of classes
};

const char* data_error_class_name(DataErrorClass c);

// One problem, on one line.
struct DataError {
  int64_t line = 0;            // 1-based line number (0: the file as a whole)
  DataErrorClass kind = DataErrorClass::kInvalidJson;  // its class
  std::string message;         // what is wrong, for a person
};

// One tokenized training example.
struct Example {
  int64_t line = 0;               // 1-based line it came from
  std::vector<int32_t> ids;       // token ids
  std::vector<uint8_t> loss_mask; // 1 = trained on (assistant / completion tokens)
  float weight = 1.0f;            // the line's "weight" (1 when absent)
  bool truncated = false;         // cut to max_length
};

// How a dataset is read.
struct DatasetOptions {
  int64_t max_length = 0;                      // tokens per example; 0 = unlimited
  OverflowPolicy on_overflow = OverflowPolicy::kDrop;  // what to do beyond max_length
  size_t max_line_bytes = size_t{64} << 20;    // longer lines are rejected (kLineTooLong)
  bool fail_fast = false;                      // stop at the first error
  size_t max_errors_kept = 20;                 // errors kept verbatim (the rest only counted)
  bool deduplicate = true;                     // report and skip exact duplicates
};

// Number of power-of-two length buckets: bucket k counts examples with 2^(k-1) < tokens <= 2^k
// (bucket 0: 0 or 1 token).
inline constexpr int kLengthBuckets = 40;

// What a pass over a dataset found.
struct DatasetStats {
  int64_t lines = 0;             // lines read (including blank ones)
  int64_t rows = 0;              // non-blank lines
  int64_t valid_rows = 0;        // examples produced
  int64_t tokens = 0;            // tokens of the produced examples
  int64_t trainable_tokens = 0;  // of which loss-mask tokens
  int64_t truncated = 0;         // examples cut to max_length
  int64_t errors = 0;            // lines with an error (all classes)
  bool stopped_early = false;    // fail_fast stopped the pass
  std::array<int64_t, static_cast<size_t>(DataErrorClass::kCount)> error_counts{};  // per class
  std::vector<DataError> first_errors;                  // the first max_errors_kept errors
  std::array<int64_t, kLengthBuckets> length_histogram{};  // example lengths, power-of-two buckets
  int64_t max_example_tokens = 0;  // longest produced example

  // Seconds per epoch at `tokens_per_second` (training throughput measured on this machine, in
  // processed tokens/s): every token of every example is processed once per epoch, padding or
  // packing overhead excluded. 0 when tokens_per_second <= 0.
  double epoch_seconds(double tokens_per_second) const;
  // rows, valid_rows, tokens, trainable_tokens, truncated, errors, stopped_early, error_counts (per
  // class name), first_errors, max_example_tokens, length_histogram (non-empty power-of-two buckets):
  // what `qaft dataset validate --json` prints and the workspace records.
  nlohmann::json to_json() const;
};

// Converts one parsed JSONL record to an example. Throws nothing; returns false and fills `error`
// (with its class) when the record is invalid. `line` is copied into the example.
bool example_from_json(const std::string& line_text, int64_t line, const ChatTemplate& tpl,
                       const Tokenizer& tok, const DatasetOptions& options, Example& out,
                       DataError& error);

// Streams `path` line by line, validating and tokenizing each; valid examples go to `sink` (may be
// empty). Throws kIo when the file cannot be opened or read; data errors are collected in the
// returned statistics (and stop the pass with fail_fast).
DatasetStats scan_dataset(const std::filesystem::path& path, const Tokenizer& tok,
                          const ChatTemplate& tpl, const DatasetOptions& options,
                          const std::function<void(Example&&)>& sink = {});

// Reads a file line by line with a bounded buffer: a line longer than the limit is skipped (its
// bytes are read and discarded) and reported as too long instead of being held in memory.
class LineReader {
 public:
  LineReader(const std::filesystem::path& path, size_t max_line_bytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its "\n" (and a trailing "\r"); false at end of file. `too_long` is set when
  // the line exceeded the limit (then `line` holds its first max_line_bytes bytes).
  bool next(std::string& line, bool& too_long);
  int64_t line_number() const { return line_no_; }  // 1-based number of the last line returned

 private:
  bool fill();
  std::FILE* f_ = nullptr;      // the open file
  std::string path_;            // for errors
  size_t max_;                  // line length limit in bytes
  std::vector<char> buf_;       // read buffer (1 MiB)
  size_t pos_ = 0, end_ = 0;    // unread bytes are buf_[pos_, end_)
  bool eof_ = false;            // the file is exhausted
  int64_t line_no_ = 0;         // lines returned so far
};

}  // namespace qaft
