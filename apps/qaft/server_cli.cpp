#include "server_cli.h"

namespace qaft::cli {

void add_precision_options(CLI::App* cmd, std::string& precision, std::string& scale_format) {
  cmd->add_option("--precision", precision, "served weights: FP8 (E4M3, 128x128 scales) or BF16")
      ->check(CLI::IsMember({"fp8", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--scale-format", scale_format,
                  "FP8 block scales (default: as the adapter was trained, else the checkpoint's scale_fmt, else fp32)")
      ->check(CLI::IsMember({"fp32", "ue8m0"}));
}

void add_http_server_options(CLI::App* cmd, ServerOptions& s) {
  cmd->add_option("--host", s.host, "address to bind (0.0.0.0 exposes the server to the network)")->capture_default_str();
  cmd->add_option("--port", s.port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on /v1/*")->envname("QAFT_API_KEY");
  cmd->add_option("--max-body-bytes", s.max_body_bytes, "larger request bodies get 413")
      ->check(CLI::Range(size_t{1}, size_t{1} << 34))
      ->capture_default_str();
  cmd->add_option("--max-concurrency", s.scheduler.max_concurrency, "sequences batched together at most")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--max-queue", s.scheduler.max_queue, "requests waiting beyond --max-concurrency; more get 429")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--shutdown-grace", s.shutdown_grace_seconds,
                  "seconds running requests get to finish on SIGINT/SIGTERM (or `deployment stop`)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
}

}  // namespace qaft::cli
