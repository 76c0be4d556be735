// `qaft serve MODEL_DIR [--adapter DIR] [--precision fp8|bf16] [--scale-format fp32|ue8m0]
//  [--host 127.0.0.1] [--port 8000] [--api-key KEY | $QAFT_API_KEY] [--model-name NAME]
//  [--max-body-bytes N] [--max-concurrency N] [--max-queue N] [--shutdown-grace S]`
// — the OpenAI-compatible HTTP server (docs/serving.md). Loads the model, live-merges the adapter,
// prints "listening on http://HOST:PORT" and serves until SIGINT/SIGTERM, then shuts down
// gracefully. Exit codes: 0 stopped by a signal; 1 failed (bad model or adapter, port in use);
// 2 bad command line.
#include "commands.h"
#include "serve/serve.h"

#include <atomic>
#include <csignal>

namespace qaft::cli {
namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler stores to it");

void on_serve_signal(int) { g_stop.store(true); }

struct ServeArgs {
  ServeOptions options;
  std::string precision = "fp8";
  std::string scale_format;  // "" = the adapter's, else the checkpoint's, else fp32
};

int run_serve(ServeArgs a) {
  a.options.deployment.precision = parse_precision(a.precision);
  if (!a.scale_format.empty())
    a.options.deployment.scale_format = a.scale_format == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  struct sigaction sa {};
  sa.sa_handler = on_serve_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that disconnects is a failed write, not a dead server
  return run_server(a.options, g_stop);
}

}  // namespace

void register_serve(CLI::App& app, Action& run) {
  auto a = std::make_shared<ServeArgs>();
  ServerOptions& s = a->options.server;
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model (+ LoRA adapter, merged live) over an OpenAI-compatible HTTP API");
  cmd->add_option("model", a->options.deployment.model_dir, "HF model directory (weights, config.json, tokenizer)")
      ->required();
  cmd->add_option("--adapter", a->options.deployment.adapter_dir, "PEFT adapter directory, merged into the served weights");
  cmd->add_option("--precision", a->precision, "served weights: FP8 (E4M3, 128x128 scales) or BF16")
      ->check(CLI::IsMember({"fp8", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--scale-format", a->scale_format, "FP8 block scales (default: as the adapter was trained, else the checkpoint's scale_fmt, else fp32)")
      ->check(CLI::IsMember({"fp32", "ue8m0"}));
  cmd->add_option("--host", s.host, "address to bind (0.0.0.0 exposes the server to the network)")->capture_default_str();
  cmd->add_option("--port", s.port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on /v1/*")->envname("QAFT_API_KEY");
  cmd->add_option("--model-name", a->options.deployment.model_name, "model id clients use (default: the directory's name)");
  cmd->add_option("--max-body-bytes", s.max_body_bytes, "larger request bodies get 413")
      ->check(CLI::Range(size_t{1}, size_t{1} << 34))
      ->capture_default_str();
  cmd->add_option("--max-concurrency", s.scheduler.max_concurrency, "sequences batched together at most")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--max-queue", s.scheduler.max_queue, "requests waiting beyond --max-concurrency; more get 429")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--shutdown-grace", s.shutdown_grace_seconds, "seconds running requests get to finish on SIGINT/SIGTERM")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->callback([a, &run] { run = [a] { return run_serve(*a); }; });
}

}  // namespace qaft::cli
