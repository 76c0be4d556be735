// `qaft deployment create | stop | list | get | delete` — deployments of the workspace
// (docs/workspace.md): a registered model served by the OpenAI-compatible HTTP server
// (serve/serve.h run_server; docs/serving.md). `create` serves in the foreground until
// SIGINT/SIGTERM, or with --detach in a background process (`qaft deployment run-server`, hidden)
// logging to <workspace>/deployments/<name>.log. The server holds deployments/<name>.lock (its pid
// inside) while it lives: that lock is what "running" means, and what `stop` signals.
// Exit codes: 0 done (a foreground server stopped by a signal); 1 the server failed (port in use,
// bad adapter) or did not stop in time; 2 bad command line or request (unknown model, a name
// whose server runs).
#include "core/error.h"
#include "core/log.h"
#include "serve/serve.h"
#include "server_cli.h"
#include "workspace_cli.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

extern char** environ;

namespace qaft::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler stores to it");
extern "C" void on_deployment_signal(int) { g_stop.store(true); }

struct CreateArgs {
  std::string model;             // MODEL: a registered model's name
  std::string name;              // --name; "" = the model's name
  bool live_merge = false;       // --live-merge (the only mode for a tuned model)
  std::string precision = "fp8";  // --precision fp8 | bf16
  std::string scale_format;      // --scale-format; "" = as the adapter was trained, else fp32
  ServerOptions server;          // --host, --port, --api-key and the tuning options
  bool detach = false;           // --detach
  bool json = false;             // --json (with --detach)
  double start_timeout = 300;    // --start-timeout: seconds --detach waits for the server to listen

  std::string deployment_name() const { return name.empty() ? model : name; }
};

struct DeploymentArgs {
  std::string name;      // NAME
  bool json = false;     // --json
  bool force = false;    // --force (delete)
  double timeout = 30;   // --timeout (stop)
};

std::string address(const DeploymentRecord& d) { return fmt::format("http://{}:{}", d.host, d.port); }

nlohmann::json deployment_json(Workspace& ws, const DeploymentRecord& d) {
  nlohmann::json j = d.to_json();
  j["url"] = address(d);
  const fs::path log = ws.deployment_log_path(d.name);
  j["log"] = fs::exists(log) ? nlohmann::json(log.string()) : nlohmann::json();
  return j;
}

// What a registered model is served from: a base model's directory, or a tuned model's base
// directory with its adapter merged live.
struct Served {
  std::string model_dir;
  std::string adapter_dir;  // "" for a base model
  std::string base_model;   // the base model's name
};

Served resolve_model(Workspace& ws, const CreateArgs& a) {
  const ModelRecord m = ws.model(a.model);  // unknown: the error lists the registered models
  if (m.kind == ModelKind::kBase) return {m.path, "", m.name};
  QAFT_CHECK_HINT(a.live_merge, ErrorKind::kInvalidArgument,
                  fmt::format("add --live-merge (its adapter is merged into the serving weights of '{}' at load), or "
                              "merge it into a model directory with `qaft export` and register that as a base model",
                              m.base_model),
                  "model '{}' is a tuned model (a LoRA adapter on '{}'): it is served with --live-merge", m.name,
                  m.base_model);
  const std::optional<ModelRecord> base = ws.find_model(m.base_model);
  QAFT_CHECK_HINT(base.has_value(), ErrorKind::kInvalidArgument,
                  fmt::format("register the base model's directory again: `qaft model register {} DIR`", m.base_model),
                  "the base model '{}' of tuned model '{}' is no longer registered", m.base_model, m.name);
  const std::string adapter = m.adapter_dir();
  QAFT_CHECK_HINT(fs::is_directory(adapter), ErrorKind::kInvalidFile,
                  "its job's files were removed; fine-tune it again (`qaft sftj create`)",
                  "the adapter of tuned model '{}' is missing: {}", m.name, adapter);
  return {base->path, adapter, base->name};
}

