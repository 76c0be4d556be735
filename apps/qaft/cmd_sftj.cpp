// `qaft sftj create | resume | list | get | delete` — LoRA (+ FP8 QAT) fine-tuning jobs of the
// workspace (docs/workspace.md). A job runs in the foreground with a progress line, or with
// --detach in a background process (`qaft sftj run-job ID`, hidden) that logs to
// <workspace>/jobs/<id>/log.txt. Ctrl-C / SIGTERM stop a job after the current step with a
// checkpoint (status interrupted); a killed job also reads as interrupted; `resume` continues it.
// Exit codes: 0 done; 1 failed; 2 bad command line or request; 130 stopped (resumable).
#include "core/error.h"
#include "core/log.h"
#include "registry/sft_job.h"
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

namespace qaft::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};
extern "C" void on_sftj_signal(int) { g_stop.store(true); }

constexpr int kExitStopped = 130;  // stopped by a signal: resumable

struct CreateArgs {
  SftJobRequest request;            // names, hyperparameters, --set
  std::string qat = "fp8";          // --qat fp8 | none
  std::string base_format;          // --base-format; "" = from the base model
  int64_t steps = 0;                // --steps; 0 = one epoch
  bool detach = false;              // run in a background process
  bool json = false;                // print the job as JSON
};

struct JobArgs {
  int64_t id = 0;        // ID
  bool resume = false;   // run-job --resume
  bool detach = false;   // resume --detach
  bool json = false;     // --json
  bool force = false;    // delete --force
};

// The last training step recorded in the job's metrics file (its tail only), 0 when none.
int64_t last_metrics_step(const fs::path& file) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in.good()) return 0;
  const std::streamoff size = in.tellg();
  const std::streamoff start = std::max<std::streamoff>(0, size - (64 << 10));
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  int64_t step = 0;
  size_t pos = 0;
  for (size_t nl; (nl = tail.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    const nlohmann::json j = nlohmann::json::parse(tail.substr(pos, nl - pos), nullptr, false);
    if (j.is_object() && j.contains("loss") && j.contains("step") && j["step"].is_number_integer())
      step = j["step"].get<int64_t>();
  }
  return step;
}

int64_t config_steps(const JobRecord& j) {
  return j.config.is_object() && j.config.contains("steps") ? j.config["steps"].get<int64_t>() : 0;
}

std::string progress_text(const JobRecord& j) {
  const int64_t total = config_steps(j);
  const int64_t done = j.status == JobStatus::kCompleted ? total : last_metrics_step(fs::path(j.dir) / "metrics.jsonl");
  return fmt::format("{}/{}", done, total);
}

std::string metric(const nlohmann::json& m, const char* key, const char* format) {
  if (!m.is_object() || !m.contains(key) || !m[key].is_number()) return "";
  return fmt::format(fmt::runtime(format), m[key].get<double>());
}

nlohmann::json job_json(const JobRecord& j) {
  nlohmann::json out = j.to_json();
  out["progress"] = {{"step", j.status == JobStatus::kCompleted ? config_steps(j)
                                                                 : last_metrics_step(fs::path(j.dir) / "metrics.jsonl")},
                     {"steps", config_steps(j)}};
  const fs::path log = fs::path(j.dir) / "log.txt";
  out["log"] = fs::exists(log) ? nlohmann::json(log.string()) : nlohmann::json();
  return out;
}

void print_job(const JobRecord& j) {
  const fs::path log = fs::path(j.dir) / "log.txt";
  std::string eval;
  if (j.metrics.is_object() && j.metrics.contains("eval")) eval = metric(j.metrics["eval"], "loss", "{:.4f}");
  print_fields({{"id", std::to_string(j.id)},
                {"status", std::string(job_status_name(j.status))},
                {"output model", j.output_model},
                {"base model", j.base_model},
                {"dataset", fmt::format("{} (sha256 {})", j.dataset, j.dataset_sha256)},
                {"progress", "step " + progress_text(j)},
                {"final loss", metric(j.metrics, "final_loss", "{:.4f}")},
                {"eval loss", eval},
                {"throughput", metric(j.metrics, "tokens_per_second", "{:.0f} tokens/s")},
                {"pid", j.pid ? std::to_string(j.pid) : ""},
                {"dir", j.dir},
                {"log", fs::exists(log) ? log.string() : ""},
                {"created", j.created_at},
                {"started", j.started_at},
                {"finished", j.finished_at},
                {"error", j.error},
                {"qaft version", j.qaft_version}});
  if (j.status == JobStatus::kInterrupted || j.status == JobStatus::kFailed)
    fmt::print("\nresume it with `qaft sftj resume {}`\n", j.id);
}

