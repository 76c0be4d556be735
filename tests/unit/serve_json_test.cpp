// The server's OpenAI wire format (serve/openai_json.h), without HTTP:
//   - chat and completion requests parse into their fields (stop as a string or a list, content
//     parts, null as absent, top_k -1 as off, max_completion_tokens as max_tokens);
//   - malformed JSON, wrong types, out-of-range values and unsupported features are 400 errors that
//     name the parameter, in the OpenAI error shape {"error": {message, type, param, code}};
//   - responses, stream chunks and the SSE framing ("data: {...}\n\n", "data: [DONE]\n\n") have the
//     OpenAI shapes, with usage totals.
#include "serve/openai_json.h"

#include <gtest/gtest.h>

using namespace qaft;
using nlohmann::json;

namespace {

// The ApiError a body raises (status 0 when it parses).
ApiError error_of(const std::string& body, Endpoint e = Endpoint::kChat) {
  try {
    parse_completion_request(body, e);
  } catch (const ApiException& x) {
    return x.error();
  }
  ApiError none;
  none.status = 0;
  return none;
}

// A chat body with `extra` fields merged in.
std::string chat(const json& extra = json::object()) {
  json j = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  j.update(extra);
  return j.dump();
}

}  // namespace

TEST(ServeJson, ParsesAChatRequest) {
  const CompletionRequest r = parse_completion_request(
      json({{"model", "tiny"},
            {"messages",
             {{{"role", "system"}, {"content", "be brief"}},
              {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}})}},
              {{"role", "assistant"}, {"content", nullptr}},
              {{"role", "developer"}, {"content", "x"}}}},
            {"max_tokens", 7},
            {"temperature", 0.5},
            {"top_p", 0.9},
            {"top_k", 40},
            {"seed", -3},
            {"stop", "END"},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"n", 1},
            {"user", "ignored"},
            {"frequency_penalty", 0},
            {"ignore_eos", true}})
          .dump(),
      Endpoint::kChat);
  EXPECT_EQ(r.endpoint, Endpoint::kChat);
  EXPECT_EQ(r.model, "tiny");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].role, "system");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.top_k, 40);
  EXPECT_EQ(r.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.ignore_eos);
}

TEST(ServeJson, DefaultsAndNullsAndAliases) {
  const CompletionRequest d = parse_completion_request(chat(), Endpoint::kChat);
  EXPECT_FALSE(d.max_tokens.has_value());
  EXPECT_DOUBLE_EQ(d.temperature, 1.0);
  EXPECT_DOUBLE_EQ(d.top_p, 1.0);
  EXPECT_EQ(d.top_k, 0);
  EXPECT_FALSE(d.seed.has_value());
  EXPECT_FALSE(d.stream);
  // null is "not set"; top_k -1 is off; max_completion_tokens is the newer name of max_tokens.
  const CompletionRequest n = parse_completion_request(
      chat({{"max_tokens", nullptr}, {"stop", nullptr}, {"seed", nullptr}, {"top_k", -1}, {"max_completion_tokens", 5}}),
      Endpoint::kChat);
  EXPECT_EQ(n.max_tokens, 5);
  EXPECT_TRUE(n.stop.empty());
  EXPECT_EQ(n.top_k, 0);
  const CompletionRequest s = parse_completion_request(chat({{"stop", {"a", "", "bc"}}}), Endpoint::kChat);
  EXPECT_EQ(s.stop, (std::vector<std::string>{"a", "bc"}));
}

TEST(ServeJson, ParsesCompletionPrompts) {
  const CompletionRequest t = parse_completion_request(R"({"prompt": "once upon"})", Endpoint::kCompletions);
  EXPECT_EQ(t.prompt, "once upon");
  EXPECT_FALSE(t.prompt_is_ids);
  const CompletionRequest l = parse_completion_request(R"({"prompt": ["one"]})", Endpoint::kCompletions);
  EXPECT_EQ(l.prompt, "one");
  const CompletionRequest ids = parse_completion_request(R"({"prompt": [1, 2, 3], "echo": false, "suffix": ""})",
                                                         Endpoint::kCompletions);
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(error_of(R"({"prompt": ["a", "b"]})", Endpoint::kCompletions).code, "unsupported");
  EXPECT_EQ(error_of(R"({"prompt": [1, -2]})", Endpoint::kCompletions).param, "prompt");
  EXPECT_EQ(error_of(R"({"prompt": []})", Endpoint::kCompletions).param, "prompt");
  EXPECT_EQ(error_of(R"({"messages": []})", Endpoint::kCompletions).param, "prompt");
  EXPECT_EQ(error_of(R"({"prompt": "x", "echo": true})", Endpoint::kCompletions).param, "echo");
}

