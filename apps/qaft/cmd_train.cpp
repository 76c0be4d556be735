// `qaft train CONFIG.yaml [--set key=value ...] [--resume]` — runs a training job described by a
// YAML configuration (docs/train-config.md): LoRA fine-tuning (sft) with FP8 QAT, or pretraining
// in FP8/BF16/FP32. Ctrl-C (SIGINT/SIGTERM) ends the run after the current step with a
// checkpoint; `--resume` continues it bit for bit. Exit codes: 0 done; 1 failed; 2 bad
// configuration or command line; 130 stopped by a signal (resumable).
#include "commands.h"
#include "train/train_job.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstdio>

namespace qaft::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct TrainArgs {
  std::string config;                  // CONFIG.yaml
  std::vector<std::string> overrides;  // --set key=value
  bool resume = false;                 // continue from the newest checkpoint
  bool print_config = false;           // print the resolved configuration and exit
  bool json = false;                   // print the result as JSON
  int64_t stop_after = 0;              // run at most this many steps now, then checkpoint and exit
};

int run_train(const TrainArgs& a) {
  const TrainConfig cfg = load_train_config(a.config, a.overrides);
  if (a.print_config) {
    std::printf("%s\n", cfg.to_json().dump(2).c_str());
    return kExitOk;
  }
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  TrainJobHooks hooks;
  hooks.stop = &g_stop;
  hooks.max_steps_now = a.stop_after;
  const TrainJobResult r = run_train_job(cfg, a.resume, hooks);
  if (a.json) {
    std::printf("%s\n", r.to_json().dump(2).c_str());
  } else {
    std::printf("steps          %lld of %lld%s\n", static_cast<long long>(r.steps_done), static_cast<long long>(cfg.steps),
                r.completed ? "" : " (stopped; resume with --resume)");
    std::printf("final loss     %.4f\n", r.final_loss);
    if (r.eval) std::printf("eval loss      %.4f (perplexity %.2f over %lld tokens)\n", r.eval->loss, r.eval->perplexity(),
                            static_cast<long long>(r.eval->tokens));
    std::printf("throughput     %.0f tokens/s\n", r.tokens_per_second);
    if (r.skipped_steps) std::printf("skipped steps  %lld (non-finite loss or gradient)\n", static_cast<long long>(r.skipped_steps));
    std::printf("peak memory    %.1f MiB\n", static_cast<double>(r.peak_rss_bytes) / (1 << 20));
    if (!r.adapter_dir.empty()) std::printf("adapter        %s\n", r.adapter_dir.c_str());
    if (!r.model_dir.empty()) std::printf("model          %s\n", r.model_dir.c_str());
    std::printf("metrics        %s\n", cfg.metrics_path().c_str());
  }
  return r.completed ? kExitOk : 130;
}

}  // namespace

void register_train(CLI::App& app, Action& run) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train: LoRA fine-tuning with FP8 QAT (sft) or pretraining (FP8/BF16/FP32)");
  cmd->add_option("config", a->config, "the training configuration (YAML; see docs/train-config.md)")->required();
  cmd->add_option("--set", a->overrides, "override a key: --set optim.lr=1e-4 (repeatable)");
  cmd->add_flag("--resume", a->resume, "continue from the newest checkpoint in checkpoint.dir");
  cmd->add_flag("--print-config", a->print_config, "print the resolved configuration and exit");
  cmd->add_flag("--json", a->json, "print the result as JSON");
  cmd->add_option("--stop-after", a->stop_after, "run at most N steps now, checkpoint and exit 130 (resume with --resume)")
      ->check(CLI::PositiveNumber);
  cmd->callback([a, &run] { run = [a] { return run_train(*a); }; });
}

}  // namespace qaft::cli
