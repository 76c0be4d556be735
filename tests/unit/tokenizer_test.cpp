// Tokenizer unit tests: every error class (with the small fixture directories of
// tests/data/tokenizer), UTF-8 and byte-level helpers, the \s rewrite, pre-tokenizer split
// behaviours, BPE merge forms and options, added-token flags, post-processor templates, decoder
// chains with byte fallback, and streaming decode. The comparison with the reference tokenizers on
// a large corpus is tokenizer_oracle_test.cpp.
#include "core/error.h"
#include "data/byte_level.h"
#include "data/regex.h"
#include "data/tokenizer.h"
#include "data/utf8.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace qaft {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(QAFT_TEST_DATA_DIR) / "tokenizer";

// Runs f, expects a qaft::Error of `kind` whose message contains every string of `parts`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.message();
    for (const std::string& p : parts) EXPECT_NE(e.message().find(p), std::string::npos) << e.message();
  }
}

// A tokenizer.json with a trivial model and the given pre_tokenizer / other top-level members.
std::string with_model(const std::string& members, const std::string& model = R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})") {
  return R"({"version": "1.0", )" + members + (members.empty() ? "" : ", ") + R"("model": )" + model + "}";
}

// ---- errors -------------------------------------------------------------------------------------

TEST(TokenizerErrors, MissingFileIsIoErrorNamingThePath) {
  expect_error([] { Tokenizer::load(kFixtures / "no_such_model"); }, ErrorKind::kIo,
               {"no_such_model/tokenizer.json", "No such file"});
}

TEST(TokenizerErrors, BadJsonNamesFileAndLine) {
  expect_error([] { Tokenizer::load(kFixtures / "bad_json"); }, ErrorKind::kInvalidFile,
               {"bad_json/tokenizer.json", "not valid JSON", "line 6"});
}

TEST(TokenizerErrors, UnsupportedModelTypeIsUnsupported) {
  expect_error([] { Tokenizer::load(kFixtures / "unsupported_model"); }, ErrorKind::kUnsupported,
               {"unsupported_model/tokenizer.json", "model.type", "\"WordPiece\""});
}

TEST(TokenizerErrors, UnknownPreTokenizerNamesTypeAndPath) {
  expect_error([] { Tokenizer::load(kFixtures / "unknown_pre_tokenizer"); }, ErrorKind::kUnsupported,
               {"pre_tokenizer.pretokenizers[1]", "\"Metaspace\""});
}

TEST(TokenizerErrors, MergeOutsideVocabularyNamesJsonPath) {
  expect_error([] { Tokenizer::load(kFixtures / "bad_merge"); }, ErrorKind::kInvalidFile,
               {"model.merges[1]", "\"c\" is not in model.vocab"});
}

TEST(TokenizerErrors, BadConfigValueNamesConfigFile) {
  expect_error([] { Tokenizer::load(kFixtures / "bad_config"); }, ErrorKind::kInvalidFile,
               {"bad_config/tokenizer_config.json", "bos_token", "expected a string"});
}

TEST(TokenizerErrors, MalformedStructureNamesJsonPath) {
  expect_error([] { Tokenizer::from_json(R"({"model": {"type": "BPE", "merges": []}})", "", "t.json"); },
               ErrorKind::kInvalidFile, {"t.json: model: missing \"vocab\""});
  expect_error([] { Tokenizer::from_json(with_model("", R"({"type": "BPE", "vocab": {"a": "x"}, "merges": []})"), "", "t.json"); },
               ErrorKind::kInvalidFile, {"model.vocab[\"a\"]", "expected an integer"});
  expect_error([] { Tokenizer::from_json(with_model("", R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]})"), "", "t.json"); },
               ErrorKind::kInvalidFile, {"model.merges[0]", "one space"});
  expect_error([] { Tokenizer::from_json(with_model(R"("added_tokens": [{"content": "x"}])"), "", "t.json"); },
               ErrorKind::kInvalidFile, {"added_tokens[0]", "missing \"id\""});
  expect_error([] { Tokenizer::from_json(with_model(R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"})"), "", "t.json"); },
               ErrorKind::kInvalidFile, {"pre_tokenizer.pattern", "cannot compile"});
  expect_error([] { Tokenizer::from_json(with_model(R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"})"), "", "t.json"); },
               ErrorKind::kInvalidFile, {"pre_tokenizer.behavior", "Sideways"});
  expect_error([] { Tokenizer::from_json("[1, 2]", "", "t.json"); }, ErrorKind::kInvalidFile,
               {"t.json: (root): expected an object"});
}

