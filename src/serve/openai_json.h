// The OpenAI wire format of the server (docs/serving.md): parsing and validating the bodies of
// POST /v1/chat/completions and /v1/completions, and building the response objects, the SSE chunks
// of streamed responses and the error objects.
//
// Requests: model, messages (chat) or prompt (completions: a string, a list of one string, or a
// list of token ids), max_tokens (or max_completion_tokens), temperature, top_p, seed, stop (a
// string or a list), stream, stream_options.include_usage, n (only 1), and two extensions named as
// vLLM names them: top_k and ignore_eos. Fields qaft does not implement are refused when set to something other than their
// neutral value (n > 1, logprobs, penalties, tools, echo, suffix, best_of > 1, logit_bias) and
// ignored otherwise (user, metadata, ...). Every problem is an ApiException carrying the HTTP
// status and the OpenAI error object {"error": {"message", "type", "param", "code"}}.
#pragma once

#include "data/chat_template.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// One OpenAI-style error: the HTTP status and the fields of the JSON error object.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";  // invalid_request_error | authentication_error |
                                               // rate_limit_error | server_error
  std::string param;                           // the offending request field ("" → null)
  std::string code;                            // machine-readable reason ("" → null)

  // {"error": {"message", "type", "param", "code"}}
  nlohmann::json to_json() const;
};

class ApiException : public std::exception {
 public:
  explicit ApiException(ApiError error) : error_(std::move(error)) {}
  const ApiError& error() const { return error_; }
  const char* what() const noexcept override { return error_.message.c_str(); }

 private:
  ApiError error_;
};

// A 400 invalid_request_error.
ApiError bad_request(std::string message, std::string param = {}, std::string code = {});

enum class Endpoint : uint8_t {
  kChat,         // POST /v1/chat/completions
  kCompletions,  // POST /v1/completions
};

// A validated completion request.
struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;                   // "" when the request names none
  std::vector<ChatMessage> messages;   // chat: system/user/assistant turns ("developer" → system)
  std::string prompt;                  // completions: the text
  std::vector<int32_t> prompt_ids;     // completions: token ids given instead of text
  bool prompt_is_ids = false;
  std::optional<int64_t> max_tokens;   // ≥ 1; absent: until the context is full (chat), 16 (completions)
  double temperature = 1.0;            // ≥ 0 (0: greedy)
  double top_p = 1.0;                  // (0, 1]
  int64_t top_k = 0;                   // ≥ 0 (0 or -1: off)
  std::optional<uint64_t> seed;        // absent: a fresh random seed
  std::vector<std::string> stop;       // stop sequences (empty strings dropped)
  bool ignore_eos = false;             // extension (vLLM's): do not stop at the EOS / end-of-turn token
  bool stream = false;                 // SSE
  bool include_usage = false;          // stream_options.include_usage: a last chunk with usage
};

// Parses and validates a request body. Throws ApiException: 400 for malformed JSON (code
// "invalid_json"), a body that is not an object, a missing or mistyped field, a value out of range
// (param names the field), an unsupported feature (code "unsupported").
CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint);

// What a finished request produced.
struct CompletionResult {
  std::string text;
  std::string finish_reason;  // "stop" | "length"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// The identity shared by a response and all the chunks of a stream.
struct ResponseMeta {
  std::string id;       // "chatcmpl-…" | "cmpl-…"
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// {"prompt_tokens", "completion_tokens", "total_tokens"}
nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);
// The non-streamed response: "chat.completion" with choices[0].message, or "text_completion" with
// choices[0].text; finish_reason and usage.
nlohmann::json completion_response(Endpoint endpoint, const ResponseMeta& meta, const CompletionResult& result);
// One chunk of a stream: chat "chat.completion.chunk" with choices[0].delta ({"role": "assistant"}
// first, then {"content": text}, {} with the finish_reason), completions "text_completion" with
// choices[0].text. `finish_reason` "" → null.
nlohmann::json completion_chunk(Endpoint endpoint, const ResponseMeta& meta, const std::string& text,
                                const std::string& finish_reason, bool first = false);
// The last chunk when stream_options.include_usage: empty choices and the usage.
nlohmann::json usage_chunk(Endpoint endpoint, const ResponseMeta& meta, int64_t prompt_tokens,
                           int64_t completion_tokens);
// GET /v1/models: a list with the one served model.
nlohmann::json models_response(const std::string& model, int64_t created);

// JSON text of a value; invalid UTF-8 in its strings (from a client) is replaced, never thrown on.
std::string json_text(const nlohmann::json& value);
// One SSE event: "data: {json}\n\n".
std::string sse_event(const nlohmann::json& value);
// The event that ends every stream.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace qaft
