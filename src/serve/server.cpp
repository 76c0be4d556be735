#include "serve/server.h"

#include "core/error.h"
#include "core/log.h"
#include "serve/openai_json.h"

#include <httplib.h>
#include <strings.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

namespace qaft {

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kRoutes[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"};

ApiError api_error(int status, std::string type, std::string message, std::string code = {}, std::string param = {}) {
  ApiError e;
  e.status = status;
  e.type = std::move(type);
  e.message = std::move(message);
  e.code = std::move(code);
  e.param = std::move(param);
  return e;
}

void write_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(json_text(e.to_json()), kJson);
}

// The metrics label of a path: one of the routes, or "other" (bounded cardinality).
std::string endpoint_label(const std::string& path) {
  for (const char* r : kRoutes)
    if (path == r) return r;
  return "other";
}

// Compares without an early exit, so the time taken does not tell how much of a key matched.
bool same_secret(const std::string& given, const std::string& key) {
  unsigned diff = given.size() == key.size() ? 0u : 1u;
  for (size_t i = 0; i < std::max(given.size(), key.size()); ++i) {
    const unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    const unsigned char b = i < key.size() ? static_cast<unsigned char>(key[i]) : 0;
    diff |= static_cast<unsigned>(a ^ b);
  }
  return diff == 0 && !key.empty();
}

// The HTTP status of a generation that ended without finishing.
ApiError failure_error(const GenerationUpdate& u) {
  switch (u.failure) {
    case GenerationFailure::kInvalidRequest: return bad_request(u.error);
    case GenerationFailure::kShutdown: return api_error(503, "server_error", u.error, "shutting_down");
    case GenerationFailure::kCancelled: return api_error(500, "server_error", u.error, "cancelled");
    case GenerationFailure::kInternal:
    case GenerationFailure::kNone: break;
  }
  return api_error(500, "server_error", u.error.empty() ? "internal error" : u.error);
}

}  // namespace

struct HttpServer::Impl {
  Deployment& deployment;
  ServerOptions options;
  Metrics metrics;
  Scheduler scheduler;
  httplib::Server http;
  std::thread listener;
  int port = 0;
  int64_t created = std::time(nullptr);
  std::atomic<bool> draining{false};
  std::atomic<bool> started{false};
  std::atomic<bool> listener_done{false};  // the listener thread has returned
  std::atomic<int64_t> in_flight{0};  // completion handlers and streams not yet finished
  std::mutex shutdown_mu;
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  Impl(Deployment& d, ServerOptions o)
      : deployment(d), options(std::move(o)), scheduler(d.model(), d.tokenizer(), options.scheduler, &metrics) {
    metrics.set_weight_bytes(d.model().merge_report().weight_bytes);
    routes();
  }

  uint64_t random() {
    std::lock_guard lock(rng_mu);
    return rng();
  }

  std::string new_id(Endpoint e) {
    return fmt::format("{}-{:016x}{:08x}", e == Endpoint::kChat ? "chatcmpl" : "cmpl", random(), random() & 0xffffffffu);
  }

  void check_api_key(const httplib::Request& req) const {
    if (options.api_key.empty()) return;
    const std::string h = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (h.size() <= prefix.size() || strncasecmp(h.c_str(), prefix.c_str(), prefix.size()) != 0)
      throw ApiException(api_error(401, "authentication_error",
                                   "missing API key: send it as 'Authorization: Bearer KEY'", "invalid_api_key"));
    if (!same_secret(h.substr(prefix.size()), options.api_key))
      throw ApiException(api_error(401, "authentication_error", "incorrect API key", "invalid_api_key"));
  }