TEST(ServeJson, MalformedBodiesAre400InvalidJson) {
  for (const char* body : {"", "{", "{\"messages\": [}", "[1, 2]", "\"text\"", "{\"a\": 1} trailing", "{\"a\":1,\"a\":2}"}) {
    const ApiError e = error_of(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.code, "invalid_json") << body;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
  // Invalid UTF-8 inside a string is malformed JSON too.
  EXPECT_EQ(error_of(std::string("{\"model\": \"\xff\"}")).code, "invalid_json");
  // Pathological nesting is refused before it is built.
  EXPECT_EQ(error_of(std::string(200, '[') + std::string(200, ']')).code, "invalid_json");
}

TEST(ServeJson, InvalidParametersAre400sThatNameTheParameter) {
  struct Case {
    json extra;
    const char* param;
  };
  const Case cases[] = {
      {{{"temperature", -0.1}}, "temperature"},
      {{{"temperature", "hot"}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"top_p", 1.5}}, "top_p"},
      {{{"top_k", -2}}, "top_k"},
      {{{"top_k", 2.5}}, "top_k"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_tokens", -5}}, "max_tokens"},
      {{{"max_tokens", 1.5}}, "max_tokens"},
      {{{"max_tokens", "10"}}, "max_tokens"},
      {{{"seed", 0.5}}, "seed"},
      {{{"stop", 3}}, "stop"},
      {{{"stop", {"a", 1}}}, "stop"},
      {{{"stream", "yes"}}, "stream"},
      {{{"n", 2}}, "n"},
      {{{"n", 0}}, "n"},
      {{{"model", 7}}, "model"},
      {{{"logprobs", true}}, "logprobs"},
      {{{"presence_penalty", 0.5}}, "presence_penalty"},
      {{{"tools", {{{"type", "function"}}}}}, "tools"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", "hi"}}, "messages"},
      {{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}, {{"role", "tool"}, {"content", "y"}}}}}, "messages[1].role"},
      {{{"messages", {{{"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}, {"content", 5}}}}}, "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, "messages[0].content"},
  };
  for (const Case& c : cases) {
    const ApiError e = error_of(chat(c.extra));
    EXPECT_EQ(e.status, 400) << c.extra.dump();
    EXPECT_EQ(e.param, c.param) << c.extra.dump() << " → " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
  EXPECT_EQ(error_of(R"({"model": "m"})").param, "messages");
  EXPECT_EQ(error_of(chat({{"n", 3}})).code, "unsupported");
}

TEST(ServeJson, ErrorObjectHasTheOpenAiShape) {
  const json j = bad_request("bad top_p", "top_p").to_json();
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["message"], "bad top_p");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "top_p");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_EQ(j["error"].size(), 4u);
}

TEST(ServeJson, ResponsesHaveTheOpenAiShape) {
  const ResponseMeta meta{"chatcmpl-1", 1700000000, "tiny"};
  const CompletionResult result{"hello", "stop", 12, 3};
  const json c = completion_response(Endpoint::kChat, meta, result);
  EXPECT_EQ(c["id"], "chatcmpl-1");
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["created"], 1700000000);
  EXPECT_EQ(c["model"], "tiny");
  ASSERT_EQ(c["choices"].size(), 1u);
  EXPECT_EQ(c["choices"][0]["index"], 0);
  EXPECT_EQ(c["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(c["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(c["usage"], json({{"prompt_tokens", 12}, {"completion_tokens", 3}, {"total_tokens", 15}}));

  const json t = completion_response(Endpoint::kCompletions, {"cmpl-1", 1, "tiny"}, {"abc", "length", 2, 4});
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "abc");
  EXPECT_EQ(t["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(t["usage"]["total_tokens"], 6);

  const json m = models_response("tiny", 5);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "tiny");
  EXPECT_EQ(m["data"][0]["object"], "model");
}

TEST(ServeJson, StreamChunksAndSseFraming) {
  const ResponseMeta meta{"chatcmpl-9", 7, "tiny"};
  const json first = completion_chunk(Endpoint::kChat, meta, "", "", true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json mid = completion_chunk(Endpoint::kChat, meta, "lo", "");
  EXPECT_EQ(mid["choices"][0]["delta"], json({{"content", "lo"}}));
  const json last = completion_chunk(Endpoint::kChat, meta, "", "length");
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  const json usage = usage_chunk(Endpoint::kChat, meta, 4, 2);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  const json text = completion_chunk(Endpoint::kCompletions, {"cmpl-2", 7, "tiny"}, "abc", "");
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "abc");

  const std::string ev = sse_event(mid);
  ASSERT_GT(ev.size(), 8u);
  EXPECT_EQ(ev.substr(0, 6), "data: ");
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  EXPECT_EQ(ev.find('\n'), ev.size() - 2);  // one line: the JSON has no raw newline
  EXPECT_EQ(json::parse(ev.substr(6)), mid);
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
  // Text with a newline stays on one SSE line (escaped in the JSON).
  const std::string nl = sse_event(completion_chunk(Endpoint::kChat, meta, "a\nb", ""));
  EXPECT_EQ(nl.find('\n'), nl.size() - 2);
}

TEST(ServeJson, InvalidUtf8NeverThrowsWhenWritten) {
  const json j = {{"text", std::string("ok \xff\xfe")}};
  std::string s;
  EXPECT_NO_THROW(s = json_text(j));
  EXPECT_NE(s.find("ok"), std::string::npos);
}
