// `qaft serve MODEL_DIR [--adapter DIR] [--precision fp8|bf16] [--scale-format fp32|ue8m0]
//  [--host 127.0.0.1] [--port 8000] [--api-key KEY | $QAFT_API_KEY] [--model-name NAME]
//  [--max-body-bytes N] [--max-concurrency N] [--max-queue N] [--shutdown-grace S]`
// — the OpenAI-compatible HTTP server (docs/serving.md). Loads the model, live-merges the adapter,
// prints "listening on http://HOST:PORT" and serves until SIGINT/SIGTERM, then shuts down
// gracefully. Exit codes: 0 stopped by a signal; 1 failed (bad model or adapter, port in use);
// 2 bad command line.
#include "commands.h"
#include "serve/serve.h"
#include "server_cli.h"

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
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model (+ LoRA adapter, merged live) over an OpenAI-compatible HTTP API");
  cmd->add_option("model", a->options.deployment.model_dir, "HF model directory (weights, config.json, tokenizer)")
      ->required();
  cmd->add_option("--adapter", a->options.deployment.adapter_dir, "PEFT adapter directory, merged into the served weights");
  add_precision_options(cmd, a->precision, a->scale_format);
  add_http_server_options(cmd, a->options.server);
  cmd->add_option("--model-name", a->options.deployment.model_name, "model id clients use (default: the directory's name)");
  cmd->callback([a, &run] { run = [a] { return run_serve(*a); }; });
}

}  // namespace qaft::cli