  // The prompt's token ids.
  std::vector<int32_t> prompt_ids(const CompletionRequest& r) const {
    const Tokenizer& tok = deployment.tokenizer();
    std::vector<int32_t> ids;
    try {
      if (r.endpoint == Endpoint::kChat) {
        const ChatTemplate* tpl = deployment.chat_template();
        if (!tpl)
          throw ApiException(bad_request(fmt::format("model '{}' has no chat template this server renders ({}); use "
                                                     "/v1/completions",
                                                     deployment.name(), deployment.chat_template_problem()),
                                         "messages", "unsupported"));
        ChatRenderOptions ro;
        ro.add_generation_prompt = true;
        ids = tpl->render(r.messages, ro).ids;
      } else if (r.prompt_is_ids) {
        ids = r.prompt_ids;
      } else {
        ids = tok.encode(r.prompt, true);
      }
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kInvalidArgument) throw;
      throw ApiException(bad_request(e.message(), r.endpoint == Endpoint::kChat ? "messages" : "prompt"));
    }
    if (ids.empty()) throw ApiException(bad_request("the prompt is empty", "prompt"));
    for (int32_t id : ids)
      if (id >= deployment.config().vocab_size)
        throw ApiException(bad_request(
            fmt::format("token id {} is outside the model's vocabulary [0, {})", id, deployment.config().vocab_size), "prompt"));
    return ids;
  }

  SamplingParams sampling(const CompletionRequest& r, int64_t prompt_tokens) const {
    const int64_t context = deployment.context_length();
    const char* param = "max_tokens";
    int64_t max_tokens = 0;
    if (r.max_tokens) {
      max_tokens = *r.max_tokens;
      if (prompt_tokens + max_tokens > context)
        throw ApiException(bad_request(
            fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                        "prompt, {} for the completion). Please reduce the prompt or max_tokens.",
                        context, prompt_tokens + max_tokens, prompt_tokens, max_tokens),
            param, "context_length_exceeded"));
    } else {
      if (prompt_tokens >= context)
        throw ApiException(bad_request(
            fmt::format("This model's maximum context length is {} tokens. However, the prompt has {} tokens.", context,
                        prompt_tokens),
            "messages", "context_length_exceeded"));
      max_tokens = context - prompt_tokens;
      if (r.endpoint == Endpoint::kCompletions) max_tokens = std::min<int64_t>(max_tokens, 16);  // OpenAI's default
    }
    SamplingParams p;
    p.temperature = r.temperature;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    p.max_tokens = max_tokens;
    p.stop = r.stop;
    if (!r.ignore_eos) p.stop_token_ids = deployment.stop_token_ids();
    return p;
  }

  void handle_completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    ++in_flight;
    bool streaming = false;
    try {
      check_api_key(req);
      if (draining.load()) throw ApiException(api_error(503, "server_error", "the server is shutting down", "shutting_down"));
      CompletionRequest r = parse_completion_request(req.body, endpoint);
      if (!r.model.empty() && r.model != deployment.name())
        throw ApiException(api_error(404, "invalid_request_error",
                                     fmt::format("The model '{}' does not exist; this server serves '{}'", r.model,
                                                 deployment.name()),
                                     "model_not_found", "model"));
      std::vector<int32_t> ids = prompt_ids(r);
      SamplingParams params = sampling(r, static_cast<int64_t>(ids.size()));
      params.seed = r.seed ? *r.seed : random();
      const Scheduler::Submission sub = scheduler.submit(std::move(ids), std::move(params));
      if (sub.admission == Scheduler::Admission::kQueueFull)
        throw ApiException(api_error(429, "rate_limit_error",
                                     fmt::format("the server is at capacity ({} requests queued); retry later",
                                                 scheduler.options().max_queue),
                                     "queue_full"));
      if (sub.admission == Scheduler::Admission::kStopped)
        throw ApiException(api_error(503, "server_error", "the server is shutting down", "shutting_down"));
      const ResponseMeta meta{new_id(endpoint), static_cast<int64_t>(std::time(nullptr)), deployment.name()};
      if (r.stream) {
        stream(res, sub.stream, meta, endpoint, r.include_usage);
        streaming = true;
      } else {
        const GenerationUpdate u = sub.stream->wait();
        if (u.failure != GenerationFailure::kNone) throw ApiException(failure_error(u));
        const CompletionResult result{u.text, u.finish_reason, u.prompt_tokens, u.completion_tokens};
        res.status = 200;
        res.set_content(json_text(completion_response(endpoint, meta, result)), kJson);
      }
    } catch (const ApiException& e) {
      write_error(res, e.error());
    } catch (const std::exception& e) {
      QAFT_LOG(kError, "{} {}: {}", req.method, req.path, e.what());
      write_error(res, api_error(500, "server_error", e.what()));
    }
    if (!streaming) --in_flight;  // a stream's releaser does it when the stream ends
  }

  // Streams the generation as SSE; the content provider runs on this request's HTTP thread.
  void stream(httplib::Response& res, std::shared_ptr<GenerationStream> gen, const ResponseMeta& meta,
              Endpoint endpoint, bool include_usage) {
    struct State {
      std::shared_ptr<GenerationStream> gen;
      ResponseMeta meta;
      Endpoint endpoint;
      bool include_usage;
      bool started = false;
    };
    auto st = std::make_shared<State>(State{std::move(gen), meta, endpoint, include_usage});
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t, httplib::DataSink& sink) {
          std::string out;
          if (!st->started) {
            st->started = true;
            if (st->endpoint == Endpoint::kChat) out += sse_event(completion_chunk(st->endpoint, st->meta, "", "", true));
          }
          const GenerationUpdate u = st->gen->next(std::chrono::milliseconds(100));
          if (!u.text.empty()) out += sse_event(completion_chunk(st->endpoint, st->meta, u.text, ""));
          if (u.done) {
            if (u.failure == GenerationFailure::kNone) {
              out += sse_event(completion_chunk(st->endpoint, st->meta, "", u.finish_reason));
              if (st->include_usage)
                out += sse_event(usage_chunk(st->endpoint, st->meta, u.prompt_tokens, u.completion_tokens));
            } else {
              out += sse_event(failure_error(u).to_json());
            }
            out += kSseDone;
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            st->gen->cancel();  // the client went away
            return false;
          }
          if (u.done) sink.done();
          return true;
        },
        [st, this](bool success) {
          if (!success) st->gen->cancel();
          --in_flight;
        });
  }

  void routes() {
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& q, httplib::Response& r) { handle_completion(q, r, Endpoint::kChat); });
    http.Post("/v1/completions",
              [this](const httplib::Request& q, httplib::Response& r) { handle_completion(q, r, Endpoint::kCompletions); });
    for (const char* p : {"/v1/chat/completions", "/v1/completions"})
      http.Get(p, [](const httplib::Request& q, httplib::Response& r) {
        write_error(r, api_error(405, "invalid_request_error", fmt::format("{} needs POST, not GET", q.path), "method_not_allowed"));
      });
    http.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& r) {
      try {
        check_api_key(q);
        r.set_content(json_text(models_response(deployment.name(), created)), kJson);
      } catch (const ApiException& e) {
        write_error(r, e.error());
      }
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      const bool down = draining.load();
      r.status = down ? 503 : 200;
      r.set_content(json_text({{"status", down ? "shutting_down" : "ok"}, {"model", deployment.name()}}), kJson);
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    // Errors httplib raises itself (no route, body too large, bad request line) as OpenAI JSON.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& q, httplib::Response& r) {
      if (!r.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours, already JSON
      if (r.status == 404)
        write_error(r, api_error(404, "invalid_request_error", fmt::format("unknown endpoint: {} {}", q.method, q.path),
                                 "not_found"));
      else if (r.status == 413)
        write_error(r, api_error(413, "invalid_request_error",
                                 fmt::format("the request body exceeds the limit of {} bytes", options.max_body_bytes),
                                 "request_too_large"));
      else
        write_error(r, api_error(r.status, r.status >= 500 ? "server_error" : "invalid_request_error",
                                 fmt::format("HTTP error {}", r.status)));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request& q, httplib::Response& r, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      QAFT_LOG(kError, "{} {}: {}", q.method, q.path, what);
      write_error(r, api_error(500, "server_error", what));
    });
    http.set_logger([this](const httplib::Request& q, const httplib::Response& r) {
      metrics.count_request(endpoint_label(q.path), r.status);
      QAFT_LOG(kDebug, "{} {} {}", q.method, q.path, r.status);
    });
    // httplib's default sets SO_REUSEPORT, with which a second server binds the same port and
    // silently shares its connections; SO_REUSEADDR alone makes a port in use an error.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    http.set_payload_max_length(options.max_body_bytes);
    http.set_keep_alive_timeout(2);  // idle keep-alive connections delay shutdown by at most this
    const int threads = options.http_threads > 0
                            ? options.http_threads
                            : static_cast<int>(options.scheduler.max_concurrency + options.scheduler.max_queue + 8);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  }

  void start() {
    QAFT_CHECK(!started.exchange(true), "the server was already started");
    errno = 0;
    if (options.port == 0) {
      port = http.bind_to_any_port(options.host);
    } else {
      port = http.bind_to_port(options.host, options.port) ? options.port : -1;
    }
    if (port <= 0) {
      const int err = errno;
      scheduler.shutdown(0);
      QAFT_FAIL(ErrorKind::kIo, "stop the process that holds the port, or pick another with --port",
                "cannot listen on http://{}:{}: {}", options.host, options.port,
                err ? std::strerror(err) : "the address cannot be bound");
    }
    listener = std::thread([this] {
      if (!http.listen_after_bind() && !draining.load()) QAFT_LOG(kError, "the HTTP listener on port {} failed", port);
      listener_done.store(true);
    });
    // listen_after_bind() flips is_running() once it accepts; wait for it so that running() means it.
    for (int i = 0; i < 5000 && !http.is_running() && !listener_done.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  void shutdown() {
    std::lock_guard lock(shutdown_mu);
    if (draining.exchange(true) && !listener.joinable()) return;
    // 1. New requests get 503 (draining); 2. running generations get the grace period, then fail;
    // 3. the handlers write their last bytes; 4. the listener closes and the HTTP threads join.
    scheduler.shutdown(options.shutdown_grace_seconds);
    for (int i = 0; i < 200 && in_flight.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (in_flight.load() > 0) QAFT_LOG(kWarn, "{} responses still being written at shutdown", in_flight.load());
    // stop() is a no-op until the listener runs (and must be called once: a second call while the
    // listener drains its threads asserts): wait for it to run, stop it once, join.
    if (listener.joinable()) {
      while (!listener_done.load()) {
        if (http.is_running()) {
          http.stop();
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      listener.join();
    }
  }
};

HttpServer::HttpServer(Deployment& deployment, ServerOptions options)
    : impl_(std::make_unique<Impl>(deployment, std::move(options))) {}

HttpServer::~HttpServer() { shutdown(); }

void HttpServer::start() { impl_->start(); }
int HttpServer::port() const { return impl_->port; }
void HttpServer::shutdown() { impl_->shutdown(); }
bool HttpServer::running() const { return impl_->http.is_running(); }
Metrics& HttpServer::metrics() { return impl_->metrics; }
Scheduler& HttpServer::scheduler() { return impl_->scheduler; }

}  // namespace qaft
