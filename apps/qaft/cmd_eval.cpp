// `qaft eval MODEL_DIR [--adapter DIR] --dataset FILE [--precision fp8|bf16] [--json]` — accuracy by
// generation with a confusion table, perplexity of the reference answers, and the parity report
// (KL and top-1 agreement of the training-time numerics against the deployment and against a BF16
// deployment). Exit codes: 0 done; 1 failed; 2 bad command line.
#include "commands.h"
#include "eval/evaluate.h"

#include <cstdio>

namespace qaft::cli {
namespace {

struct EvalArgs {
  EvalOptions options;
  std::string precision = "fp8";    // --precision
  std::string scale_format = "fp32";
  std::string base_format;          // --base-format ("" = the adapter's training base)
  std::string reference;            // --reference qat|exact ("" = as the adapter was trained)
  bool no_parity = false;
  bool no_generation = false;
  bool json = false;
};

int run_eval(EvalArgs a) {
  EvalOptions& o = a.options;
  o.precision = parse_precision(a.precision);
  o.scale_format = a.scale_format == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  if (!a.base_format.empty()) o.base_format = parse_base_format(a.base_format);
  if (!a.reference.empty()) o.reference_qat = a.reference == "qat";
  o.parity = !a.no_parity;
  o.generation = !a.no_generation;
  const EvalReport r = evaluate_model(o);
  if (a.json) std::printf("%s\n", r.to_json().dump(2).c_str());
  else std::fputs(r.to_text().c_str(), stdout);
  return kExitOk;
}

}  // namespace

void register_eval(CLI::App& app, Action& run) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a model (+ adapter) as served: accuracy, perplexity, train-vs-serve parity");
  cmd->add_option("model", a->options.model_dir, "HF model directory")->required();
  cmd->add_option("--adapter", a->options.adapter_dir, "PEFT adapter directory (live-merged)");
  cmd->add_option("--dataset", a->options.dataset, "JSONL of chat or prompt/completion records (last turn = reference)")->required();
  cmd->add_option("--precision", a->precision, "deployment precision")->check(CLI::IsMember({"fp8", "bf16", "f32"}));
  cmd->add_option("--scale-format", a->scale_format, "FP8 block scales of the deployment")->check(CLI::IsMember({"fp32", "ue8m0"}));
  cmd->add_option("--base-format", a->base_format, "base storage (default: the adapter's training base, else bf16)")
      ->check(CLI::IsMember({"f32", "bf16", "fp8", "nf4"}));
  cmd->add_option("--reference", a->reference, "training-time numerics of the parity report (default: as trained)")
      ->check(CLI::IsMember({"qat", "exact"}));
  cmd->add_option("--max-examples", a->options.max_examples, "evaluate the first N records (0 = all)");
  cmd->add_option("--max-tokens", a->options.max_new_tokens, "generation budget per record")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", a->options.batch, "sequences generated together")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-parity", a->no_parity, "skip the parity report");
  cmd->add_flag("--no-generation", a->no_generation, "skip the accuracy by generation");
  cmd->add_flag("--json", a->json, "print the report as JSON");
  cmd->callback([a, &run] { run = [a] { return run_eval(*a); }; });
}

}  // namespace qaft::cli
