// ChatTemplate: fingerprints of the Jinja chat templates qaft knows and their re-implementations
// for plain system/user/assistant conversations. See chat_template.h and docs/data.md.
#include "data/chat_template.h"

#include "core/error.h"
#include "data/utf8.h"

#include <algorithm>

namespace qaft {

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kDeepSeekV3: return "deepseek-v3";
    case ChatFormat::kLlama3: return "llama-3";
    case ChatFormat::kQwen3: return "qwen3";
    case ChatFormat::kChatML: return "chatml";
  }
  return "?";
}

namespace {

constexpr const char* kSupported =
    "qaft renders the chat templates of DeepSeek-V3, Llama 3 (3.0), Qwen3 and ChatML (Qwen2/2.5); "
    "see docs/data.md";

bool has(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }

// Python's str.isspace (what Jinja's `trim` strips): Unicode White_Space plus U+001C..U+001F.
bool py_space(char32_t c) { return utf8::is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

// Jinja `trim` (Python str.strip()) on UTF-8 text.
std::string py_strip(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end) {
    const utf8::Step st = utf8::decode_step(s, begin);
    if (!st.valid || !py_space(st.code_point)) break;
    begin += static_cast<size_t>(st.length);
  }
  // Scan forward remembering where the last non-space character ends.
  size_t last = begin;
  for (size_t i = begin; i < end;) {
    const utf8::Step st = utf8::decode_step(s, i);
    i += static_cast<size_t>(st.length);
    if (!st.valid || !py_space(st.code_point)) last = i;
  }
  return std::string(s.substr(begin, last - begin));
}

std::string_view lstrip_nl(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view rstrip_nl(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

void check_roles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    QAFT_CHECK(r == "system" || r == "user" || r == "assistant",
               "message {}: unknown role \"{}\" (expected system, user or assistant)", i, r);
  }
}

}  // namespace

std::optional<ChatTemplateMatch> detect_chat_template(std::string_view j) {
  if (has(j, "<｜User｜>") && has(j, "<｜Assistant｜>") && has(j, "<｜end▁of▁sentence｜>")) {
    // DeepSeek-R1 / V3.1 variants strip or add <think> blocks: not the V3 template.
    if (has(j, "think>")) return std::nullopt;
    return ChatTemplateMatch{ChatFormat::kDeepSeekV3, {}};
  }
  if (has(j, "<|start_header_id|>") && has(j, "<|end_header_id|>") && has(j, "<|eot_id|>")) {
    // Llama 3.1+ inject a dated system prompt and tool environment: not rendered by qaft.
    if (has(j, "Cutting Knowledge Date") || has(j, "Environment: ipython")) return std::nullopt;
    return ChatTemplateMatch{ChatFormat::kLlama3, {}};
  }
  if (has(j, "<|im_start|>") && has(j, "<|im_end|>")) {
    if (has(j, "</think>")) {
      if (has(j, "last_query_index") && has(j, "reasoning_content"))
        return ChatTemplateMatch{ChatFormat::kQwen3, {}};
      return std::nullopt;  // another reasoning variant
    }
    static constexpr const char* kDefaults[] = {
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        "You are a helpful assistant."};
    for (const char* d : kDefaults)
      if (has(j, d)) return ChatTemplateMatch{ChatFormat::kChatML, d};
    if (has(j, "You are")) return std::nullopt;  // a default system prompt we do not know
    return ChatTemplateMatch{ChatFormat::kChatML, {}};
  }
  return std::nullopt;
}

ChatTemplate::ChatTemplate(const Tokenizer& tokenizer, ChatTemplateMatch match)
    : tokenizer_(&tokenizer), match_(std::move(match)) {
  // Structural tokens are inserted as ids; a token that swallows neighbouring white space
  // (lstrip/rstrip) would make that differ from tokenizing the whole string.
  std::vector<const char*> needed;
  switch (match_.format) {
    case ChatFormat::kDeepSeekV3: needed = {"<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"}; break;
    case ChatFormat::kLlama3: needed = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}; break;
    case ChatFormat::kQwen3:
    case ChatFormat::kChatML: needed = {"<|im_start|>", "<|im_end|>"}; break;
  }
  for (const char* n : needed) {
    QAFT_CHECK_HINT(tokenizer.token_to_id(n).has_value(), ErrorKind::kInvalidFile,
                    "the tokenizer does not match its chat template",
                    "{}: the {} chat template needs the token {}, which the tokenizer lacks",
                    tokenizer.source(), chat_format_name(match_.format), n);
    for (const AddedToken& t : tokenizer.added_tokens())
      if (t.content == n)
        QAFT_CHECK_HINT(!t.lstrip && !t.rstrip, ErrorKind::kUnsupported, "",
                        "{}: token {} strips white space (lstrip/rstrip); qaft's piecewise chat "
                        "rendering does not support that", tokenizer.source(), n);
  }
  if (match_.format == ChatFormat::kDeepSeekV3 || match_.format == ChatFormat::kLlama3)
    QAFT_CHECK_HINT(tokenizer.bos_id().has_value(), ErrorKind::kInvalidFile,
                    "tokenizer_config.json should name bos_token",
                    "{}: the {} chat template starts with bos_token, which the tokenizer lacks",
                    tokenizer.source(), chat_format_name(match_.format));
}