TEST(TokenizerErrors, UnsupportedComponentsNameTheirType) {
  expect_error([] { Tokenizer::from_json(with_model(R"("normalizer": {"type": "BertNormalizer"})"), "", "t.json"); },
               ErrorKind::kUnsupported, {"normalizer", "\"BertNormalizer\""});
  expect_error([] { Tokenizer::from_json(with_model(R"("decoder": {"type": "WordPiece"})"), "", "t.json"); },
               ErrorKind::kUnsupported, {"decoder", "\"WordPiece\""});
  expect_error([] { Tokenizer::from_json(with_model(R"("post_processor": {"type": "RobertaProcessing"})"), "", "t.json"); },
               ErrorKind::kUnsupported, {"post_processor", "\"RobertaProcessing\""});
  expect_error([] { Tokenizer::from_json(with_model("", R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1})"), "", "t.json"); },
               ErrorKind::kUnsupported, {"model.dropout"});
}

TEST(TokenizerErrors, InvalidUtf8InputNamesOffset) {
  const Tokenizer t = Tokenizer::from_json(with_model(""), "", "t.json");
  expect_error([&] { t.encode("aa\xC3(", false); }, ErrorKind::kInvalidArgument, {"not valid UTF-8", "offset 2"});
  expect_error([&] { t.decode(std::vector<int32_t>{7}); }, ErrorKind::kInvalidArgument, {"token id 7"});
}

// ---- helpers ------------------------------------------------------------------------------------

TEST(Utf8, RepairUsesMaximalSubparts) {
  EXPECT_EQ(utf8::repair("a\xE0\x80z"), "a\uFFFD\uFFFDz");       // E0 80: E0 needs A0..BF
  EXPECT_EQ(utf8::repair("a\xF0\x9F\x98"), "a\uFFFD");           // truncated 4-byte sequence: one
  EXPECT_EQ(utf8::repair("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD"); // a surrogate: three
  EXPECT_EQ(utf8::repair("\xC0\xAF"), "\uFFFD\uFFFD");           // overlong
  EXPECT_EQ(utf8::repair("ok 😀"), "ok 😀");
  EXPECT_EQ(utf8::complete_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(utf8::complete_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(utf8::complete_prefix("ab\x80"), 3u);  // a stray continuation byte is final
  EXPECT_EQ(utf8::first_invalid("abc\xFF"), 3u);
}

TEST(ByteLevel, IsGpt2Mapping) {
  EXPECT_EQ(byte_level::byte_to_char(' '), U'\u0120');   // Ġ
  EXPECT_EQ(byte_level::byte_to_char('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(byte_level::byte_to_char('A'), U'A');
  EXPECT_EQ(byte_level::byte_to_char(0xAD), U'\u0143');  // the last remapped byte
  EXPECT_EQ(byte_level::byte_to_char(0xFF), U'\u00FF');
  for (int b = 0; b < 256; ++b) EXPECT_EQ(byte_level::char_to_byte(byte_level::byte_to_char(static_cast<uint8_t>(b))), b);
  EXPECT_EQ(byte_level::encode(" hé"), "Ġh\u00C3\u00A9");
  EXPECT_EQ(byte_level::decode("Ġh\u00C3\u00A9"), " hé");
  EXPECT_FALSE(byte_level::decode("<｜x｜>").has_value());
}

TEST(Regex, WhiteSpaceIsUnicodeWhiteSpace) {
  const Regex ws("^\\s+$", false, "test");
  size_t b, e;
  for (const char* s : {" ", "\t", "\n", "\xC2\x85", "\u00A0", "\u2028", "\u3000", "\x0B"})
    EXPECT_TRUE(ws.find(s, 0, &b, &e)) << s;
  for (const char* s : {"\u180E", "\uFEFF", "\u200B", "x"}) EXPECT_FALSE(ws.find(s, 0, &b, &e)) << s;
  const Regex not_ws("^\\S$", false, "test");
  EXPECT_TRUE(not_ws.find("\u180E", 0, &b, &e));
  const std::string r = Regex::rewrite_white_space("[^\\s\\p{L}]x\\\\s", "t");  // [^\s\p{L}]x\\s
  EXPECT_EQ(r.substr(r.size() - 4), "x\\\\s");  // an escaped backslash before 's' stays
  EXPECT_EQ(r.rfind("[^\\x{09}-\\x{0D}", 0), 0u);
  expect_error([] { Regex("[\\S]", false, "here"); }, ErrorKind::kUnsupported, {"here", "\\S inside a character class"});
}

// ---- pre-tokenizers -----------------------------------------------------------------------------

std::vector<std::string> pieces(const std::string& pre_tokenizer, const std::string& text) {
  return Tokenizer::from_json(with_model(R"("pre_tokenizer": )" + pre_tokenizer), "", "t.json").pre_tokenize(text);
}
using Words = std::vector<std::string>;

TEST(PreTokenizer, SplitBehaviours) {
  const std::string pat = R"("pattern": {"String": "-"}, "invert": false, "behavior": )";
  const std::string text = "the-final--countdown";
  EXPECT_EQ(pieces(R"({"type": "Split", )" + pat + R"("Removed"})", text), (Words{"the", "final", "countdown"}));
  EXPECT_EQ(pieces(R"({"type": "Split", )" + pat + R"("Isolated"})", text),
            (Words{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces(R"({"type": "Split", )" + pat + R"("MergedWithPrevious"})", text),
            (Words{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces(R"({"type": "Split", )" + pat + R"("MergedWithNext"})", text),
            (Words{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces(R"({"type": "Split", )" + pat + R"("Contiguous"})", text),
            (Words{"the", "-", "final", "--", "countdown"}));
  // invert: the matches are the words; Removed then keeps only them.
  EXPECT_EQ(pieces(R"({"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "invert": true, "behavior": "Removed"})",
                   "ab, cd!"), (Words{"ab", "cd"}));
}

TEST(PreTokenizer, DigitsAndSequenceAndLookahead) {
  EXPECT_EQ(pieces(R"({"type": "Digits", "individual_digits": true})", "ab123c"), (Words{"ab", "1", "2", "3", "c"}));
  EXPECT_EQ(pieces(R"({"type": "Digits", "individual_digits": false})", "ab123c4"), (Words{"ab", "123", "c", "4"}));
  // The Qwen pattern: \s+(?!\S) leaves the last space for the next word; contractions any case.
  const std::string qwen = R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})";
  EXPECT_EQ(pieces(qwen, "I'M   here 42\r\n"), (Words{"I", "'M", "  ", " here", " ", "4", "2", "\r\n"}));
  // ByteLevel with its own GPT-2 regex and a prefix space.
  EXPECT_EQ(pieces(R"({"type": "ByteLevel", "add_prefix_space": true})", "hi there"), (Words{" hi", " there"}));
  // A pre-tokenizer after ByteLevel is refused.
  expect_error([] { pieces(R"({"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]})", "x"); },
               ErrorKind::kUnsupported, {"after ByteLevel"});
}

// ---- BPE model ----------------------------------------------------------------------------------

// A char-level BPE over "abc" with merges a+b, ab+c, c+c.
std::string abc_model(const std::string& merges, const std::string& extra = "") {
  return R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "cc": 5, "<unk>": 6}, "unk_token": "<unk>", "merges": )" +
         merges + extra + "}";
}

TEST(Bpe, MergeFormsAgreeAndRankOrderWins) {
  const Tokenizer old_form = Tokenizer::from_json(with_model("", abc_model(R"(["a b", "ab c", "c c"])")), "", "t.json");
  const Tokenizer new_form = Tokenizer::from_json(with_model("", abc_model(R"([["a", "b"], ["ab", "c"], ["c", "c"]])")), "", "t.json");
  for (const char* s : {"abc", "abcc", "ccc", "cabcab", "x"}) EXPECT_EQ(old_form.encode(s), new_form.encode(s)) << s;
  EXPECT_EQ(old_form.encode("abcc"), (std::vector<int32_t>{4, 2}));   // ab, abc win over c c
  EXPECT_EQ(old_form.encode("ccc"), (std::vector<int32_t>{5, 2}));    // leftmost first on ties
  EXPECT_EQ(old_form.encode("xab"), (std::vector<int32_t>{6, 3}));    // unknown character
  // Long words take the heap path; the result must be the same rule.
  std::string long_word;
  std::vector<int32_t> expected;
  for (int i = 0; i < 50; ++i) {
    long_word += "abcc";
    expected.insert(expected.end(), {4, 2});
  }
  EXPECT_EQ(old_form.encode(long_word), expected);
}

TEST(Bpe, IgnoreMergesTakesWholeWord) {
  const std::string vocab = R"({"type": "BPE", "ignore_merges": true, "vocab": {"a": 0, "b": 1, "ab": 2, "ba": 3, "aba": 4}, "merges": ["b a"]})";
  const Tokenizer t = Tokenizer::from_json(with_model("", vocab), "", "t.json");
  EXPECT_EQ(t.encode("aba"), (std::vector<int32_t>{4}));     // in the vocabulary: whole
  EXPECT_EQ(t.encode("abab"), (std::vector<int32_t>{0, 3, 1}));  // not: merges (b a)
}

// A Llama-2-style tokenizer: no pre-tokenizer, ▁ for spaces, byte fallback, a decoder chain.
const char* const kSentencePieceLike = R"({
  "version": "1.0",
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                 {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
                     "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "fuse_unk": true,
            "vocab": {"<unk>": 0, "<s>": 1, "<0xE2>": 2, "<0x98>": 3, "<0x83>": 4, "▁": 5, "h": 6, "i": 7,
                      "▁h": 8, "▁hi": 9},
            "merges": ["▁ h", "▁h i"]}
})";

TEST(Bpe, ByteFallbackTemplateAndDecoderChain) {
  const Tokenizer t = Tokenizer::from_json(kSentencePieceLike, "", "t.json");
  EXPECT_EQ(t.encode("hi ☃"), (std::vector<int32_t>{1, 9, 5, 2, 3, 4}));
  EXPECT_EQ(t.encode("hi ☃", false), (std::vector<int32_t>{9, 5, 2, 3, 4}));
  EXPECT_EQ(t.encode("hé", false), (std::vector<int32_t>{8, 0}));  // é: no byte tokens → <unk>
  EXPECT_EQ(t.decode(t.encode("hi ☃")), "<s> hi ☃");  // Strip removes the first token's space only
  EXPECT_EQ(t.decode(t.encode("hi ☃"), true), "hi ☃");
  EXPECT_EQ(t.decode(std::vector<int32_t>{9, 2, 3}), "hi\uFFFD\uFFFD");  // incomplete bytes: one each
  EXPECT_FALSE(t.is_streamable());
  IncrementalDecoder stream(t, true);
  std::string text;
  for (int32_t id : t.encode("hi ☃ hi")) text += stream.push(id);
  text += stream.flush();
  EXPECT_EQ(text, "hi ☃ hi");
}

// ---- added tokens -------------------------------------------------------------------------------

TEST(AddedTokens, MatchedFirstLongestAndFlagsHonoured) {
  const std::string added = R"("added_tokens": [
    {"id": 10, "content": "<x>", "special": true},
    {"id": 11, "content": "<x>>", "special": true},
    {"id": 12, "content": "ab", "special": false, "single_word": true},
    {"id": 13, "content": "<l>", "special": true, "lstrip": true, "rstrip": true}])";
  const std::string vocab_fix = R"({"type": "BPE", "vocab": {" ": 0, "a": 1, "b": 2, "<": 3, ">": 4, "x": 5, "l": 6}, "merges": []})";
  const Tokenizer t = Tokenizer::from_json(with_model(added, vocab_fix), "", "t.json");
  EXPECT_EQ(t.encode("a<x>>b", false), (std::vector<int32_t>{1, 11, 2}));      // longest
  EXPECT_EQ(t.encode("<x><x>", false), (std::vector<int32_t>{10, 10}));
  EXPECT_EQ(t.encode("ab xab ab", false), (std::vector<int32_t>{12, 0, 5, 1, 2, 0, 12}));  // single_word
  EXPECT_EQ(t.encode("a  <l>  b", false), (std::vector<int32_t>{1, 13, 2}));     // lstrip + rstrip
  EncodeOptions plain;
  plain.add_special_tokens = false;
  plain.split_special_tokens = true;
  EXPECT_EQ(t.encode("<x>ab", plain), (std::vector<int32_t>{3, 5, 4, 12}));       // non-special still matched
  EXPECT_EQ(t.token_to_id("<x>>"), 11);
  EXPECT_TRUE(t.is_special(10));
  EXPECT_FALSE(t.is_special(12));
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 10, 12}, true), "a ab");  // char-level, no decoder: join by ' '
}

