// The library entry of `qaft serve` (and of the workspace's `qaft deployment create`): load a
// deployment, live-merge its adapter, serve it over HTTP until asked to stop, shut down gracefully.
#pragma once

#include "serve/deployment.h"
#include "serve/server.h"

#include <atomic>
#include <functional>

namespace qaft {

struct ServeOptions {
  DeploymentOptions deployment;  // what to serve
  ServerOptions server;          // where and how
  // Called once the server accepts connections, with the bound port (e.g. to record it).
  std::function<void(int port)> on_listening;
};

// Loads the deployment, prints "listening on http://HOST:PORT" on stdout, serves until `stop`
// becomes true (e.g. set by a SIGINT/SIGTERM handler), then shuts down gracefully (server.h) and
// returns 0; 1 when the listener stopped on its own. Throws qaft::Error for a deployment that
// cannot be loaded (bad model directory, corrupt checkpoint, mismatched adapter) or an address
// that cannot be bound (port in use) — nothing is served then.
int run_server(const ServeOptions& options, const std::atomic<bool>& stop);

}  // namespace qaft
