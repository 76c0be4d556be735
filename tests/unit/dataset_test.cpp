// JSONL datasets: every validation class on tests/data/dataset_errors.jsonl (one line per class),
// the bounded line reader (huge lines, binary garbage, empty files, CRLF, no final newline),
// overflow policies, fail-fast, weights, prompt/completion, pretraining text, statistics.
#include "core/error.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "temp_dir.h"
#include "tiny_chat_tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

namespace qaft {
namespace {

namespace fs = std::filesystem;

const fs::path kErrors = fs::path(QAFT_TEST_DATA_DIR) / "dataset_errors.jsonl";

class Dataset : public ::testing::Test {
 protected:
  Tokenizer tok_ = test::tiny_chat_tokenizer();
  ChatTemplate tpl_ = ChatTemplate::from_tokenizer(tok_, "tiny");
  test::TempDir tmp_;

  std::string write(const std::string& name, const std::string& bytes) {
    const std::string p = tmp_.file(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  int64_t count(const DatasetStats& s, DataErrorClass c) {
    return s.error_counts[static_cast<size_t>(c)];
  }
};

TEST_F(Dataset, EveryErrorClassWithItsLineNumber) {
  DatasetOptions o;
  o.max_length = 200;
  std::vector<Example> out;
  const DatasetStats s = scan_dataset(kErrors, tok_, tpl_, o, [&](Example&& e) { out.push_back(std::move(e)); });
  const std::vector<std::pair<int64_t, DataErrorClass>> expected = {
      {2, DataErrorClass::kDuplicate},    {3, DataErrorClass::kInvalidJson},
      {4, DataErrorClass::kNotObject},    {5, DataErrorClass::kBadSchema},
      {6, DataErrorClass::kUnknownRole},  {7, DataErrorClass::kEmptyContent},
      {8, DataErrorClass::kEmptyContent}, {9, DataErrorClass::kNoAssistant},
      {10, DataErrorClass::kBadWeight},   {12, DataErrorClass::kInvalidUtf8},
      {14, DataErrorClass::kTooLong}};
  ASSERT_EQ(s.first_errors.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(s.first_errors[i].line, expected[i].first) << s.first_errors[i].message;
    EXPECT_EQ(s.first_errors[i].kind, expected[i].second) << s.first_errors[i].message;
    EXPECT_FALSE(s.first_errors[i].message.empty());
  }
  EXPECT_NE(s.first_errors[4].message.find("narrator"), std::string::npos);
  EXPECT_EQ(s.lines, 14);
  EXPECT_EQ(s.rows, 13);  // line 13 is blank
  EXPECT_EQ(s.valid_rows, 2);
  EXPECT_EQ(s.errors, 11);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].line, 1);
  EXPECT_FLOAT_EQ(out[0].weight, 0.5f);
  EXPECT_EQ(out[1].line, 11);  // prompt/completion
  // Statistics are consistent with the examples.
  int64_t tokens = 0, trained = 0, hist = 0;
  for (const Example& e : out) {
    tokens += static_cast<int64_t>(e.ids.size());
    for (uint8_t m : e.loss_mask) trained += m;
  }
  for (int64_t h : s.length_histogram) hist += h;
  EXPECT_EQ(s.tokens, tokens);
  EXPECT_EQ(s.trainable_tokens, trained);
  EXPECT_EQ(hist, 2);
  EXPECT_DOUBLE_EQ(s.epoch_seconds(static_cast<double>(tokens) / 2), 2.0);
}

TEST_F(Dataset, PromptCompletionTrainsOnCompletionAndEos) {
  Example e;
  DataError err;
  ASSERT_TRUE(example_from_json(R"({"prompt": "ab", "completion": "cd"})", 1, tpl_, tok_, {}, e, err));
  EXPECT_EQ(e.ids, (std::vector<int32_t>{'a', 'b', 'c', 'd', 257}));
  EXPECT_EQ(e.loss_mask, (std::vector<uint8_t>{0, 0, 1, 1, 1}));
  EXPECT_FALSE(example_from_json(R"({"prompt": "ab", "completion": ""})", 7, tpl_, tok_, {}, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kEmptyContent);
  EXPECT_EQ(err.line, 7);
  EXPECT_FALSE(example_from_json(R"({"prompt": 3, "completion": "x"})", 1, tpl_, tok_, {}, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kBadSchema);
}

TEST_F(Dataset, PretrainingTextTrainsOnEveryTokenAndEos) {
  Example e;
  DataError err;
  ASSERT_TRUE(example_from_json(R"({"text": "abc"})", 1, tpl_, tok_, {}, e, err));
  EXPECT_EQ(e.ids, (std::vector<int32_t>{'a', 'b', 'c', 257}));
  EXPECT_EQ(e.loss_mask, (std::vector<uint8_t>{1, 1, 1, 1}));
  EXPECT_FALSE(example_from_json(R"({"text": ""})", 4, tpl_, tok_, {}, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kEmptyContent);
  EXPECT_EQ(err.line, 4);
  EXPECT_FALSE(example_from_json(R"({"text": ["a"]})", 1, tpl_, tok_, {}, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kBadSchema);
}

TEST_F(Dataset, OverflowTruncateOrDrop) {
  const std::string line = R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a long answer"}]})";
  Example e;
  DataError err;
  DatasetOptions o;
  o.max_length = 24;
  EXPECT_FALSE(example_from_json(line, 3, tpl_, tok_, o, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kTooLong);
  o.on_overflow = OverflowPolicy::kTruncate;
  ASSERT_TRUE(example_from_json(line, 3, tpl_, tok_, o, e, err));
  EXPECT_TRUE(e.truncated);
  EXPECT_EQ(e.ids.size(), 24u);
  EXPECT_EQ(e.loss_mask.size(), 24u);
  o.max_length = 4;  // only the prompt is left: nothing to train on → dropped
  EXPECT_FALSE(example_from_json(line, 3, tpl_, tok_, o, e, err));
  EXPECT_EQ(err.kind, DataErrorClass::kTooLong);
  // Through scan_dataset: counted as truncated, not an error.
  o.max_length = 24;
  const DatasetStats s = scan_dataset(write("t.jsonl", line + "\n"), tok_, tpl_, o);
  EXPECT_EQ(s.errors, 0);
  EXPECT_EQ(s.truncated, 1);
}

TEST_F(Dataset, OverflowSplitCutsLongDocumentsIntoPieces) {
  const std::string path = write("long.jsonl", "{\"text\": \"abcdefghij\"}\n{\"text\": \"xy\"}\n");
  DatasetOptions o;
  o.max_length = 4;
  o.on_overflow = OverflowPolicy::kSplit;
  std::vector<Example> out;
  const DatasetStats s = scan_dataset(path, tok_, tpl_, o, [&](Example&& e) { out.push_back(std::move(e)); });
  EXPECT_EQ(s.errors, 0);
  EXPECT_EQ(s.valid_rows, 2);
  // "abcdefghij" + EOS = 11 tokens → 4 + 4 + 3; "xy" + EOS fits.
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].ids, (std::vector<int32_t>{'a', 'b', 'c', 'd'}));
  EXPECT_EQ(out[2].ids, (std::vector<int32_t>{'i', 'j', 257}));
  EXPECT_EQ(out[2].line, 1);
  EXPECT_TRUE(out[1].truncated);
  EXPECT_EQ(out[3].ids, (std::vector<int32_t>{'x', 'y', 257}));
  EXPECT_EQ(s.tokens, 14);
}

TEST_F(Dataset, FailFastStopsAtTheFirstError) {
  DatasetOptions o;
  o.fail_fast = true;
  const DatasetStats s = scan_dataset(kErrors, tok_, tpl_, o);
  EXPECT_TRUE(s.stopped_early);
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.lines, 2);
  EXPECT_EQ(s.first_errors.at(0).kind, DataErrorClass::kDuplicate);
}

TEST_F(Dataset, ErrorsBeyondTheKeptOnesAreCounted) {
  std::string bytes;
  for (int i = 0; i < 50; ++i) bytes += "{oops\n";
  DatasetOptions o;
  o.max_errors_kept = 3;
  const DatasetStats s = scan_dataset(write("bad.jsonl", bytes), tok_, tpl_, o);
  EXPECT_EQ(s.errors, 50);
  EXPECT_EQ(count(s, DataErrorClass::kInvalidJson), 50);
  EXPECT_EQ(s.first_errors.size(), 3u);
  EXPECT_EQ(s.first_errors[2].line, 3);
}

TEST_F(Dataset, EmptyFileAndBlankLines) {
  for (const char* bytes : {"", "\n\n  \n\r\n"}) {
    const DatasetStats s = scan_dataset(write("e.jsonl", bytes), tok_, tpl_, {});
    EXPECT_EQ(s.rows, 0);
    EXPECT_EQ(count(s, DataErrorClass::kEmptyFile), 1);
    EXPECT_EQ(s.first_errors.at(0).line, 0);
  }
  EXPECT_THROW(scan_dataset(tmp_.file("missing.jsonl"), tok_, tpl_, {}), Error);
}

TEST_F(Dataset, BinaryGarbageIsReportedNotFatal) {
  std::mt19937 rng(42);
  std::string bytes(1 << 20, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  const DatasetStats s = scan_dataset(write("garbage.bin", bytes), tok_, tpl_, {});
  EXPECT_EQ(s.valid_rows, 0);
  EXPECT_GT(s.errors, 1000);  // ~4096 lines, each invalid UTF-8 or JSON
  EXPECT_EQ(s.errors, count(s, DataErrorClass::kInvalidUtf8) + count(s, DataErrorClass::kInvalidJson) +
                          count(s, DataErrorClass::kEmptyFile));
}

TEST_F(Dataset, LinesBeyondTheLimitAreSkippedInBoundedMemory) {
  const std::string good = R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})";
  // A 3 MiB line with a 1 MiB limit (and a buffer boundary inside it), then a good line without a
  // final newline, with CRLF endings.
  std::string bytes = good + "\r\n{\"messages\": \"" + std::string(3 << 20, 'x') + "\"}\r\n" +
                      R"({"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a"}]})";
  DatasetOptions o;
  o.max_line_bytes = 1 << 20;
  const DatasetStats s = scan_dataset(write("huge.jsonl", bytes), tok_, tpl_, o);
  EXPECT_EQ(s.valid_rows, 2);
  ASSERT_EQ(s.errors, 1);
  EXPECT_EQ(s.first_errors[0].kind, DataErrorClass::kLineTooLong);
  EXPECT_EQ(s.first_errors[0].line, 2);
  // The reader itself: the kept prefix is bounded by the limit.
  LineReader r(tmp_.file("huge.jsonl"), 1 << 20);
  std::string line;
  bool too_long = false;
  ASSERT_TRUE(r.next(line, too_long));
  EXPECT_FALSE(too_long);
  EXPECT_EQ(line, good);
  ASSERT_TRUE(r.next(line, too_long));
  EXPECT_TRUE(too_long);
  EXPECT_EQ(line.size(), size_t{1} << 20);
  ASSERT_TRUE(r.next(line, too_long));
  EXPECT_FALSE(too_long);
  EXPECT_EQ(r.line_number(), 3);
  EXPECT_FALSE(r.next(line, too_long));
}

TEST_F(Dataset, DuplicatesUseCanonicalJson) {
  const std::string a = R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})";
  const std::string b = R"({ "messages":[{"content":"q","role":"user"},{"content":"a","role":"assistant"}] })";
  DatasetOptions o;
  EXPECT_EQ(scan_dataset(write("d.jsonl", a + "\n" + b + "\n"), tok_, tpl_, o).errors, 1);
  o.deduplicate = false;
  EXPECT_EQ(scan_dataset(write("d.jsonl", a + "\n" + b + "\n"), tok_, tpl_, o).errors, 0);
}

TEST_F(Dataset, LengthHistogramBuckets) {
  std::string bytes;
  for (int n : {1, 5, 30, 100})
    bytes += R"({"prompt": "", "completion": ")" + std::string(static_cast<size_t>(n), 'z') + "\"}\n";
  const DatasetStats s = scan_dataset(write("h.jsonl", bytes), tok_, tpl_, {});
  ASSERT_EQ(s.valid_rows, 4);  // lengths n + 1 (EOS): 2, 6, 31, 101
  EXPECT_EQ(s.length_histogram[1], 1);
  EXPECT_EQ(s.length_histogram[3], 1);
  EXPECT_EQ(s.length_histogram[5], 1);
  EXPECT_EQ(s.length_histogram[7], 1);
  EXPECT_EQ(s.max_example_tokens, 101);
}

}  // namespace
}  // namespace qaft
