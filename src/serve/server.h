// The HTTP server (cpp-httplib): OpenAI-compatible endpoints over one Deployment.
//
//   POST /v1/chat/completions   chat (messages rendered with the model's chat template)
//   POST /v1/completions        plain text (or token-id) prompts
//   GET  /v1/models             the served model
//   GET  /health                {"status": "ok"} (503 while shutting down)
//   GET  /metrics               Prometheus text (serve/metrics.h)
//
// Both completion endpoints stream with "stream": true (SSE: "data: {chunk}\n\n" events, then
// "data: [DONE]\n\n"). Requests are run by the Scheduler (continuous batching on one engine thread);
// every HTTP thread only parses, queues and writes. Errors are OpenAI JSON error objects:
//   400 malformed JSON, invalid parameters, unknown role, empty messages, context_length_exceeded
//   401 missing or wrong API key (/v1/* only; /health and /metrics stay open)
//   404 unknown model (code model_not_found) or unknown path      405 wrong method
//   413 body above max_body_bytes      429 queue full      503 shutting down
//   500 anything that throws while running a request — for that request only.
// A streamed request whose client disconnects is cancelled when the next write fails. Shutdown is
// graceful: new requests get 503, running ones have shutdown_grace_seconds to finish (then end with
// 503 / an SSE error event), then the listener closes.
#pragma once

#include "serve/deployment.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"

#include <cstddef>
#include <memory>
#include <string>

namespace qaft {

struct ServerOptions {
  std::string host = "127.0.0.1";       // loopback unless told otherwise
  int port = 8000;                      // 0: an ephemeral port (read it with port())
  std::string api_key;                  // "" = no authentication
  size_t max_body_bytes = 4u << 20;     // larger request bodies get 413
  SchedulerOptions scheduler;           // max_concurrency, max_queue, prefill_chunk
  int http_threads = 0;                 // 0: max_concurrency + max_queue + 8 (a waiting request holds a thread)
  double shutdown_grace_seconds = 5.0;  // how long running requests may take to finish on shutdown
};

class HttpServer {
 public:
  // `deployment` must outlive the server.
  HttpServer(Deployment& deployment, ServerOptions options);
  ~HttpServer();  // shutdown()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port and serves on background threads. Throws kIo when the address cannot be bound
  // (port in use, unknown host), naming it.
  void start();
  // The bound port (after start()).
  int port() const;
  // Graceful stop (see above); returns once the listener is closed. Idempotent, thread-safe.
  void shutdown();
  // False once the listener has stopped (shutdown, or a fatal socket error).
  bool running() const;

  Metrics& metrics();
  Scheduler& scheduler();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qaft
