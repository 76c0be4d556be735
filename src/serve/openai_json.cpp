#include "serve/openai_json.h"

#include "core/error.h"
#include "io/json_strict.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace qaft {

namespace {

using nlohmann::json;

// Nesting allowed in a request body: messages → content parts → part is 4 levels; 32 leaves room
// for clients' extra fields while refusing pathological depth.
constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxStopSequences = 16;

[[noreturn]] void fail(std::string message, std::string param = {}, std::string code = {}) {
  throw ApiException(bad_request(std::move(message), std::move(param), std::move(code)));
}

[[noreturn]] void unsupported(const std::string& param, const std::string& what) {
  fail(fmt::format("'{}': {} is not supported by this server", param, what), param, "unsupported");
}

// The field `key`, or nullptr when absent or null (OpenAI clients send null for "not set").
const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

const char* type_name(const json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

double number(const json& v, const char* param) {
  if (!v.is_number()) fail(fmt::format("'{}' must be a number, got {}", param, type_name(v)), param);
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(fmt::format("'{}' must be finite", param), param);
  return d;
}

int64_t integer(const json& v, const char* param) {
  if (!v.is_number_integer())
    fail(fmt::format("'{}' must be an integer, got {}", param, v.is_number() ? "a fractional number" : type_name(v)),
         param);
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(fmt::format("'{}' is too large", param), param);
  return v.get<int64_t>();
}

bool boolean(const json& v, const char* param) {
  if (!v.is_boolean()) fail(fmt::format("'{}' must be a boolean, got {}", param, type_name(v)), param);
  return v.get<bool>();
}

std::string string(const json& v, const std::string& param) {
  if (!v.is_string()) fail(fmt::format("'{}' must be a string, got {}", param, type_name(v)), param);
  return v.get<std::string>();
}

// A message's content: a string, null (empty), or a list of {"type": "text", "text": ...} parts.
std::string message_content(const json& m, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  const json* c = field(m, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) fail(fmt::format("'{}' must be a string or a list of text parts", param), param);
  std::string text;
  for (const json& part : *c) {
    if (!part.is_object() || !part.contains("type")) fail(fmt::format("'{}': every part must be an object with a type", param), param);
    const std::string type = string(part["type"], param + ".type");
    if (type != "text") unsupported(param, fmt::format("content of type '{}'", type));
    const json* t = field(part, "text");
    if (!t) fail(fmt::format("'{}': a text part without 'text'", param), param);
    text += string(*t, param + ".text");
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* ms = field(body, "messages");
  if (!ms) fail("'messages' is required", "messages");
  if (!ms->is_array()) fail(fmt::format("'messages' must be an array, got {}", type_name(*ms)), "messages");
  if (ms->empty()) fail("'messages' must not be empty", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    const std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) fail(fmt::format("'{}' must be an object", p), p);
    const json* role = field(m, "role");
    if (!role) fail(fmt::format("'{}.role' is required", p), p + ".role");
    std::string r = string(*role, p + ".role");
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant")
      fail(fmt::format("'{}.role' is '{}': expected system, user or assistant (tool and function messages are not "
                       "supported)",
                       p, r),
           p + ".role");
    if (r == "assistant" && field(m, "tool_calls")) unsupported(p + ".tool_calls", "tool calls");
    out.push_back(ChatMessage{std::move(r), message_content(m, i)});
  }
  return out;
}

void parse_prompt(const json& body, CompletionRequest& r) {
  const json* p = field(body, "prompt");
  if (!p) fail("'prompt' is required", "prompt");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return;
  }
  if (!p->is_array()) fail(fmt::format("'prompt' must be a string or an array, got {}", type_name(*p)), "prompt");
  if (p->empty()) fail("'prompt' must not be empty", "prompt");
  if ((*p)[0].is_string()) {
    if (p->size() > 1) unsupported("prompt", "a batch of several prompts");
    r.prompt = (*p)[0].get<std::string>();
    return;
  }
  if ((*p)[0].is_array()) unsupported("prompt", "a batch of several prompts");
  r.prompt_is_ids = true;
  for (const json& id : *p) {
    const int64_t v = integer(id, "prompt");
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) fail(fmt::format("'prompt': token id {} is out of range", v), "prompt");
    r.prompt_ids.push_back(static_cast<int32_t>(v));
  }
}

void parse_stop(const json& body, CompletionRequest& r) {
  const json* s = field(body, "stop");
  if (!s) return;
  if (s->is_string()) {
    if (!s->get<std::string>().empty()) r.stop.push_back(s->get<std::string>());
    return;
  }
  if (!s->is_array()) fail(fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*s)), "stop");
  if (s->size() > kMaxStopSequences) fail(fmt::format("'stop' has {} sequences, at most {}", s->size(), kMaxStopSequences), "stop");
  for (const json& x : *s) {
    std::string v = string(x, "stop");
    if (!v.empty()) r.stop.push_back(std::move(v));
  }
}