ChatTemplate ChatTemplate::from_tokenizer(const Tokenizer& tokenizer, const std::string& model_name) {
  const std::string& j = tokenizer.config().chat_template;
  QAFT_CHECK_HINT(!j.empty(), ErrorKind::kUnsupported, kSupported,
                  "model {}: tokenizer_config.json has no chat_template", model_name);
  const std::optional<ChatTemplateMatch> m = detect_chat_template(j);
  QAFT_CHECK_HINT(m.has_value(), ErrorKind::kUnsupported, kSupported,
                  "model {}: its chat_template (tokenizer_config.json) is not one qaft knows; qaft "
                  "does not execute Jinja templates", model_name);
  return ChatTemplate(tokenizer, *m);
}

ChatTemplate ChatTemplate::with_format(const Tokenizer& tokenizer, ChatTemplateMatch match) {
  return ChatTemplate(tokenizer, std::move(match));
}

ChatTemplate::Piece ChatTemplate::tok(const char* content, bool trainable) const {
  return Piece{content, *tokenizer_->token_to_id(content), trainable};
}

std::vector<ChatTemplate::Piece> ChatTemplate::pieces(const std::vector<ChatMessage>& msgs,
                                                       const ChatRenderOptions& opt) const {
  check_roles(msgs);
  std::vector<Piece> out;
  auto text = [&](std::string s, bool trainable = false) {
    if (!s.empty()) out.push_back(Piece{std::move(s), -1, trainable});
  };
  const size_t n = msgs.size();
  switch (match_.format) {
    case ChatFormat::kDeepSeekV3: {
      // All system messages, joined by a blank line, right after BOS; then the turns.
      const int32_t bos = *tokenizer_->bos_id();
      out.push_back(Piece{tokenizer_->id_to_token(bos), bos, false});
      std::string system;
      bool first = true;
      for (const ChatMessage& m : msgs) {
        if (m.role != "system") continue;
        system += first ? m.content : "\n\n" + m.content;
        first = false;
      }
      text(system);
      for (const ChatMessage& m : msgs) {
        if (m.role == "user") {
          out.push_back(tok("<｜User｜>"));
          text(m.content);
        } else if (m.role == "assistant") {
          out.push_back(tok("<｜Assistant｜>"));
          text(m.content, true);
          out.push_back(tok("<｜end▁of▁sentence｜>", true));
        }
      }
      if (opt.add_generation_prompt) out.push_back(tok("<｜Assistant｜>"));
      break;
    }
    case ChatFormat::kLlama3: {
      // Every message's content is trimmed (Jinja `trim`). The generation prompt: see docs/data.md.
      const int32_t bos = *tokenizer_->bos_id();
      out.push_back(Piece{tokenizer_->id_to_token(bos), bos, false});
      for (const ChatMessage& m : msgs) {
        const bool a = m.role == "assistant";
        out.push_back(tok("<|start_header_id|>"));
        text(m.role);
        out.push_back(tok("<|end_header_id|>"));
        text("\n\n");
        text(py_strip(m.content), a);
        out.push_back(tok("<|eot_id|>", a));
      }
      if (opt.add_generation_prompt) {
        out.push_back(tok("<|start_header_id|>"));
        text("assistant");
        out.push_back(tok("<|end_header_id|>"));
        text("\n\n");
      }
      break;
    }
    case ChatFormat::kQwen3:
    case ChatFormat::kChatML: {
      const bool qwen3 = match_.format == ChatFormat::kQwen3;
      auto block = [&](const std::string& role, const std::string& content) {
        out.push_back(tok("<|im_start|>"));
        text(role + "\n" + content);
        out.push_back(tok("<|im_end|>"));
        text("\n");
      };
      if (n > 0 && msgs[0].role == "system") block("system", msgs[0].content);
      else if (!match_.default_system.empty()) block("system", match_.default_system);
      // Qwen3: the index of the last real user query (not a wrapped tool response).
      size_t last_query = n == 0 ? 0 : n - 1;
      for (size_t k = n; k-- > 0;) {
        const std::string& c = msgs[k].content;
        if (msgs[k].role == "user" &&
            !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
          last_query = k;
          break;
        }
      }
      for (size_t i = 0; i < n; ++i) {
        const ChatMessage& m = msgs[i];
        if (m.role == "user" || (m.role == "system" && i != 0)) {
          block(m.role, m.content);
        } else if (m.role == "assistant") {
          out.push_back(tok("<|im_start|>"));
          text("assistant\n");
          std::string body = m.content;
          if (qwen3) {
            std::string_view content = m.content, reasoning;
            const size_t close_last = content.rfind("</think>");
            if (close_last != std::string_view::npos) {
              const std::string_view all = m.content;
              content = lstrip_nl(all.substr(close_last + 8));
              reasoning = rstrip_nl(all.substr(0, all.find("</think>")));
              const size_t open = reasoning.rfind("<think>");
              if (open != std::string_view::npos) reasoning = reasoning.substr(open + 7);
              reasoning = lstrip_nl(reasoning);
            }
            if (i > last_query && (i + 1 == n || !reasoning.empty())) {
              body = "<think>\n" + std::string(lstrip_nl(rstrip_nl(reasoning))) + "\n</think>\n\n" +
                     std::string(lstrip_nl(content));
            } else {
              body = std::string(content);
            }
          }
          text(body, true);
          out.push_back(tok("<|im_end|>", true));
          text("\n");
        }
      }
      if (opt.add_generation_prompt) {
        out.push_back(tok("<|im_start|>"));
        text("assistant\n");
        if (qwen3 && !opt.enable_thinking) text("<think>\n\n</think>\n\n");
      }
      break;
    }
  }
  return out;
}