// A deployment of that name is served by another process: refused, saying where.
[[noreturn]] void refuse_running(Workspace& ws, const std::string& name) {
  const std::string hint = fmt::format("stop it with `qaft deployment stop {}`, or give this one another --name", name);
  const std::optional<int64_t> holder = ws.deployment_server_pid(name);
  const std::optional<DeploymentRecord> d = ws.find_deployment(name);
  const int64_t pid = holder && *holder > 0 ? *holder : (d ? d->pid : 0);
  if (d && d->status == DeploymentStatus::kRunning)
    QAFT_FAIL(ErrorKind::kInvalidArgument, hint, "deployment '{}' is already running (pid {}, {})", name, pid, address(*d));
  QAFT_FAIL(ErrorKind::kInvalidArgument, hint, "deployment '{}' is already starting in another process (pid {})", name,
            pid);
}

// A port in use: name what serves there and suggest --port.
Error explain_failure(Workspace& ws, const std::string& name, const ServerOptions& server, const Error& e) {
  if (e.kind() != ErrorKind::kIo || e.message().rfind("cannot listen on ", 0) != 0) return e;
  std::string who;
  try {
    for (const DeploymentRecord& d : ws.deployments())
      if (d.name != name && d.status == DeploymentStatus::kRunning && d.port == server.port)
        who = fmt::format(" (deployment '{}' serves there)", d.name);
  } catch (const Error&) {
  }
  return Error(e.kind(), e.where(), e.message() + who,
               fmt::format("pick another port with --port (--port 0 takes any free one), or stop what holds port {}",
                           server.port));
}

// Marks the deployment failed; a registry that cannot be written must not hide the first error.
void record_failure(Workspace& ws, const std::string& name, int64_t pid, const std::string& error) {
  try {
    ws.update_deployment(name, DeploymentStatus::kFailed, pid, error);
  } catch (const Error& e) {
    QAFT_LOG(kError, "cannot record the failure of deployment '{}': {}", name, e.message());
  }
}

// Serves in this process until SIGINT/SIGTERM. The lock first, then the row: only the process that
// holds deployments/<name>.lock writes the row, so an earlier row of that name (stopped, failed,
// its server gone) is replaced, and two processes never both start a server of one name.
int serve_here(const CreateArgs& a) {
  struct sigaction sa {};
  sa.sa_handler = on_deployment_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that disconnects is a failed write, not a dead server

  Workspace ws = open_workspace();
  const std::string name = a.deployment_name();
  validate_registry_name(name, "deployment");
  const Served s = resolve_model(ws, a);
  std::optional<JobLock> lock = ws.lock_deployment(name);
  if (!lock) refuse_running(ws, name);

  const int64_t pid = ::getpid();
  DeploymentRecord rec;
  rec.name = name;
  rec.model = a.model;
  rec.adapter = s.adapter_dir;
  rec.precision = a.precision;
  rec.live_merge = !s.adapter_dir.empty();
  rec.host = a.server.host;
  rec.port = a.server.port;
  rec.pid = pid;
  rec.status = DeploymentStatus::kStarting;
  ws.record_deployment_start(rec);

  ServeOptions o;
  o.deployment.model_dir = s.model_dir;
  o.deployment.adapter_dir = s.adapter_dir;
  o.deployment.precision = parse_precision(a.precision);
  if (!a.scale_format.empty()) o.deployment.scale_format = a.scale_format == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  o.deployment.model_name = a.model;  // the id clients send in "model"
  o.server = a.server;
  o.on_listening = [&](int port) { ws.mark_deployment_running(name, pid, port); };
  fmt::print("deployment '{}': serving model '{}'{} in {} (pid {}; SIGINT/SIGTERM stops it)\n", name, a.model,
             s.adapter_dir.empty() ? "" : fmt::format(" (adapter merged live into '{}')", s.base_model), a.precision, pid);
  std::fflush(stdout);
  int rc = 0;
  try {
    rc = run_server(o, g_stop);
  } catch (const Error& e) {
    const Error explained = explain_failure(ws, name, a.server, e);
    record_failure(ws, name, pid, explained.message());
    throw explained;
  } catch (const std::exception& e) {
    record_failure(ws, name, pid, e.what());
    throw;
  }
  if (rc == 0) ws.update_deployment(name, DeploymentStatus::kStopped, pid, "");
  else record_failure(ws, name, pid, "the HTTP listener stopped on its own");
  fmt::print("deployment '{}' {}\n", name, rc == 0 ? "stopped" : "failed: the HTTP listener stopped on its own");
  std::fflush(stdout);
  return rc == 0 ? kExitOk : kExitFailure;
}

