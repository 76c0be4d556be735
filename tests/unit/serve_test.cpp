// The HTTP server (serve/server.h) started in-process on an ephemeral loopback port, over a tiny
// FP8 DeepSeek-V3 model with the tiny ChatML tokenizer, driven by real HTTP requests (httplib::Client
// and a raw socket):
//   - /health, /v1/models, /metrics;
//   - chat and text completions answer what generate() gives on an engine of its own (greedy and
//     seeded sampling, stop sequences), streamed (SSE) and not: the streamed deltas add up to the
//     non-streamed text, the stream ends with "data: [DONE]";
//   - every error is an OpenAI JSON object with its status: 400 (malformed JSON, invalid parameters,
//     unknown role, empty messages, context_length_exceeded), 401, 404, 405, 413, 429 — and the
//     server keeps serving;
//   - a bounded load test: 8 client threads × 6 requests at once, all 200, all complete and equal to
//     the sequential greedy answers (continuous batching keeps the token ids), none lost;
//   - a client that disconnects mid-stream cancels its generation; graceful shutdown; port in use;
//   - deployments loaded from disk, and clear errors for adapters of another base, adapters with
//     unknown keys and a corrupt checkpoint.
#include "adapters/peft_io.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "serve/openai_json.h"
#include "serve/server.h"
#include "serve_fixtures.h"
#include "temp_dir.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace qaft;
using namespace qaft::test;
using nlohmann::json;

namespace {

struct Reply {
  int status = -1;     // -1: no response (the error is in body)
  std::string body;
  json j;              // the body parsed, or discarded
  std::string content_type;
};

Reply call(int port, const std::string& method, const std::string& path, const std::string& body = "",
           const httplib::Headers& headers = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(60, 0);
  httplib::Result r = method == "GET" ? cli.Get(path.c_str(), headers)
                                      : cli.Post(path.c_str(), headers, body, "application/json");
  Reply out;
  if (!r) {
    out.body = httplib::to_string(r.error());
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  out.content_type = r->get_header_value("Content-Type");
  out.j = json::parse(out.body, nullptr, false);
  return out;
}

Reply post(int port, const std::string& path, const json& body, const httplib::Headers& headers = {}) {
  return call(port, "POST", path, body.dump(), headers);
}

json chat_body(const std::string& user, int64_t max_tokens, json extra = json::object()) {
  json j = {{"model", "tiny-chat"}, {"messages", {{{"role", "user"}, {"content", user}}}}, {"max_tokens", max_tokens},
            {"temperature", 0}};
  j.update(extra);
  return j;
}

// A streamed response body, checked for the SSE framing and taken apart.
struct Sse {
  std::string problem;          // "" when well-formed
  std::vector<json> chunks;
  std::string text;             // concatenated deltas
  std::string finish_reason;
  json usage;                   // from the usage chunk (include_usage)
  json error;                   // an error event
  bool first_has_role = false;
};

Sse parse_sse(const std::string& body, bool chat) {
  Sse s;
  size_t pos = 0;
  bool done = false;
  while (pos < body.size() && s.problem.empty()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      s.problem = "an event without its blank line";
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) {
      s.problem = "an event without 'data: ': " + ev;
      break;
    }
    const std::string data = ev.substr(6);
    if (data == "[DONE]") {
      done = true;
      if (pos != body.size()) s.problem = "events after [DONE]";
      break;
    }
    const json c = json::parse(data, nullptr, false);
    if (c.is_discarded()) {
      s.problem = "not JSON: " + data;
      break;
    }
    s.chunks.push_back(c);
    if (c.contains("error")) {
      s.error = c["error"];
      continue;
    }
    if (c["choices"].empty()) {
      s.usage = c["usage"];
      continue;
    }
    const json& choice = c["choices"][0];
    if (s.chunks.size() == 1) s.first_has_role = chat && choice["delta"].value("role", "") == "assistant";
    s.text += chat ? choice["delta"].value("content", "") : choice["text"].get<std::string>();
    if (!choice["finish_reason"].is_null()) s.finish_reason = choice["finish_reason"];
  }
  if (s.problem.empty() && !done) s.problem = "no data: [DONE]";
  return s;
}

// Waits (up to 5 s) for `done` — the request counters are updated by httplib's logger just after
// the response is written, so a client may see the response first.
template <typename F>
bool eventually(F&& done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

void expect_error(const Reply& r, int status, const std::string& code = {}, const std::string& param = {}) {
  EXPECT_EQ(r.status, status) << r.body;
  ASSERT_TRUE(r.j.is_object() && r.j.contains("error")) << r.body;
  const json& e = r.j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.body;
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.body;
  }
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.body;
  }
  EXPECT_NE(r.content_type.find("application/json"), std::string::npos);
}