std::string ChatTemplate::render_text(const std::vector<ChatMessage>& messages,
                                      const ChatRenderOptions& options) const {
  std::string s;
  for (const Piece& p : pieces(messages, options)) s += p.text;
  return s;
}

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                  const ChatRenderOptions& options) const {
  const std::vector<Piece> ps = pieces(messages, options);
  RenderedChat r;
  EncodeOptions eo;
  eo.add_special_tokens = false;
  eo.split_special_tokens = false;  // as when the whole rendered string is tokenized
  std::vector<int32_t> prefix;
  // Encodes text pieces [a, b) as one run: pre-tokenization may join characters across piece
  // boundaries (e.g. "assistant\n" + "\nHi" → "\n\n"), exactly as in the whole string.
  auto flush = [&](size_t a, size_t b) {
    if (a == b) return;
    std::string run;
    std::vector<std::pair<size_t, bool>> bounds;  // (byte offset, flag from there on)
    for (size_t k = a; k < b; ++k) {
      if (k == a || ps[k].trainable != ps[k - 1].trainable) bounds.emplace_back(run.size(), ps[k].trainable);
      run += ps[k].text;
    }
    const size_t start = r.ids.size();
    tokenizer_->encode_append(run, eo, r.ids);
    r.loss_mask.resize(r.ids.size(), bounds[0].second ? 1 : 0);
    for (size_t k = 1; k < bounds.size(); ++k) {
      // Tokens that the prefix alone already produces lie before the boundary; a token that
      // straddles it takes the flag of the text after the boundary.
      prefix.clear();
      tokenizer_->encode_append(std::string_view(run).substr(0, bounds[k].first), eo, prefix);
      size_t lcp = 0;
      while (lcp < prefix.size() && start + lcp < r.ids.size() && prefix[lcp] == r.ids[start + lcp]) ++lcp;
      std::fill(r.loss_mask.begin() + static_cast<std::ptrdiff_t>(start + lcp), r.loss_mask.end(),
                bounds[k].second ? 1 : 0);
    }
  };
  size_t run_begin = 0;
  for (size_t k = 0; k < ps.size(); ++k) {
    if (ps[k].token < 0) continue;
    flush(run_begin, k);
    r.ids.push_back(ps[k].token);
    r.loss_mask.push_back(ps[k].trainable ? 1 : 0);
    run_begin = k + 1;
  }
  flush(run_begin, ps.size());
  return r;
}

}  // namespace qaft
