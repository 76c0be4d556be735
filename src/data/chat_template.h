// ChatTemplate — built-in renderers for the chat formats qaft knows (DeepSeek-V3, Llama 3, Qwen3,
// plain ChatML), picked by recognising the Jinja `chat_template` of tokenizer_config.json. qaft
// does not execute Jinja: each format is re-implemented here for plain system/user/assistant
// conversations (no tools), and checked token for token against the real templates rendered by a
// Jinja engine (tests/unit/chat_template_test.cpp, docs/data.md).
//
// render() returns token ids and a loss mask that is 1 exactly on what the assistant produces: the
// content of each assistant turn and its end-of-turn token (DeepSeek-V3 <｜end▁of▁sentence｜>,
// Llama 3 <|eot_id|>, ChatML <|im_end|>), never the role header. Tokenization is piecewise: the
// template's structural tokens are inserted as ids, the text between two of them is encoded as one
// run, so the ids equal those of tokenizing the whole rendered string (render_text()).
#pragma once

#include "data/tokenizer.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// The chat formats qaft renders.
enum class ChatFormat {
  kDeepSeekV3,  // <｜begin▁of▁sentence｜>{system}<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>
  kLlama3,      // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>
  kQwen3,       // ChatML with Qwen3's <think> handling of the last assistant turns
  kChatML,      // plain ChatML (<|im_start|>role\n…<|im_end|>\n), optional default system prompt
};

const char* chat_format_name(ChatFormat format);

// One message of a conversation.
struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;  // the text (UTF-8)
};

// Knobs of one render.
struct ChatRenderOptions {
  bool add_generation_prompt = false;  // end with the assistant header (serving)
  bool enable_thinking = true;         // Qwen3: false adds "<think>\n\n</think>\n\n" to the prompt
};

// Token ids and loss mask of a rendered conversation.
struct RenderedChat {
  std::vector<int32_t> ids;       // token ids
  std::vector<uint8_t> loss_mask; // 1 = assistant-produced token (trained on), same length as ids
};

// What fingerprinting a Jinja chat template found.
struct ChatTemplateMatch {
  ChatFormat format = ChatFormat::kChatML;  // the recognised format
  std::string default_system;              // ChatML: system prompt used when none is given
};

// Recognises a Jinja chat template by distinctive markers; nullopt when it is not one qaft knows
// (or a variant it does not render exactly, e.g. Llama 3.1's dated system prompt).
std::optional<ChatTemplateMatch> detect_chat_template(std::string_view jinja);

class ChatTemplate {
 public:
  // The template of the tokenizer's tokenizer_config.json. `model_name` (the model directory)
  // names the model in errors: kUnsupported when the template is absent or unknown, listing what
  // is supported; kInvalidFile when the tokenizer lacks a token the format needs.
  static ChatTemplate from_tokenizer(const Tokenizer& tokenizer, const std::string& model_name);
  // A given format, whatever the tokenizer's config says (for tokenizers without a template).
  static ChatTemplate with_format(const Tokenizer& tokenizer, ChatTemplateMatch match);

  ChatFormat format() const { return match_.format; }

  // The rendered text, as the Jinja template renders it (Llama 3: see docs/data.md on the
  // generation prompt). Throws kInvalidArgument for a role other than system/user/assistant.
  std::string render_text(const std::vector<ChatMessage>& messages,
                          const ChatRenderOptions& options = {}) const;
  // Token ids + loss mask (ids == tokenizer.encode(render_text(), add_special_tokens=false)).
  RenderedChat render(const std::vector<ChatMessage>& messages,
                      const ChatRenderOptions& options = {}) const;

  // One piece of a rendering: a structural token, or text. Public for the implementation's helpers.
  struct Piece {
    std::string text;      // the text (for a token: its content)
    int32_t token = -1;    // >= 0: a structural token inserted as this id
    bool trainable = false;  // part of what the assistant produces
  };

 private:
  ChatTemplate(const Tokenizer& tokenizer, ChatTemplateMatch match);
  std::vector<Piece> pieces(const std::vector<ChatMessage>& messages,
                            const ChatRenderOptions& options) const;
  Piece tok(const char* content, bool trainable = false) const;

  const Tokenizer* tokenizer_;  // encodes the text runs; must outlive the template
  ChatTemplateMatch match_;     // format and its parameters
};

}  // namespace qaft