// One server for most tests (model built once).
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    deployment_ = serve_deployment().release();
    ServerOptions o;
    o.port = 0;
    o.max_body_bytes = 64 << 10;
    o.scheduler.max_concurrency = 8;
    o.scheduler.max_queue = 64;
    server_ = new HttpServer(*deployment_, o);
    server_->start();
    ref_ = new ServeReference();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete deployment_;
    delete ref_;
  }
  static int port() { return server_->port(); }

  static Deployment* deployment_;
  static HttpServer* server_;
  static ServeReference* ref_;
};
Deployment* Serve::deployment_ = nullptr;
HttpServer* Serve::server_ = nullptr;
ServeReference* Serve::ref_ = nullptr;

}  // namespace

TEST_F(Serve, HealthModelsAndMetrics) {
  const Reply h = call(port(), "GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.j["status"], "ok");
  const Reply m = call(port(), "GET", "/v1/models");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.j["object"], "list");
  ASSERT_EQ(m.j["data"].size(), 1u);
  EXPECT_EQ(m.j["data"][0]["id"], "tiny-chat");
  ASSERT_EQ(post(port(), "/v1/chat/completions", chat_body("metrics", 3)).status, 200);
  const Reply x = call(port(), "GET", "/metrics");
  EXPECT_EQ(x.status, 200);
  EXPECT_NE(x.content_type.find("text/plain"), std::string::npos);
  for (const char* name : {"qaft_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"}", "qaft_prompt_tokens_total",
                           "qaft_generated_tokens_total", "qaft_tokens_per_second", "qaft_queue_length",
                           "qaft_active_sequences", "qaft_weight_bytes", "qaft_resident_memory_bytes",
                           "# TYPE qaft_requests_total counter", "# TYPE qaft_queue_length gauge"})
    EXPECT_NE(x.body.find(name), std::string::npos) << name << "\n" << x.body;
}