// Runs the job in this process; prints the outcome.
int run_here(Workspace& ws, int64_t id, bool resume, bool json) {
  std::signal(SIGINT, on_sftj_signal);
  std::signal(SIGTERM, on_sftj_signal);
  SftRunOptions o;
  o.resume = resume;
  o.stop = &g_stop;
  const SftRunResult r = run_sft_job(ws, id, o);
  if (json) {
    print_json(job_json(r.job));
  } else if (r.train.completed) {
    fmt::print("job {} completed: model '{}' registered\n", id, r.job.output_model);
    print_job(r.job);
  } else {
    fmt::print("job {} stopped at step {} of {}; `qaft sftj resume {}` continues it\n", id, r.train.steps_done,
               config_steps(r.job), id);
  }
  std::fflush(stdout);
  return r.train.completed ? kExitOk : kExitStopped;
}

// Starts `qaft sftj run-job ID [--resume]` in a new session with its output appended to the job's
// log.txt, and waits until it has taken the job (recorded its pid) or ended.
int run_detached(Workspace& ws, int64_t id, bool resume, bool json) {
  const fs::path log = ws.job_dir(id) / "log.txt";
  std::vector<std::string> args = {"qaft", "--log-level", log_level_name(log_level()), "sftj", "run-job", std::to_string(id)};
  if (resume) args.emplace_back("--resume");
  const pid_t pid = start_background(args, nullptr, log);

  // Wait for the child to record itself (its pid) on the job, or to exit.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const JobRecord j = ws.job(id);
    if (j.pid == pid) break;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      const JobRecord after = ws.job(id);
      if (after.pid == pid) break;  // it ran (and ended) between the two reads
      std::string why = WIFEXITED(status) ? fmt::format("exit code {}", WEXITSTATUS(status))
                                          : fmt::format("signal {}", WTERMSIG(status));
      QAFT_FAIL(ErrorKind::kIo, fmt::format("see {}", log.string()), "the job process ended before starting job {} ({})",
                id, why);
    }
    QAFT_CHECK_HINT(std::chrono::steady_clock::now() < deadline, ErrorKind::kIo, fmt::format("see {}", log.string()),
                    "the job process (pid {}) has not started job {} after 60 s", pid, id);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (json) {
    print_json(job_json(ws.job(id)));
  } else {
    fmt::print("job {} {} in the background (pid {})\n", id, resume ? "resumed" : "started", pid);
    fmt::print("log       {}\n", log.string());
    fmt::print("status    qaft sftj get {}\n", id);
  }
  std::fflush(stdout);
  return kExitOk;
}

int run_create(CreateArgs a) {
  SftJobRequest& q = a.request;
  q.qat = a.qat == "fp8";
  if (!a.base_format.empty()) q.base_format = parse_base_format(a.base_format);
  if (a.steps > 0) q.steps = a.steps;
  Workspace ws = open_workspace();
  const int64_t id = create_sft_job(ws, q);
  if (a.detach) return run_detached(ws, id, false, a.json);
  if (!a.json) {
    fmt::print("job {}: fine-tuning '{}' on '{}' -> '{}' (Ctrl-C stops it; `qaft sftj resume {}` continues)\n", id,
               q.base_model, q.dataset, q.output_model, id);
    std::fflush(stdout);
  }
  return run_here(ws, id, false, a.json);
}

int run_resume(const JobArgs& a) {
  Workspace ws = open_workspace();
  const JobRecord j = ws.job(a.id);
  QAFT_CHECK_HINT(j.status != JobStatus::kRunning, ErrorKind::kInvalidArgument, "wait for it, or stop it first",
                  "job {} is running (pid {})", a.id, j.pid);
  QAFT_CHECK_HINT(j.status != JobStatus::kCompleted, ErrorKind::kInvalidArgument,
                  fmt::format("it produced model '{}'", j.output_model), "job {} is already completed", a.id);
  if (a.detach) return run_detached(ws, a.id, true, a.json);
  return run_here(ws, a.id, true, a.json);
}

int run_job(const JobArgs& a) {
  Workspace ws = open_workspace();
  return run_here(ws, a.id, a.resume, false);
}

int run_list(bool json) {
  Workspace ws = open_workspace();
  const auto all = ws.jobs();
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const JobRecord& r : all) j.push_back(job_json(r));
    print_json(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const JobRecord& r : all)
    rows.push_back({std::to_string(r.id), std::string(job_status_name(r.status)), r.output_model, r.base_model, r.dataset,
                    progress_text(r), metric(r.metrics, "final_loss", "{:.4f}"), r.created_at});
  print_table({"ID", "STATUS", "OUTPUT", "BASE", "DATASET", "STEP", "LOSS", "CREATED"}, rows);
  return kExitOk;
}