TEST(AddedTokens, ConfigBosEosAndNamedSpecials) {
  const std::string json = with_model(R"("added_tokens": [{"id": 2, "content": "<s>", "special": true}, {"id": 3, "content": "</s>", "special": false}])",
                                      R"({"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})");
  const Tokenizer t = Tokenizer::from_json(json, R"({"add_bos_token": true, "add_eos_token": true, "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{x}}"}]})", "m/tokenizer.json");
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{2, 0, 1, 3}));
  EXPECT_EQ(t.encode("ab", false), (std::vector<int32_t>{0, 1}));
  EXPECT_TRUE(t.is_special(3));  // named eos_token in tokenizer_config.json
  EXPECT_EQ(t.config().chat_template, "{{x}}");
  EXPECT_EQ(t.bos_id(), 2);
  EXPECT_EQ(t.eos_id(), 3);
  expect_error([&] { Tokenizer::from_json(json, R"({"eos_token": "<nope>"})", "m/tokenizer.json"); },
               ErrorKind::kInvalidFile, {"m/tokenizer_config.json", "eos_token", "<nope>"});
}

// ---- normalizers --------------------------------------------------------------------------------

TEST(Normalizer, NfcAndFriends) {
  const std::string model = R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})";
  auto words = [&](const std::string& normalizer, const std::string& text) {
    return Tokenizer::from_json(with_model(R"("normalizer": )" + normalizer, model), "", "t.json").pre_tokenize(text);
  };
  EXPECT_EQ(words(R"({"type": "NFC"})", "e\u0301 \u212B \u1100\u1161"), (Words{"\u00E9 \u00C5 \uAC00"}));
  EXPECT_EQ(words(R"({"type": "NFKC"})", "ﬁ①"), (Words{"fi1"}));
  EXPECT_EQ(words(R"({"type": "NFD"})", "\u00E9"), (Words{"e\u0301"}));
  EXPECT_EQ(words(R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Strip", "strip_left": true, "strip_right": true}]})", "  ÉCOLE Ab  "),
            (Words{"école ab"}));
  EXPECT_EQ(words(R"({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": "_"})", "a  b\tc"), (Words{"a_b_c"}));
}

}  // namespace
}  // namespace qaft