TEST_F(Serve, ChatCompletionIsGenerate) {
  for (const auto& [temperature, seed] : {std::pair{0.0, uint64_t{0}}, std::pair{0.8, uint64_t{42}}}) {
    const Generation g = ref_->chat("What wine goes with cheese?", ServeReference::params(24, temperature, seed));
    const Reply r =
        post(port(), "/v1/chat/completions", chat_body("What wine goes with cheese?", 24, {{"temperature", temperature}, {"seed", seed}}));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j["object"], "chat.completion");
    EXPECT_EQ(r.j["model"], "tiny-chat");
    EXPECT_EQ(r.j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
    EXPECT_EQ(r.j["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(r.j["choices"][0]["message"]["content"], g.text);
    EXPECT_EQ(r.j["choices"][0]["finish_reason"], g.finish_reason);
    const int64_t prompt = static_cast<int64_t>(ref_->chat_prompt({{"user", "What wine goes with cheese?"}}).size());
    EXPECT_EQ(r.j["usage"]["prompt_tokens"], prompt);
    EXPECT_EQ(r.j["usage"]["completion_tokens"], served_completion_tokens(g, false));
    EXPECT_EQ(r.j["usage"]["total_tokens"], prompt + served_completion_tokens(g, false));
  }
}

TEST_F(Serve, StreamedChatAddsUpToTheNonStreamedAnswer) {
  const json body = chat_body("Describe a dry white wine.", 32, {{"temperature", 0.7}, {"seed", 5}});
  const Reply whole = post(port(), "/v1/chat/completions", body);
  ASSERT_EQ(whole.status, 200);
  json sb = body;
  sb["stream"] = true;
  sb["stream_options"] = {{"include_usage", true}};
  const Reply streamed = post(port(), "/v1/chat/completions", sb);
  ASSERT_EQ(streamed.status, 200);
  EXPECT_NE(streamed.content_type.find("text/event-stream"), std::string::npos);
  const Sse s = parse_sse(streamed.body, true);
  ASSERT_EQ(s.problem, "") << streamed.body;
  EXPECT_TRUE(s.first_has_role);
  EXPECT_EQ(s.text, whole.j["choices"][0]["message"]["content"]);
  EXPECT_EQ(s.finish_reason, whole.j["choices"][0]["finish_reason"]);
  EXPECT_EQ(s.usage, whole.j["usage"]);
  for (const json& c : s.chunks) {
    EXPECT_EQ(c["id"], s.chunks[0]["id"]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
  }
}

TEST_F(Serve, TextCompletionsPlainStreamedAndFromTokenIds) {
  const std::string prompt = "The wine is";
  const Generation g = ref_->complete(prompt, ServeReference::params(12));
  const Reply r = post(port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "text_completion");
  EXPECT_EQ(r.j["choices"][0]["text"], g.text);
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], g.finish_reason);
  const Reply s = post(port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(s.status, 200);
  const Sse sse = parse_sse(s.body, false);
  ASSERT_EQ(sse.problem, "") << s.body;
  EXPECT_EQ(sse.text, g.text);
  // Token ids as the prompt.
  const std::vector<int32_t> ids = ref_->tokenizer().encode(prompt, true);
  const Reply t = post(port(), "/v1/completions", {{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(t.status, 200);
  EXPECT_EQ(t.j["choices"][0]["text"], g.text);
  // Without max_tokens a completion gets OpenAI's 16.
  const Reply d = post(port(), "/v1/completions", {{"prompt", prompt}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.j["usage"]["completion_tokens"], 16);
}

TEST_F(Serve, StopSequencesStreamedAndNot) {
  const Generation free = ref_->chat("Name a grape.", ServeReference::params(40, 0.9, 3, {}, true));
  ASSERT_GE(free.text.size(), 10u);
  // A stop sequence from the sampled text, on UTF-8 character boundaries (it goes into JSON).
  auto boundary = [&](size_t i) {
    while (i < free.text.size() && (static_cast<unsigned char>(free.text[i]) & 0xC0) == 0x80) ++i;
    return i;
  };
  const size_t from = boundary(4), to = boundary(from + 3);
  ASSERT_LT(from, to);
  const std::vector<std::string> stop = {free.text.substr(from, to - from), "zzzz-never"};
  const Generation g = ref_->chat("Name a grape.", ServeReference::params(40, 0.9, 3, stop, true));
  const json body = chat_body("Name a grape.", 40, {{"temperature", 0.9}, {"seed", 3}, {"stop", stop}, {"ignore_eos", true}});
  const Reply r = post(port(), "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.j["choices"][0]["message"]["content"], g.text);
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], "stop");
  json sb = body;
  sb["stream"] = true;
  const Sse s = parse_sse(post(port(), "/v1/chat/completions", sb).body, true);
  ASSERT_EQ(s.problem, "");
  EXPECT_EQ(s.text, g.text);
  EXPECT_EQ(s.finish_reason, "stop");
}

TEST_F(Serve, ErrorsAreOpenAiJsonWithTheRightStatusAndTheServerGoesOn) {
  const std::string chat = "/v1/chat/completions";
  expect_error(call(port(), "POST", chat, "{\"model\": \"tiny-chat\", \"messages\": ["), 400, "invalid_json");
  expect_error(call(port(), "POST", chat, "not json at all"), 400, "invalid_json");
  expect_error(post(port(), chat, chat_body("x", 4, {{"model", "gpt-17"}})), 404, "model_not_found", "model");
  expect_error(post(port(), chat, chat_body("x", 4, {{"temperature", -1}})), 400, "", "temperature");
  expect_error(post(port(), chat, chat_body("x", 4, {{"top_p", 0}})), 400, "", "top_p");
  expect_error(post(port(), chat, chat_body("x", 4, {{"top_p", 1.01}})), 400, "", "top_p");
  expect_error(post(port(), chat, chat_body("x", 0)), 400, "", "max_tokens");
  expect_error(post(port(), chat, chat_body("x", 4, {{"n", 2}})), 400, "unsupported", "n");
  expect_error(post(port(), chat, chat_body("x", 4, {{"messages", json::array()}})), 400, "", "messages");
  expect_error(post(port(), chat, chat_body("x", 4, {{"messages", {{{"role", "robot"}, {"content", "x"}}}}})), 400, "",
               "messages[0].role");
  // Context: prompt + max_tokens above max_position_embeddings, or a prompt that alone fills it.
  expect_error(post(port(), chat, chat_body("x", kServeContext)), 400, "context_length_exceeded");
  expect_error(post(port(), "/v1/completions", {{"prompt", std::string(kServeContext + 10, 'a')}}), 400,
               "context_length_exceeded");
  expect_error(post(port(), "/v1/completions", {{"prompt", {1, 2, 400}}, {"max_tokens", 2}}), 400, "", "prompt");
  // Body above max_body_bytes (64 KiB here).
  expect_error(post(port(), chat, chat_body(std::string(100 << 10, 'a'), 4)), 413, "request_too_large");
  expect_error(call(port(), "GET", chat), 405);
  expect_error(call(port(), "GET", "/v2/nothing"), 404, "not_found");
  // Still serving.
  EXPECT_EQ(post(port(), chat, chat_body("still there?", 4)).status, 200);
  EXPECT_TRUE(eventually([] { return server_->metrics().requests("/v1/chat/completions", 400) >= 10; }));
  EXPECT_TRUE(eventually([] { return server_->metrics().requests("/v1/chat/completions", 413) >= 1; }));
}

TEST_F(Serve, ApiKeyGuardsTheApiButNotHealth) {
  auto d = serve_deployment();
  ServerOptions o;
  o.port = 0;
  o.api_key = "s3cret";
  o.scheduler.max_queue = 4;
  HttpServer s(*d, o);
  s.start();
  const json body = chat_body("hi", 2);
  expect_error(post(s.port(), "/v1/chat/completions", body), 401, "invalid_api_key");
  expect_error(post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer wrong"}}), 401, "invalid_api_key");
  expect_error(post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer s3cret-and-more"}}), 401);
  expect_error(call(s.port(), "GET", "/v1/models"), 401);
  EXPECT_EQ(post(s.port(), "/v1/chat/completions", body, {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(call(s.port(), "GET", "/v1/models", "", {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(call(s.port(), "GET", "/health").status, 200);
}

TEST_F(Serve, AFullQueueIs429AndTheAcceptedRequestsFinish) {
  auto d = serve_deployment();
  ServerOptions o;
  o.port = 0;
  o.scheduler.max_concurrency = 1;
  o.scheduler.max_queue = 0;
  o.http_threads = 12;
  HttpServer s(*d, o);
  s.start();
  int ok = 0, full = 0;
  for (int attempt = 0; attempt < 5 && full == 0; ++attempt) {
    std::vector<std::thread> clients;
    std::vector<int> status(6, 0);
    for (size_t i = 0; i < status.size(); ++i)
      clients.emplace_back([&, i] {
        const Reply r = post(s.port(), "/v1/completions",
                             {{"prompt", "busy"}, {"max_tokens", 400}, {"ignore_eos", true}, {"temperature", 0}});
        status[i] = r.status;
        if (r.status == 429) {
          expect_error(r, 429, "queue_full");
        }
        if (r.status == 200) {
          EXPECT_EQ(r.j["usage"]["completion_tokens"], 400);
        }
      });
    for (auto& c : clients) c.join();
    for (int st : status) {
      EXPECT_TRUE(st == 200 || st == 429) << st;
      ok += st == 200;
      full += st == 429;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(full, 1);
}

TEST_F(Serve, ConcurrentClientsGetTheSequentialGreedyAnswers) {
  // 8 client threads × 6 requests, half of them streamed, over 6 prompts; every answer must be the
  // greedy answer of generate() alone (continuous batching changes only fp32 summation order).
  const std::vector<std::string> prompts = {"Pair a wine with salmon.", "Is rosé sweet?", "What is tannin?",
                                            "Red or white with chicken?", "How cold should champagne be?",
                                            "Name a dessert wine."};
  std::vector<Generation> expected;
  for (const std::string& p : prompts) expected.push_back(ref_->chat(p, ServeReference::params(20)));
  const int64_t before = server_->metrics().requests("/v1/chat/completions", 200);
  constexpr int kThreads = 8, kPerThread = 6;
  std::vector<std::string> failures(kThreads);
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t)
    clients.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const size_t k = static_cast<size_t>(t + i) % prompts.size();
        const bool stream = (t + i) % 2 == 1;
        json body = chat_body(prompts[k], 20);
        body["stream"] = stream;
        const Reply r = post(port(), "/v1/chat/completions", body);
        std::string text, finish;
        if (r.status == 200 && stream) {
          const Sse s = parse_sse(r.body, true);
          if (!s.problem.empty()) failures[t] += "bad stream: " + s.problem + "\n";
          text = s.text;
          finish = s.finish_reason;
        } else if (r.status == 200) {
          text = r.j["choices"][0]["message"]["content"];
          finish = r.j["choices"][0]["finish_reason"];
        } else {
          failures[t] += "status " + std::to_string(r.status) + ": " + r.body + "\n";
          continue;
        }
        if (text != expected[k].text || finish != expected[k].finish_reason)
          failures[t] += "prompt " + std::to_string(k) + ": '" + text + "' (" + finish + ") != '" + expected[k].text + "'\n";
        ++answered;
      }
    });
  for (auto& c : clients) c.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "client " << t;
  EXPECT_EQ(answered.load(), kThreads * kPerThread);
  const auto counted = [&] { return server_->metrics().requests("/v1/chat/completions", 200) - before; };
  EXPECT_TRUE(eventually([&] { return counted() >= kThreads * kPerThread; }));
  EXPECT_EQ(counted(), kThreads * kPerThread);  // none lost, none counted twice
  EXPECT_EQ(server_->scheduler().queue_length(), 0);
}

TEST_F(Serve, AClientThatDisconnectsMidStreamCancelsItsGeneration) {
  const int64_t cancelled = server_->metrics().cancelled();
  const std::string body =
      json({{"prompt", "long"}, {"max_tokens", kServeContext - 32}, {"ignore_eos", true}, {"stream", true}}).dump();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(got.find("200"), std::string::npos);
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return server_->metrics().cancelled() > cancelled; }));
  EXPECT_EQ(server_->metrics().cancelled(), cancelled + 1);
  EXPECT_EQ(call(port(), "GET", "/health").status, 200);
}

TEST_F(Serve, GracefulShutdownFinishesOrEndsInFlightRequests) {
  auto d = serve_deployment();
  ServerOptions o;
  o.port = 0;
  o.shutdown_grace_seconds = 0.3;
  HttpServer s(*d, o);
  s.start();
  const int p = s.port();
  Reply streamed;
  std::thread client([&] {
    streamed = post(p, "/v1/completions",
                    {{"prompt", "endless"}, {"max_tokens", kServeContext - 32}, {"ignore_eos", true}, {"stream", true}});
  });
  for (int i = 0; i < 500 && s.scheduler().active() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto t0 = std::chrono::steady_clock::now();
  s.shutdown();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  client.join();
  EXPECT_LT(took, 5.0);
  EXPECT_FALSE(s.running());
  // The stream was either finished or ended by a 503 error event — always with [DONE].
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  const Sse sse = parse_sse(streamed.body, false);
  EXPECT_EQ(sse.problem, "");
  if (sse.finish_reason.empty()) {
    EXPECT_EQ(sse.error["code"], "shutting_down") << streamed.body;
  }
  EXPECT_EQ(call(p, "GET", "/health").status, -1);  // nothing listens any more
  s.shutdown();                                      // idempotent
}

TEST_F(Serve, APortInUseIsAClearError) {
  auto d = serve_deployment();
  ServerOptions o;
  o.port = port();  // the suite's server holds it
  HttpServer s(*d, o);
  try {
    s.start();
    FAIL() << "started on a port in use";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(e.message().find(std::to_string(port())), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("in use"), std::string::npos) << e.message();
  }
  EXPECT_EQ(call(port(), "GET", "/health").status, 200);
}

TEST_F(Serve, DeploymentsFromDiskAndClearErrorsForBadInputs) {
  TempDir tmp;
  const std::string model = tmp.file("model");
  CheckpointOptions co;
  co.format = CheckpointFormat::kFp8Block;
  save_checkpoint(serve_params(), serve_config_json(), model, co);
  const TinyChatTokenizerFiles files = tiny_chat_tokenizer_files();
  std::ofstream(model + "/tokenizer.json") << files.tokenizer_json;
  std::ofstream(model + "/tokenizer_config.json") << files.config_json;

  // A good deployment: an adapter of this base, merged live, served over HTTP.
  const ModelConfig c = serve_config();
  const PeftAdapter adapter = random_adapter(c, 4, 8, 3, 0.05f, 0.05f);
  save_peft_adapter(tmp.file("adapter"), c, adapter.config, adapter.targets, adapter.params, model);
  DeploymentOptions o;
  o.model_dir = model;
  o.adapter_dir = tmp.file("adapter");
  auto d = Deployment::load(o);
  EXPECT_EQ(d->name(), "model");
  EXPECT_GT(d->model().merge_report().merged, 0);
  ASSERT_NE(d->chat_template(), nullptr);
  {
    ServerOptions so;
    so.port = 0;
    HttpServer s(*d, so);
    s.start();
    const Reply r = post(s.port(), "/v1/chat/completions", chat_body("hi", 4, {{"model", "model"}}));
    EXPECT_EQ(r.status, 200) << r.body;
  }

  auto load_error = [&](const std::string& adapter_dir, const std::string& model_dir) -> std::string {
    DeploymentOptions bad;
    bad.model_dir = model_dir;
    bad.adapter_dir = adapter_dir;
    try {
      Deployment::load(bad);
    } catch (const Error& e) {
      return e.message();
    }
    return "";
  };
  // An adapter of another base: the same modules with other shapes.
  ModelConfig wider = c;
  wider.hidden_size = 48;
  const PeftAdapter other = random_adapter(wider, 4, 8, 3, 0.05f, 0.05f);
  save_peft_adapter(tmp.file("wider"), wider, other.config, other.targets, other.params, "another-model");
  const std::string shape = load_error(tmp.file("wider"), model);
  EXPECT_FALSE(shape.empty());
  EXPECT_NE(shape.find("shape"), std::string::npos) << shape;
  // An adapter whose keys name modules this model does not have (a llama adapter).
  const ModelConfig llama = tiny_config("llama");
  const PeftAdapter foreign = random_adapter(llama, 4, 8, 3, 0.05f, 0.05f);
  save_peft_adapter(tmp.file("llama"), llama, foreign.config, foreign.targets, foreign.params, "llama");
  const std::string keys = load_error(tmp.file("llama"), model);
  EXPECT_FALSE(keys.empty());
  EXPECT_NE(keys.find("lora_A"), std::string::npos) << keys;
  // A corrupt checkpoint: the weights file cut short.
  for (const auto& f : std::filesystem::directory_iterator(model))
    if (f.path().extension() == ".safetensors") std::filesystem::resize_file(f.path(), std::filesystem::file_size(f.path()) / 2);
  const std::string corrupt = load_error("", model);
  EXPECT_FALSE(corrupt.empty());
  EXPECT_NE(corrupt.find("safetensors"), std::string::npos) << corrupt;
  EXPECT_FALSE(load_error("", tmp.file("missing")).empty());
}
