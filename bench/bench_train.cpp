// Training steps through the Trainer (src/train/trainer.h) on a DeepSeek-V3-shaped MoE model:
//   [1] LoRA fine-tuning (rank 16, alpha 32, "all-linear": every attention projection, the dense
//       MLP, the shared experts and every routed expert's gate/up/down) on a frozen base in BF16,
//       FP8 (DeepSeek block E4M3) and NF4 (double-quantized), each with FP8 QAT off and on:
//       tokens/s = processed tokens / step seconds (StepMetrics), and the same as a ratio to the
//       BF16 / QAT-off row;
//   [2] memory: each configuration runs in a fresh child process (this binary re-executed with
//       --child), which reads its own peak RSS (VmHWM of /proc/self/status) twice — after the
//       Trainer is built (the load peak: checkpoint pages mapped, conversion buffers) and at the
//       end of the steps, after the peak was reset to the current RSS once the Trainer was built
//       (writing 5 to /proc/self/clear_refs), i.e. the peak of training itself. The plan is
//       Trainer::state_bytes() (parameters, frozen store, adapters, gradients, AdamW moments) +
//       Trainer::activation_bytes() (the activations the model holds for backward after its
//       forward); the bench reports peak / plan (target <= 1.25), the RSS of an empty process
//       (this binary's libraries, an OpenMP region run) and (peak - empty) / plan;
//   [3] full-parameter training with FP32, BF16 and FP8 (E4M3 1x128 / 128x128) GEMM operands
//       (TrainerOptions::precision): step time and tokens/s as ratios to FP32.
//
//   build/release/bench/bench_train [--quick] [--threads N] [--layers L] [--json PATH]
//     --quick      2 layers, T = 128 and 1 timed step per configuration (CI smoke test; about 30 s
//                  on a quiet 2-core VM)
//     --threads N  OpenMP threads of every step (default: min(2, available))
//     --layers L   decoder layers of the bench model (default 4; the first is dense)
//     --json PATH  also write the figures as JSON
//   Other arguments are ignored with a notice (./scripts/bench passes its arguments to every bench).
//
// The model: bench_model.cpp's bench config (hidden 1024, 64 routed experts top-6 in 8 groups,
// 2 shared, moe_intermediate 256, dense intermediate 2816, MLA, vocabulary 32000) with 4 layers
// instead of 8 so that the ten processes fit in about 3 minutes on a 2-core VM; B = 2 x T = 256
// (512 tokens per step). The parent initialises it once (init_params_random, std 0.02) and writes
// a BF16 checkpoint to a temporary directory; every child loads it as `qaft train` does
// (load_base_model for LoRA, one tensor at a time; load_params for full training). Data: random
// token rows of exactly T tokens (one example per row, every position but the last a target).
// Every configuration runs 1 warm-up step and N timed steps (3, --quick 1); the median is reported.
// The machines are shared: figures are comparable within one run only, hence the ratios.
#include "bench_dsv3_config.h"
#include "bench_util.h"
#include "core/cpu_features.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/safetensors_index.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/frozen_weights.h"
#include "model/weights.h"
#include "train/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace qaft;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// The bench config: bench_dsv3_config.h (shared with bench_model, bench_infer, bench_serve).

struct BenchShape {
  int64_t layers = 4;
  int64_t vocab = 32000;
  int64_t B = 2;
  int64_t T = 256;
};

std::string bench_config_json(const BenchShape& s) { return bench::bench_dsv3_config_json(s.vocab, s.layers); }

std::string describe(const ModelConfig& c, const BenchShape& s) {
  return fmt::format(
      "deepseek_v3, hidden {}, {} layers ({} dense), {} routed experts top-{} ({} groups, top {}), {} shared, "
      "moe_intermediate {}, intermediate {}, MLA q_lora {} kv_lora {}, {} heads, vocab {}; B={} T={} ({} tokens "
      "per step); {:.1f} M parameters",
      c.hidden_size, c.num_layers, c.first_k_dense_replace, c.num_experts, c.num_experts_per_tok, c.n_group,
      c.topk_group, c.shared_intermediate_size / std::max<int64_t>(c.moe_intermediate_size, 1),
      c.moe_intermediate_size, c.intermediate_size, c.q_lora_rank, c.kv_lora_rank, c.num_heads, c.vocab_size, s.B,
      s.T, s.B * s.T, static_cast<double>(parameter_count(c)) * 1e-6);
}