// Features qaft does not implement: refused unless set to their neutral value.
void refuse_unsupported(const json& body, Endpoint endpoint) {
  if (const json* n = field(body, "n"); n && integer(*n, "n") != 1) {
    if (integer(*n, "n") < 1) fail("'n' must be at least 1", "n");
    unsupported("n", "more than one choice (n > 1)");
  }
  if (const json* b = field(body, "best_of"); b && integer(*b, "best_of") != 1) unsupported("best_of", "best_of > 1");
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (const json* v = field(body, k); v && number(*v, k) != 0) unsupported(k, "a non-zero penalty");
  if (const json* v = field(body, "repetition_penalty"); v && number(*v, "repetition_penalty") != 1)
    unsupported("repetition_penalty", "a repetition penalty other than 1");
  if (const json* v = field(body, "logprobs")) {
    const bool set = v->is_boolean() ? v->get<bool>() : v->is_number() ? v->get<double>() != 0 : true;
    if (set) unsupported("logprobs", "log probabilities");
  }
  if (const json* v = field(body, "top_logprobs"); v && !(v->is_number() && v->get<double>() == 0))
    unsupported("top_logprobs", "log probabilities");
  if (const json* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty())) unsupported("logit_bias", "logit bias");
  if (const json* v = field(body, "tools"); v && !(v->is_array() && v->empty())) unsupported("tools", "tool calling");
  if (const json* v = field(body, "response_format")) {
    if (!v->is_object() || !v->contains("type") || (*v)["type"] != "text") unsupported("response_format", "structured output");
  }
  if (endpoint == Endpoint::kCompletions) {
    if (const json* v = field(body, "echo"); v && boolean(*v, "echo")) unsupported("echo", "echoing the prompt");
    if (const json* v = field(body, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
      unsupported("suffix", "a suffix (insertion)");
  }
}

json error_field(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

}  // namespace

json ApiError::to_json() const {
  return {{"error", {{"message", message}, {"type", type}, {"param", error_field(param)}, {"code", error_field(code)}}}};
}

ApiError bad_request(std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint) {
  json j;
  try {
    j = parse_json_strict(body, "request body", kMaxJsonDepth);
  } catch (const Error& e) {
    fail(fmt::format("malformed JSON: {}", e.message()), "", "invalid_json");
  }
  if (!j.is_object()) fail(fmt::format("the request body must be a JSON object, got {}", type_name(j)), "", "invalid_json");

  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* m = field(j, "model")) r.model = string(*m, "model");
  if (endpoint == Endpoint::kChat) r.messages = parse_messages(j);
  else parse_prompt(j, r);

  refuse_unsupported(j, endpoint);
  const char* max_key = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (const json* v = field(j, max_key)) {
    r.max_tokens = integer(*v, max_key);
    if (*r.max_tokens < 1) fail(fmt::format("'{}' must be at least 1, got {}", max_key, *r.max_tokens), max_key);
  }
  if (const json* v = field(j, "temperature")) {
    r.temperature = number(*v, "temperature");
    if (r.temperature < 0) fail(fmt::format("'temperature' must be >= 0, got {}", r.temperature), "temperature");
  }
  if (const json* v = field(j, "top_p")) {
    r.top_p = number(*v, "top_p");
    if (!(r.top_p > 0 && r.top_p <= 1)) fail(fmt::format("'top_p' must be in (0, 1], got {}", r.top_p), "top_p");
  }
  if (const json* v = field(j, "top_k")) {
    r.top_k = integer(*v, "top_k");
    if (r.top_k == -1) r.top_k = 0;  // vLLM's "off"
    if (r.top_k < 0) fail(fmt::format("'top_k' must be >= 0 (0 or -1: off), got {}", r.top_k), "top_k");
  }
  if (const json* v = field(j, "seed")) r.seed = static_cast<uint64_t>(integer(*v, "seed"));
  parse_stop(j, r);
  if (const json* v = field(j, "ignore_eos")) r.ignore_eos = boolean(*v, "ignore_eos");
  if (const json* v = field(j, "stream")) r.stream = boolean(*v, "stream");
  if (const json* v = field(j, "stream_options")) {
    if (!v->is_object()) fail("'stream_options' must be an object", "stream_options");
    if (const json* u = field(*v, "include_usage")) r.include_usage = boolean(*u, "stream_options.include_usage");
  }
  return r;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

json envelope(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}

}  // namespace

json completion_response(Endpoint endpoint, const ResponseMeta& meta, const CompletionResult& result) {
  json choice = {{"index", 0}, {"finish_reason", result.finish_reason}, {"logprobs", nullptr}};
  json r;
  if (endpoint == Endpoint::kChat) {
    r = envelope(meta, "chat.completion");
    choice["message"] = {{"role", "assistant"}, {"content", result.text}};
  } else {
    r = envelope(meta, "text_completion");
    choice["text"] = result.text;
  }
  r["choices"] = json::array({choice});
  r["usage"] = usage_json(result.prompt_tokens, result.completion_tokens);
  return r;
}

json completion_chunk(Endpoint endpoint, const ResponseMeta& meta, const std::string& text,
                      const std::string& finish_reason, bool first) {
  json choice = {{"index", 0}, {"finish_reason", error_field(finish_reason)}, {"logprobs", nullptr}};
  json r;
  if (endpoint == Endpoint::kChat) {
    r = envelope(meta, "chat.completion.chunk");
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (first || !text.empty()) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    r = envelope(meta, "text_completion");
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  return r;
}

json usage_chunk(Endpoint endpoint, const ResponseMeta& meta, int64_t prompt_tokens, int64_t completion_tokens) {
  json r = envelope(meta, endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  r["choices"] = json::array();
  r["usage"] = usage_json(prompt_tokens, completion_tokens);
  return r;
}

json models_response(const std::string& model, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "qaft"}}})}};
}

std::string json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& value) { return "data: " + json_text(value) + "\n\n"; }

}  // namespace qaft