int run_get(const JobArgs& a) {
  Workspace ws = open_workspace();
  const JobRecord j = ws.job(a.id);
  if (a.json) print_json(job_json(j));
  else print_job(j);
  return kExitOk;
}

int run_delete(const JobArgs& a) {
  Workspace ws = open_workspace();
  ws.delete_job(a.id, a.force);
  fmt::print("job {} deleted\n", a.id);
  return kExitOk;
}

}  // namespace

void register_sftj(CLI::App& app, Action& run) {
  CLI::App* group = app.add_subcommand("sftj", "Supervised fine-tuning jobs (LoRA + FP8 QAT) of the workspace ($QAFT_HOME)");
  group->require_subcommand(1);

  auto c = std::make_shared<CreateArgs>();
  CLI::App* create = group->add_subcommand(
      "create", "fine-tune a registered base model on a registered dataset; registers the tuned model");
  create->add_option("--base-model", c->request.base_model, "registered base model")->required();
  create->add_option("--dataset", c->request.dataset, "registered training dataset")->required();
  create->add_option("--output-model", c->request.output_model, "name of the tuned model to register")->required();
  create->add_option("--eval-dataset", c->request.eval_dataset, "registered dataset evaluated at the end");
  create->add_option("--qat", c->qat, "fp8: quantization-aware training for FP8 serving (default); none")
      ->check(CLI::IsMember({"fp8", "none"}));
  create->add_option("--base-format", c->base_format,
                     "frozen base storage: bf16 | fp8 | nf4 (default: fp8 for an FP8 checkpoint, else bf16)")
      ->check(CLI::IsMember({"bf16", "fp8", "nf4"}));
  create->add_option("--steps", c->steps, "optimizer updates (default: one epoch of the dataset)")
      ->check(CLI::PositiveNumber);
  create->add_option("--lr", c->request.lr, "peak learning rate (default 2e-4)")->check(CLI::PositiveNumber);
  create->add_option("--rank", c->request.rank, "LoRA rank; alpha = 2·rank (default 8)")->check(CLI::PositiveNumber);
  create->add_option("--seq-len", c->request.seq_len, "tokens per row (default 2048)")->check(CLI::PositiveNumber);
  create->add_option("--batch-size", c->request.batch_size, "rows per micro-batch (default 1)")
      ->check(CLI::PositiveNumber);
  create->add_option("--set", c->request.overrides,
                     "any training key (docs/train-config.md): --set optim.weight_decay=0.01 (repeatable)");
  create->add_flag("--detach", c->detach, "run in the background (log in the job's directory) and print the job id");
  create->add_flag("--json", c->json, "print the job as JSON");
  create->callback([c, &run] { run = [c] { return run_create(*c); }; });

  auto r = std::make_shared<JobArgs>();
  CLI::App* resume = group->add_subcommand("resume", "continue an interrupted or failed job from its last checkpoint");
  resume->add_option("ID", r->id, "job id")->required();
  resume->add_flag("--detach", r->detach, "run in the background");
  resume->add_flag("--json", r->json, "print the job as JSON");
  resume->callback([r, &run] { run = [r] { return run_resume(*r); }; });

  auto x = std::make_shared<JobArgs>();
  CLI::App* run_job_cmd = group->add_subcommand("run-job", "run a recorded job in this process (used by --detach)");
  run_job_cmd->group("");  // hidden
  run_job_cmd->add_option("ID", x->id, "job id")->required();
  run_job_cmd->add_flag("--resume", x->resume, "continue from the last checkpoint");
  run_job_cmd->callback([x, &run] { run = [x] { return run_job(*x); }; });

  auto l = std::make_shared<bool>(false);
  CLI::App* list = group->add_subcommand("list", "the jobs, with status and progress");
  list->add_flag("--json", *l, "print JSON");
  list->callback([l, &run] { run = [l] { return run_list(*l); }; });

  auto g = std::make_shared<JobArgs>();
  CLI::App* get = group->add_subcommand("get", "one job: status, progress, metrics, lineage");
  get->add_option("ID", g->id, "job id")->required();
  get->add_flag("--json", g->json, "print JSON (with the full configuration)");
  get->callback([g, &run] { run = [g] { return run_get(*g); }; });

  auto d = std::make_shared<JobArgs>();
  CLI::App* del = group->add_subcommand("delete", "remove a job and its directory (refused while it runs)");
  del->add_option("ID", d->id, "job id")->required();
  del->add_flag("--force", d->force, "also delete the model it produced");
  del->callback([d, &run] { run = [d] { return run_delete(*d); }; });
}

}  // namespace qaft::cli
