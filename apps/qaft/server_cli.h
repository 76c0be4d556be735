// Command-line options shared by `qaft serve` and `qaft deployment create` (and its hidden
// `run-server`): the served precision and the HTTP server's settings (docs/serving.md).
#pragma once

#include "serve/server.h"

#include <CLI/CLI.hpp>

#include <string>

namespace qaft::cli {

// --precision fp8|bf16 and --scale-format fp32|ue8m0 ("" = the adapter's training, else the
// checkpoint's scale_fmt, else fp32).
void add_precision_options(CLI::App* cmd, std::string& precision, std::string& scale_format);
// --host, --port, --api-key ($QAFT_API_KEY), --max-body-bytes, --max-concurrency, --max-queue,
// --shutdown-grace.
void add_http_server_options(CLI::App* cmd, ServerOptions& s);

}  // namespace qaft::cli