// The child's command line: `qaft deployment run-server` with the same settings (the API key goes
// through $QAFT_API_KEY, not the command line, which any user can read in /proc).
std::vector<std::string> server_argv(const CreateArgs& a, const std::string& name) {
  std::vector<std::string> v = {"qaft", "--log-level", log_level_name(log_level()), "deployment", "run-server", a.model,
                                "--name", name, "--precision", a.precision, "--host", a.server.host, "--port",
                                std::to_string(a.server.port), "--max-body-bytes", std::to_string(a.server.max_body_bytes),
                                "--max-concurrency", std::to_string(a.server.scheduler.max_concurrency), "--max-queue",
                                std::to_string(a.server.scheduler.max_queue), "--shutdown-grace",
                                fmt::format("{}", a.server.shutdown_grace_seconds)};
  if (a.live_merge) v.push_back("--live-merge");
  if (!a.scale_format.empty()) v.insert(v.end(), {"--scale-format", a.scale_format});
  return v;
}

std::vector<std::string> server_env(const std::string& api_key) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).rfind("QAFT_API_KEY=", 0) != 0) env.emplace_back(*e);
  if (!api_key.empty()) env.push_back("QAFT_API_KEY=" + api_key);
  return env;
}

// The last "qaft: error: " and "qaft: hint: " lines the child wrote to its log after `from`.
std::pair<std::string, std::string> last_error_in_log(const fs::path& log, std::streamoff from) {
  std::ifstream in(log, std::ios::binary);
  in.seekg(from);
  std::string line, error, hint;
  while (std::getline(in, line)) {
    if (line.rfind("qaft: error: ", 0) == 0) error = line.substr(13), hint.clear();
    else if (line.rfind("qaft: hint: ", 0) == 0) hint = line.substr(12);
  }
  return {error, hint};
}