constexpr int64_t kLoraRank = 16;
constexpr double kLoraAlpha = 32;

// ---------------------------------------------------------------------------------------------
// Process memory

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); -1 when absent.
int64_t proc_status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::strtoll(line.c_str() + n + 1, nullptr, 10) * 1024;  // "VmHWM:   123456 kB"
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0). False when the kernel refused.
bool reset_peak_rss() {
  {
    std::ofstream f("/proc/self/clear_refs");
    if (!f) return false;
    f << "5";
    f.flush();
    if (!f) return false;
  }
  // Reset worked if the peak is now close to the current RSS (a few pages may have been touched).
  return proc_status_bytes("VmHWM") <= proc_status_bytes("VmRSS") + (int64_t{4} << 20);
}

// Σ over this process's threads of the time spent runnable but waiting for a CPU, in seconds
// (/proc/self/task/*/schedstat, second field): other load on a shared machine shows here.
double runqueue_wait_s() {
  double total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream f(e.path() / "schedstat");
    int64_t cpu_ns = 0, wait_ns = 0;
    if (f >> cpu_ns >> wait_ns) total += static_cast<double>(wait_ns) * 1e-9;
  }
  return total;
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return f ? a + " " + b + " " + c : std::string("n/a");
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Rows of exactly T random tokens: one example per row, T - 1 targets each.
std::shared_ptr<const std::vector<Example>> random_rows(int64_t n, int64_t T, int64_t vocab) {
  auto data = std::make_shared<std::vector<Example>>();
  const CounterRng rng(23, 0);
  for (int64_t e = 0; e < n; ++e) {
    Example ex;
    ex.line = e + 1;
    for (int64_t t = 0; t < T; ++t)
      ex.ids.push_back(static_cast<int32_t>(rng.u32(static_cast<uint64_t>(e * T + t)) % static_cast<uint32_t>(vocab)));
    ex.loss_mask.assign(ex.ids.size(), 1);
    data->push_back(std::move(ex));
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// One configuration, run by a child process.

struct RunSpec {
  std::string kind;  // "empty", "lora", "full"
  BaseFormat format = BaseFormat::kBf16;
  bool qat = false;
  GemmPrecision precision = GemmPrecision::kExact;

  std::string label() const {
    if (kind == "lora") return fmt::format("lora {} qat={}", base_format_name(format), qat ? "on" : "off");
    if (kind == "full")
      return fmt::format("full {}", precision == GemmPrecision::kFp8 ? "fp8" : precision == GemmPrecision::kBf16 ? "bf16" : "fp32");
    return kind;
  }
  std::string args() const {  // command-line form, parsed by parse_spec
    if (kind == "lora") return fmt::format("lora:{}:{}", base_format_name(format), qat ? 1 : 0);
    if (kind == "full")
      return fmt::format("full:{}", precision == GemmPrecision::kFp8 ? "fp8" : precision == GemmPrecision::kBf16 ? "bf16" : "fp32");
    return kind;
  }
};

RunSpec parse_spec(const std::string& s) {
  RunSpec r;
  const size_t a = s.find(':');
  r.kind = s.substr(0, a);
  if (r.kind == "lora") {
    const size_t b = s.find(':', a + 1);
    r.format = parse_base_format(s.substr(a + 1, b - a - 1));
    r.qat = s.substr(b + 1) == "1";
  } else if (r.kind == "full") {
    const std::string p = s.substr(a + 1);
    r.precision = p == "fp8" ? GemmPrecision::kFp8 : p == "bf16" ? GemmPrecision::kBf16 : GemmPrecision::kExact;
  }
  return r;
}

struct ChildArgs {
  RunSpec spec;
  std::string dir;  // the BF16 checkpoint
  BenchShape shape;
  int threads = 2;
  int reps = 3;
};

json run_child(const ChildArgs& a) {
  omp_set_num_threads(a.threads);
  json out = {{"label", a.spec.label()}};
  if (a.spec.kind == "empty") {
    int seen = 0;
#pragma omp parallel reduction(+ : seen)
    seen += 1;
    out["threads_seen"] = seen;
    out["hwm"] = proc_status_bytes("VmHWM");
    out["rss"] = proc_status_bytes("VmRSS");
    return out;
  }
  const ModelConfig cfg = model_config_load(a.dir);
  const int64_t steps = 1 + a.reps;
  BatcherOptions batching{a.shape.B, a.shape.T, BatchMode::kPad, true, 5, 0};
  TrainerOptions o;
  o.steps = steps;
  o.lr = LrSchedule{1e-4, 0, steps, LrDecay::kCosine, 0.1};
  const auto data = random_rows(a.shape.B * steps, a.shape.T, cfg.vocab_size);

  Timer load;
  std::unique_ptr<Trainer> t;
  {  // the checkpoint is mapped while the Trainer is built
    const ShardedCheckpoint ck = ShardedCheckpoint::open(a.dir);
    if (a.spec.kind == "lora") {
      o.qat.enabled = a.spec.qat;
      LoraSetup s;
      s.config.rank = kLoraRank;
      s.config.alpha = kLoraAlpha;
      s.config.targets = {"all-linear"};
      s.config.seed = 3;
      s.targets = resolve_lora_targets(cfg, s.config);
      s.params = ParamStore<float>(lora_param_specs(s.targets));
      init_lora_params(s.params, s.targets, s.config.seed);
      out["lora_targets"] = s.targets.size();
      t = std::make_unique<Trainer>(cfg, load_base_model(ck, cfg, a.spec.format), std::move(s), data, batching, o);
      out["frozen_bytes"] = t->base().frozen.bytes();
    } else {
      o.precision = a.spec.precision;
      o.bias_update_speed = 1e-3;
      t = std::make_unique<Trainer>(cfg, load_params<float>(ck, cfg), data, batching, o);
    }
    // The checkpoint's pages read through its mapping count in RSS (RssFile) until it is closed.
    out["rss_file_loaded"] = proc_status_bytes("RssFile");
  }
  out["load_s"] = load.seconds();
  out["trainable_params"] = t->trainable().size();
  out["hwm_load"] = proc_status_bytes("VmHWM");
  out["rss_built"] = proc_status_bytes("VmRSS");
  out["peak_reset"] = reset_peak_rss();

  std::vector<double> secs, losses, waits;
  int64_t processed = 0, skipped = 0;
  for (int64_t i = 0; i < steps; ++i) {
    const double w0 = runqueue_wait_s();
    const StepMetrics m = t->step();
    const double w = runqueue_wait_s() - w0;
    losses.push_back(m.loss);
    skipped += m.skipped;
    if (i == 0) continue;  // warm-up
    secs.push_back(m.seconds);
    waits.push_back(w / (m.seconds * a.threads));
    processed = m.processed_tokens;
  }
  out["step_s"] = secs;
  out["runqueue_wait_share"] = waits;  // per timed step: run-queue wait / (step seconds × threads)
  out["median_s"] = median(secs);
  out["max_runqueue_wait_share"] = *std::max_element(waits.begin(), waits.end());
  out["processed_tokens"] = processed;
  out["tokens_per_s"] = static_cast<double>(processed) / median(secs);
  out["losses"] = losses;
  out["skipped_steps"] = skipped;
  out["state_bytes"] = t->state_bytes();
  out["activation_bytes"] = t->activation_bytes();
  out["hwm"] = proc_status_bytes("VmHWM");  // the peak since the reset (or since start, if refused)
  out["rss"] = proc_status_bytes("VmRSS");
  return out;
}

// ---------------------------------------------------------------------------------------------
// The parent: runs the children and reports.


constexpr const char* kResultTag = "BENCH_TRAIN_RESULT ";

json spawn(const std::string& exe, const RunSpec& spec, const std::string& dir, const BenchShape& s, int threads,
           int reps) {
  Timer wall;
  const bench::CmdOut o = bench::run_cmd(fmt::format("'{}' --child {} --dir '{}' --layers {} --B {} --T {} --threads {} --reps {}", exe,
                                       spec.args(), dir, s.layers, s.B, s.T, threads, reps));
  const size_t at = o.out.find(kResultTag);
  json r;
  if (o.status == 0 && at != std::string::npos) {
    const size_t b = at + std::strlen(kResultTag);
    try {
      r = json::parse(o.out.substr(b, o.out.find('\n', b) - b));
    } catch (const std::exception& e) {
      r = {{"label", spec.label()}, {"error", std::string("unparsable result: ") + e.what()}};
    }
  } else {
    r = {{"label", spec.label()},
         {"error", fmt::format("child exit {}: {}", o.status, o.out.substr(o.out.size() > 800 ? o.out.size() - 800 : 0))}};
  }
  r["wall_s"] = wall.seconds();
  if (r.contains("error")) fmt::print("  {}: FAILED: {}\n", spec.label(), r["error"].get<std::string>());
  else fmt::print("  {:22s} done in {:5.1f} s\n", spec.label(), r["wall_s"].get<double>());
  std::fflush(stdout);
  return r;
}

double mb(const json& v) { return v.is_number() ? v.get<double>() / 1e6 : 0.0; }
bool ok(const json& r) { return !r.contains("error"); }

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int threads = std::min(2, omp_get_max_threads());
  int reps = 3;
  BenchShape shape;
  bool layers_set = false;
  std::string json_path, child, dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--quick") quick = true;
    else if (a == "--threads" && has) threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--layers" && has) shape.layers = std::max(2, std::atoi(argv[++i])), layers_set = true;
    else if (a == "--json" && has) json_path = argv[++i];
    else if (a == "--child" && has) child = argv[++i];  // internal (with --dir, --B, --T, --reps): one configuration
    else if (a == "--dir" && has) dir = argv[++i];
    else if (a == "--B" && has) shape.B = std::max(1, std::atoi(argv[++i]));
    else if (a == "--T" && has) shape.T = std::max(2, std::atoi(argv[++i]));
    else if (a == "--reps" && has) reps = std::max(1, std::atoi(argv[++i]));
    else std::fprintf(stderr, "bench_train: ignoring argument %s\n", argv[i]);
  }

  if (!child.empty()) {
    try {
      const json r = run_child({parse_spec(child), dir, shape, threads, reps});
      std::printf("%s%s\n", kResultTag, r.dump().c_str());
      return 0;
    } catch (const std::exception& e) {
      std::printf("error: %s\n", e.what());
      return 1;
    }
  }

  if (quick) {
    reps = 1;
    if (!layers_set) shape.layers = 2;
    shape.T = 128;
  }
  Timer wall;
  const ModelConfig cfg = model_config_from_json(bench_config_json(shape), "bench config");
  LoraConfig lcfg;
  lcfg.rank = kLoraRank;
  lcfg.alpha = kLoraAlpha;
  const std::vector<LoraTarget> targets = resolve_lora_targets(cfg, lcfg);
  int64_t lora_params = 0;
  for (const ParamSpec& p : lora_param_specs(targets)) lora_params += p.numel();
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();

  fmt::print("bench_train: LoRA and full-training steps (Trainer::step) of a DeepSeek-V3-shaped MoE model\n");
  fmt::print("machine : {}; {} OpenMP threads available, {} used\n", cpu_features().summary(), omp_get_max_threads(),
             threads);
  fmt::print("commit  : {} (uncommitted changes not flagged)\n", bench::bench_git_commit());
  fmt::print("config  : {}\n", describe(cfg, shape));
  fmt::print("lora    : rank {}, alpha {}, all-linear: {} modules (routed experts stacked per layer and projection), "
             "{:.2f} M adapter parameters\n",
             kLoraRank, kLoraAlpha, targets.size(), static_cast<double>(lora_params) * 1e-6);
  fmt::print("steps   : 1 warm-up + {} timed per configuration, median reported; every configuration in a fresh "
             "process\n",
             reps);
  fmt::print("load    : {} (1/5/15-min load average at start)\n\n", loadavg());
  std::fflush(stdout);

  // The model, once: random init, written as a BF16 checkpoint every child loads.
  char tmpl[] = "/tmp/qaft_bench_train_XXXXXX";
  const char* d = mkdtemp(tmpl);
  if (!d) {
    std::fprintf(stderr, "mkdtemp failed\n");
    return 1;
  }
  const std::string ckdir = d;
  {
    Timer t;
    ParamStore<float> params(model_param_specs(cfg));
    omp_set_num_threads(threads);
    init_params_random(params, 1, 0.02);
    save_checkpoint(params, bench_config_json(shape), ckdir, CheckpointOptions{CheckpointFormat::kBF16, ScaleFormat::kFp32, 0});
    fmt::print("model   : init_params_random + BF16 checkpoint in {} ({:.1f} s, not timed)\n", ckdir, t.seconds());
  }

  std::vector<RunSpec> lora_specs, full_specs;
  for (BaseFormat f : {BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4})
    for (bool q : {false, true}) lora_specs.push_back({"lora", f, q, GemmPrecision::kExact});
  for (GemmPrecision p : {GemmPrecision::kExact, GemmPrecision::kBf16, GemmPrecision::kFp8})
    full_specs.push_back({"full", BaseFormat::kF32, false, p});

  fmt::print("children:\n");
  const json empty = spawn(exe, {"empty"}, ckdir, shape, threads, reps);
  std::vector<json> lora, full;
  for (const RunSpec& s : lora_specs) lora.push_back(spawn(exe, s, ckdir, shape, threads, reps));
  for (const RunSpec& s : full_specs) full.push_back(spawn(exe, s, ckdir, shape, threads, reps));
  std::error_code ec;
  std::filesystem::remove_all(ckdir, ec);
  fmt::print("\n");

  // ---- [1] LoRA throughput.
  const double ref_tps = ok(lora[0]) ? lora[0]["tokens_per_s"].get<double>() : 0;
  fmt::print("[1] LoRA step (rank {}, all-linear), {} threads: tokens/s = processed tokens / step seconds (median of {})\n",
             kLoraRank, threads, reps);
  fmt::print("  {:22s} {:>9s} {:>9s} {:>8s} {:>20s}  {:>7s}  {}\n", "configuration", "step s", "tokens/s", "vs bf16",
             "loss first..last", "rq wait", "step times (s)");
  for (json& r : lora) {
    if (!ok(r)) {
      fmt::print("  {:22s} failed\n", r["label"].get<std::string>());
      continue;
    }
    const double tps = r["tokens_per_s"].get<double>();
    r["ratio_to_bf16_qat_off"] = ref_tps > 0 ? tps / ref_tps : 0.0;
    std::string times;
    for (const auto& s : r["step_s"]) times += fmt::format("{}{:.2f}", times.empty() ? "" : " ", s.get<double>());
    fmt::print("  {:22s} {:9.3f} {:9.0f} {:8.2f} {:9.4f}..{:<9.4f}  {:6.1f}%  {}\n", r["label"].get<std::string>(),
               r["median_s"].get<double>(), tps, r["ratio_to_bf16_qat_off"].get<double>(), r["losses"].front().get<double>(),
               r["losses"].back().get<double>(), 100 * r["max_runqueue_wait_share"].get<double>(), times);
  }
  fmt::print("  rq wait: the most, over the timed steps, of the threads' time runnable but waiting for a CPU / (step\n"
             "  time x threads); more than a few % means other load on the machine disturbed the row\n");

  // ---- [2] Memory.
  const double base_mb = ok(empty) ? mb(empty["hwm"]) : 0;
  fmt::print("\n[2] peak RSS (VmHWM) per process vs the plan = state_bytes + activation_bytes; empty process {:.1f} MB\n",
             base_mb);
  fmt::print("  {:22s} {:>8s} {:>7s} {:>8s} {:>8s} {:>7s} {:>12s} {:>7s} | {:>8s} {:>9s} {:>9s}\n", "configuration",
             "state MB", "act MB", "plan MB", "train pk", "pk/plan", "(pk-empty)/p", "<=1.25", "load pk", "load/plan",
             "mapped MB");
  bool all_reset = true;
  for (std::vector<json>* rows : {&lora, &full}) {
    for (json& r : *rows) {
      if (!ok(r)) continue;
      const double plan = mb(r["state_bytes"]) + mb(r["activation_bytes"]);
      const double pk = mb(r["hwm"]);
      r["planned_bytes"] = r["state_bytes"].get<int64_t>() + r["activation_bytes"].get<int64_t>();
      r["peak_over_plan"] = pk / plan;
      r["peak_minus_empty_over_plan"] = (pk - base_mb) / plan;
      r["load_peak_over_plan"] = mb(r["hwm_load"]) / plan;
      all_reset = all_reset && r["peak_reset"].get<bool>();
      fmt::print("  {:22s} {:8.1f} {:7.1f} {:8.1f} {:8.1f} {:7.2f} {:12.2f} {:>7s} | {:8.1f} {:9.2f} {:9.1f}\n",
                 r["label"].get<std::string>(), mb(r["state_bytes"]), mb(r["activation_bytes"]), plan, pk, pk / plan,
                 (pk - base_mb) / plan, pk / plan <= 1.25 ? "met" : "NOT met", mb(r["hwm_load"]), mb(r["hwm_load"]) / plan,
                 mb(r["rss_file_loaded"]));
    }
  }
  fmt::print("  train pk: the peak of the steps (VmHWM reset once the Trainer was built){}; load pk: the peak while\n"
             "  the Trainer was built from the BF16 checkpoint, which includes the checkpoint pages read through its\n"
             "  mapping (mapped MB: RssFile just before it was closed) and conversion buffers\n",
             all_reset ? "" : " (reset REFUSED in some children: there train pk = whole-process peak)");

  // ---- [3] Full training precisions.
  const double ref_s = ok(full[0]) ? full[0]["median_s"].get<double>() : 0;
  fmt::print("\n[3] full-parameter training step, {} threads (median of {}), GEMM operand precision vs fp32\n", threads, reps);
  fmt::print("  {:22s} {:>9s} {:>9s} {:>14s} {:>20s}  {:>7s}  {}\n", "configuration", "step s", "tokens/s",
             "time vs fp32", "loss first..last", "rq wait", "step times (s)");
  for (json& r : full) {
    if (!ok(r)) {
      fmt::print("  {:22s} failed\n", r["label"].get<std::string>());
      continue;
    }
    r["time_ratio_to_fp32"] = ref_s > 0 ? r["median_s"].get<double>() / ref_s : 0.0;
    std::string times;
    for (const auto& s : r["step_s"]) times += fmt::format("{}{:.2f}", times.empty() ? "" : " ", s.get<double>());
    fmt::print("  {:22s} {:9.3f} {:9.0f} {:14.2f} {:9.4f}..{:<9.4f}  {:6.1f}%  {}\n", r["label"].get<std::string>(),
               r["median_s"].get<double>(), r["tokens_per_s"].get<double>(), r["time_ratio_to_fp32"].get<double>(),
               r["losses"].front().get<double>(), r["losses"].back().get<double>(),
               100 * r["max_runqueue_wait_share"].get<double>(), times);
  }
  fmt::print("\nload average now {}; bench wall time {:.0f} s\n", loadavg(), wall.seconds());
  std::fflush(stdout);

  if (!json_path.empty()) {
    const json j = {{"bench", "bench_train"},
                    {"machine", cpu_features().summary()},
                    {"commit", bench::bench_git_commit()},
                    {"threads", threads},
                    {"quick", quick},
                    {"config", describe(cfg, shape)},
                    {"shape", {{"layers", shape.layers}, {"vocab", shape.vocab}, {"B", shape.B}, {"T", shape.T}}},
                    {"parameters", parameter_count(cfg)},
                    {"lora_rank", kLoraRank},
                    {"lora_alpha", kLoraAlpha},
                    {"lora_parameters", lora_params},
                    {"timed_steps", reps},
                    {"empty_process", empty},
                    {"lora", lora},
                    {"full", full},
                    {"wall_s", wall.seconds()}};
    std::ofstream f(json_path);
    f << j.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  for (const auto* rows : {&lora, &full})
    for (const json& r : *rows)
      if (!ok(r)) return 1;
  return ok(empty) ? 0 : 1;
}
