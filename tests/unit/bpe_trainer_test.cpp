// BPE training: the trained tokenizer.json loads, round-trips any text (including bytes never seen
// in training), has exactly the vocabulary size asked for, is deterministic, keeps special tokens
// whole, and is written atomically; streaming decode emits only complete characters.
#include "core/error.h"
#include "core/rng.h"
#include "data/bpe_trainer.h"
#include "data/tokenizer.h"
#include "data/utf8.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace qaft {
namespace {

namespace fs = std::filesystem;

// A deterministic ~150 KB corpus: English-like sentences, code, numbers, CJK and emoji.
std::string make_corpus(uint64_t seed, int lines) {
  static const char* const kWords[] = {"the", "tokenizer", "merges", "pairs", "of", "bytes", "into", "tokens",
                                       "and", "it's", "we'll", "don't", "Hello", "world", "data", "model",
                                       "training", "déjà", "vu", "naïve", "straße", "数据", "模型", "トークン",
                                       "😀", "👍🏽", "return", "x", "=", "(", ")", "{", "}", ";", "0.5", "2024"};
  const CounterRng rng(seed, 0);
  std::string s;
  uint64_t k = 0;
  static const char* const kSyllables[] = {"ka", "to", "ri", "men", "sa", "lo", "qui", "ber", "no", "vi",
                                           "tra", "el", "on", "du", "zy", "pho", "ne", "mi", "st", "ux"};
  for (int i = 0; i < lines; ++i) {
    const int n = 3 + static_cast<int>(rng.u32(k++) % 12);
    for (int j = 0; j < n; ++j) {
      if (j) s += rng.u32(k++) % 9 == 0 ? "  " : " ";
      if (rng.u32(k++) % 2) {
        s += kWords[rng.u32(k++) % (sizeof kWords / sizeof *kWords)];
      } else {  // a made-up word of 2..4 syllables, so that there is always more to merge
        for (uint32_t m = 2 + rng.u32(k++) % 3; m > 0; --m) s += kSyllables[rng.u32(k++) % 20];
      }
    }
    s += rng.u32(k++) % 5 == 0 ? ".\r\n" : "\n";
  }
  return s;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("qaft_bpe_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TrainedBpe train(const std::string& corpus, int32_t vocab) {
  BpeTrainerOptions o;
  o.vocab_size = vocab;
  o.progress = false;
  BpeTrainer t(o);
  t.add_text(corpus);
  return t.train();
}

TEST(BpeTrainer, TrainedTokenizerRoundTripsAndHasExactVocabSize) {
  const std::string corpus = make_corpus(1, 3000);
  const TrainedBpe bpe = train(corpus, 700);
  EXPECT_EQ(bpe.vocab_size(), 700);
  const Tokenizer tok = Tokenizer::from_json(bpe.tokenizer_json(), bpe.tokenizer_config_json(), "trained/tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 700);
  const std::vector<int32_t> ids = tok.encode(corpus, false);
  EXPECT_LT(ids.size(), corpus.size() / 3) << "merges should compress the training text";
  EXPECT_EQ(tok.decode(ids), corpus);
  for (const std::string s : {"", "unseen words: Ωμέγα, 한국어, \t\t tabs", "\xF0\x9F\xA6\x80 \x01\x7F", "a\r\n\r\nb"})
    EXPECT_EQ(tok.decode(tok.encode(s, false)), s);
  // Special tokens: ids 0 and 1, never split, BOS/EOS names in tokenizer_config.json.
  EXPECT_EQ(tok.encode("x<｜end▁of▁sentence｜>", false).back(), 1);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.decode(tok.encode("<｜begin▁of▁sentence｜>hi", false), true), "hi");
}

TEST(BpeTrainer, IsDeterministic) {
  const std::string corpus = make_corpus(2, 1500);
  const TrainedBpe a = train(corpus, 600), b = train(corpus, 600);
  EXPECT_EQ(a.tokenizer_json(), b.tokenizer_json());
  // Feeding the same text in two chunks (cut at a line end) gives the same result.
  BpeTrainerOptions o;
  o.vocab_size = 600;
  o.progress = false;
  BpeTrainer t(o);
  const size_t cut = corpus.find('\n', corpus.size() / 2) + 1;
  t.add_text(std::string_view(corpus).substr(0, cut));
  t.add_text(std::string_view(corpus).substr(cut));
  EXPECT_EQ(t.train().tokenizer_json(), a.tokenizer_json());
}

TEST(BpeTrainer, SpecialTokensAreNotCountedAndVocabTooSmallIsAnError) {
  BpeTrainerOptions o;
  o.vocab_size = 300;
  o.progress = false;
  o.special_tokens = {"<s>", "</s>", "<pad>"};
  BpeTrainer t(o);
  std::string text;
  for (int i = 0; i < 200; ++i) text += "<s>abc</s>";
  t.add_text(text);
  const TrainedBpe bpe = t.train();
  const Tokenizer tok = Tokenizer::from_json(bpe.tokenizer_json(), bpe.tokenizer_config_json(), "t.json");
  EXPECT_EQ(tok.encode("<s>abc</s>", false), (std::vector<int32_t>{0, *tok.token_to_id("abc"), 1}));
  EXPECT_FALSE(tok.token_to_id("s>").has_value()) << "text of special tokens must not be learnt";
  EXPECT_EQ(bpe.vocab_size(), 3 + 256 + 2);  // a+b, ab+c: then no pair is left
  o.vocab_size = 258;
  try {
    BpeTrainer small(o);
    small.train();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  }
}

TEST(BpeTrainer, SavesFilesTheLoaderReads) {
  const fs::path dir = temp_dir("save");
  const fs::path corpus_file = dir / "corpus.txt";
  std::ofstream(corpus_file, std::ios::binary) << make_corpus(3, 800) << "bad \xFF byte\n";
  BpeTrainerOptions o;
  o.vocab_size = 400;
  o.progress = false;
  o.add_bos_token = true;
  BpeTrainer t(o);
  t.add_file(corpus_file);
  t.train().save(dir / "out");
  EXPECT_TRUE(fs::exists(dir / "out" / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir / "out" / "tokenizer_config.json"));
  for (const auto& entry : fs::directory_iterator(dir / "out"))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << "temporary left behind";
  const Tokenizer tok = Tokenizer::load(dir / "out");
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.encode("hello").front(), 0) << "add_bos_token";
  fs::remove_all(dir);
}

TEST(BpeTrainer, StreamingDecodeEmitsOnlyCompleteCharacters) {
  // A tiny vocabulary keeps multi-byte characters split across several tokens.
  const TrainedBpe bpe = train(make_corpus(4, 300), 300);
  const Tokenizer tok = Tokenizer::from_json(bpe.tokenizer_json(), "", "t.json");
  const std::string text = "naïve 数据 👍🏽 done";
  const std::vector<int32_t> ids = tok.encode(text, false);
  ASSERT_GT(ids.size(), 10u);
  IncrementalDecoder stream(tok);
  std::string out;
  size_t empty_pushes = 0;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    EXPECT_TRUE(utf8::is_valid(piece));
    empty_pushes += piece.empty();
    out += piece;
  }
  out += stream.flush();
  EXPECT_EQ(out, text);
  EXPECT_GT(empty_pushes, 0u) << "some token must have ended inside a character";
  // A stream cut inside a character: flush emits U+FFFD, as decode does.
  IncrementalDecoder cut(tok);
  std::string partial;
  const std::vector<int32_t> emoji = tok.encode("😀", false);
  ASSERT_GT(emoji.size(), 1u);
  for (size_t i = 0; i + 1 < emoji.size(); ++i) partial += cut.push(emoji[i]);
  EXPECT_EQ(partial, "");
  EXPECT_EQ(cut.flush(), tok.decode(std::vector<int32_t>(emoji.begin(), emoji.end() - 1)));
}

}  // namespace
}  // namespace qaft