// Starts `qaft deployment run-server` in a new session, its output appended to the deployment's
// log, and waits until the row says it listens (prints its address) or it has failed (the error).
int start_detached(const CreateArgs& a) {
  Workspace ws = open_workspace();
  ws.require_writable();
  const std::string name = a.deployment_name();
  validate_registry_name(name, "deployment");
  const Served served = resolve_model(ws, a);  // every check a user can fix, before a process starts
  if (ws.deployment_server_pid(name)) refuse_running(ws, name);

  const fs::path log = ws.deployment_log_path(name);
  std::error_code size_ec;
  const auto log_size = fs::file_size(log, size_ec);
  const std::streamoff log_start = size_ec ? 0 : static_cast<std::streamoff>(log_size);
  const std::vector<std::string> env = server_env(a.server.api_key);
  const pid_t pid = start_background(
      server_argv(a, name), &env, log,
      fmt::format("==== {} qaft deployment create {} (model '{}')\n", utc_now_iso8601(), name, a.model));

  // Its failure: the error (and hint) it printed to its log, else how it ended.
  auto fail = [&](int exit_status) {
    auto [error, hint] = last_error_in_log(log, log_start);  // the error it recorded, with its hint
    if (error.empty()) {
      error = WIFEXITED(exit_status) ? fmt::format("the server process ended with exit code {}", WEXITSTATUS(exit_status))
                                     : fmt::format("the server process was killed by signal {}", WTERMSIG(exit_status));
    }
    hint = hint.empty() ? fmt::format("its log: {}", log.string()) : fmt::format("{} (its log: {})", hint, log.string());
    const bool usage = WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == kExitUsage;
    QAFT_FAIL(usage ? ErrorKind::kInvalidArgument : ErrorKind::kIo, hint, "deployment '{}' did not start: {}", name,
              error);
  };
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::duration<double>(a.start_timeout);
  for (;;) {
    const std::optional<DeploymentRecord> d = ws.find_deployment(name);
    if (d && d->pid == pid && d->status == DeploymentStatus::kRunning) break;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) fail(status);
    if (d && d->pid == pid && d->status != DeploymentStatus::kStarting) {
      // Failed and about to exit: wait for it, so that its log holds the error and the hint.
      for (int i = 0; i < 200 && ::waitpid(pid, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      fail(status);
    }
    QAFT_CHECK_HINT(std::chrono::steady_clock::now() < deadline, ErrorKind::kIo,
                    fmt::format("it goes on in the background: `qaft deployment get {}`, its log {}; "
                                "`qaft deployment stop {}` stops it",
                                name, log.string(), name),
                    "the server of deployment '{}' (pid {}) is not listening after {:.0f} s", name, pid, a.start_timeout);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const DeploymentRecord d = ws.deployment(name);
  if (a.json) {
    print_json(deployment_json(ws, d));
    return kExitOk;
  }
  fmt::print("deployment '{}' running at {} (pid {}, started in {:.1f} s)\n", name, address(d), d.pid,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  print_fields({{"model", served.adapter_dir.empty()
                              ? fmt::format("{} ({})", a.model, a.precision)
                              : fmt::format("{} (its adapter merged live into '{}', {})", a.model, served.base_model,
                                            a.precision)},
                {"chat", fmt::format("curl {}/v1/chat/completions -H 'Content-Type: application/json' -d '{{\"messages\": "
                                     "[{{\"role\": \"user\", \"content\": \"Hello\"}}], \"max_tokens\": 32}}'",
                                     address(d))},
                {"log", log.string()},
                {"stop", fmt::format("qaft deployment stop {}", name)}});
  return kExitOk;
}

int run_create(const CreateArgs& a) {
  QAFT_CHECK_HINT(!a.json || a.detach, ErrorKind::kInvalidArgument, "add --detach, or drop --json",
                  "--json prints the started deployment: it goes with --detach");
  return a.detach ? start_detached(a) : serve_here(a);
}

// SIGTERM to the process holding the deployment's lock, then wait for the lock to be released.
int run_stop(const DeploymentArgs& a) {
  Workspace ws = open_workspace();
  const DeploymentRecord d = ws.deployment(a.name);  // unknown: the error lists the deployments
  const std::optional<int64_t> holder = ws.deployment_server_pid(a.name);
  if (!holder) {
    fmt::print("deployment '{}' is not running ({}{}); nothing to stop\n", a.name, deployment_status_name(d.status),
               d.error.empty() ? "" : ": " + d.error);
    return kExitOk;
  }
  const int64_t pid = *holder > 0 ? *holder : d.pid;
  QAFT_CHECK_HINT(pid > 0, ErrorKind::kIo, fmt::format("look for it with `fuser {}`", ws.deployment_lock_path(a.name).string()),
                  "deployment '{}' runs, but its server's pid is unknown", a.name);
  if (::kill(static_cast<pid_t>(pid), SIGTERM) != 0 && errno != ESRCH)
    QAFT_FAIL(ErrorKind::kIo, "", "cannot signal the server of deployment '{}' (pid {}): {}", a.name, pid,
              std::strerror(errno));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.timeout);
  while (ws.deployment_server_pid(a.name)) {
    QAFT_CHECK_HINT(std::chrono::steady_clock::now() < deadline, ErrorKind::kIo,
                    fmt::format("wait longer with --timeout, or `kill -9 {}` (it then reads as failed)", pid),
                    "deployment '{}' (pid {}) is still running {:.0f} s after SIGTERM", a.name, pid, a.timeout);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const DeploymentRecord after = ws.deployment(a.name);
  if (after.status == DeploymentStatus::kStopped) fmt::print("deployment '{}' stopped (pid {})\n", a.name, pid);
  else fmt::print("deployment '{}' ended (pid {}): {}{}\n", a.name, pid, deployment_status_name(after.status),
                  after.error.empty() ? "" : ": " + after.error);
  return kExitOk;
}

int run_list(bool json) {
  Workspace ws = open_workspace();
  const auto all = ws.deployments();
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const DeploymentRecord& d : all) j.push_back(deployment_json(ws, d));
    print_json(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const DeploymentRecord& d : all)
    rows.push_back({d.name, d.model, std::string(deployment_status_name(d.status)), fmt::format("{}:{}", d.host, d.port),
                    d.pid ? std::to_string(d.pid) : "", d.precision + (d.live_merge ? " live-merge" : ""), d.created_at});
  print_table({"NAME", "MODEL", "STATUS", "ADDRESS", "PID", "PRECISION", "CREATED"}, rows);
  return kExitOk;
}

int run_get(const DeploymentArgs& a) {
  Workspace ws = open_workspace();
  const DeploymentRecord d = ws.deployment(a.name);
  if (a.json) {
    print_json(deployment_json(ws, d));
    return kExitOk;
  }
  const fs::path log = ws.deployment_log_path(d.name);
  print_fields({{"name", d.name},
                {"model", d.model},
                {"adapter", d.adapter},
                {"status", std::string(deployment_status_name(d.status))},
                {"address", address(d)},
                {"precision", d.precision},
                {"live merge", d.live_merge ? "yes" : "no"},
                {"pid", d.pid ? std::to_string(d.pid) : ""},
                {"error", d.error},
                {"log", fs::exists(log) ? log.string() : ""},
                {"created", d.created_at}});
  return kExitOk;
}

int run_delete(const DeploymentArgs& a) {
  Workspace ws = open_workspace();
  ws.delete_deployment(a.name, a.force);
  fmt::print("deployment '{}' deleted\n", a.name);
  return kExitOk;
}

// The options `create` and the hidden `run-server` share.
void add_server_options(CLI::App* cmd, CreateArgs& a) {
  cmd->add_option("MODEL", a.model, "registered model (a tuned model is its base + its adapter, merged live)")
      ->required();
  cmd->add_option("--name", a.name, "deployment name (default: the model's name)");
  cmd->add_flag("--live-merge", a.live_merge, "merge the tuned model's LoRA adapter into the serving weights at load");
  add_precision_options(cmd, a.precision, a.scale_format);
  add_http_server_options(cmd, a.server);
}

}  // namespace

void register_deployment(CLI::App& app, Action& run) {
  CLI::App* group = app.add_subcommand("deployment", "Deployments of the workspace ($QAFT_HOME)");
  group->require_subcommand(1);

  auto c = std::make_shared<CreateArgs>();
  CLI::App* create = group->add_subcommand(
      "create", "serve a registered model over the OpenAI-compatible HTTP API (until SIGINT/SIGTERM, or --detach)");
  add_server_options(create, *c);
  create->add_flag("--detach", c->detach, "serve from a background process (log: deployments/NAME.log); print its address");
  create->add_option("--start-timeout", c->start_timeout, "with --detach: seconds to wait for the server to listen")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  create->add_flag("--json", c->json, "with --detach: print the running deployment as JSON");
  create->callback([c, &run] { run = [c] { return run_create(*c); }; });

  auto x = std::make_shared<CreateArgs>();
  CLI::App* server = group->add_subcommand("run-server", "serve a deployment in this process (used by --detach)");
  server->group("");  // hidden
  add_server_options(server, *x);
  server->callback([x, &run] { run = [x] { return serve_here(*x); }; });

  auto s = std::make_shared<DeploymentArgs>();
  CLI::App* stop = group->add_subcommand("stop", "stop a deployment's server (SIGTERM, graceful) and wait for it");
  stop->add_option("NAME", s->name, "deployment name")->required();
  stop->add_option("--timeout", s->timeout, "seconds to wait for the server to exit (more than its --shutdown-grace)")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  stop->callback([s, &run] { run = [s] { return run_stop(*s); }; });

  auto l = std::make_shared<bool>(false);
  CLI::App* list = group->add_subcommand("list", "the recorded deployments");
  list->add_flag("--json", *l, "print JSON");
  list->callback([l, &run] { run = [l] { return run_list(*l); }; });

  auto g = std::make_shared<DeploymentArgs>();
  CLI::App* get = group->add_subcommand("get", "one deployment");
  get->add_option("NAME", g->name, "deployment name")->required();
  get->add_flag("--json", g->json, "print JSON");
  get->callback([g, &run] { run = [g] { return run_get(*g); }; });

  auto d = std::make_shared<DeploymentArgs>();
  CLI::App* del = group->add_subcommand("delete", "remove a deployment's record and log (refused while its server runs)");
  del->add_option("NAME", d->name, "deployment name")->required();
  del->add_flag("--force", d->force, "forget it even if its server still runs");
  del->callback([d, &run] { run = [d] { return run_delete(*d); }; });
}

}  // namespace qaft::cli
