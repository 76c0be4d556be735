#include "serve/serve.h"

#include "core/log.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace qaft {

int run_server(const ServeOptions& options, const std::atomic<bool>& stop) {
  std::unique_ptr<Deployment> deployment = Deployment::load(options.deployment);
  QAFT_LOG(kInfo, "deployment '{}' ready in {:.2f} s (live merge {:.3f} s, weights {:.1f} MiB, context {} tokens)",
           deployment->name(), deployment->load_seconds(), deployment->model().merge_report().seconds,
           static_cast<double>(deployment->model().merge_report().weight_bytes) / (1 << 20),
           deployment->context_length());

  HttpServer server(*deployment, options.server);
  server.start();
  fmt::print("listening on http://{}:{}\n", options.server.host, server.port());
  std::fflush(stdout);
  if (options.on_listening) options.on_listening(server.port());

  while (!stop.load() && server.running()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const bool asked = stop.load();
  QAFT_LOG(kInfo, "{}: shutting down (running requests get {:.0f} s to finish)",
           asked ? "stop requested" : "the listener stopped", options.server.shutdown_grace_seconds);
  server.shutdown();
  QAFT_LOG(kInfo, "server stopped");
  return asked ? 0 : 1;
}

}  // namespace qaft
