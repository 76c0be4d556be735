// `qaft export MODEL_DIR [--adapter DIR] --format fp8|bf16|peft --output DIR [--scale-format fp32|ue8m0]
//  [--force] [--json]` — writes the tuned model for another server or for qaft: the merged FP8
// checkpoint (DeepSeek's block-FP8 HF layout, bit-identical to what `qaft serve MODEL_DIR --adapter DIR`
// serves), a merged BF16 checkpoint, or the PEFT adapter checked against the base (docs/export.md).
// Prints what was written. Exit codes: 0 written; 1 failed (bad model or adapter, I/O);
// 2 bad command line (peft without --adapter, an output directory that exists and is not empty).
#include "commands.h"
#include "serve/export.h"

#include <cstdio>

namespace qaft::cli {
namespace {

struct ExportArgs {
  ExportOptions options;
  std::string format;
  std::string scale_format;  // "" = as the deployment would pick it
  bool json = false;
};

int run_export(ExportArgs a) {
  a.options.format = parse_export_format(a.format);
  if (!a.scale_format.empty()) a.options.scale_format = a.scale_format == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  const ExportReport r = export_model(a.options);
  if (a.json) std::printf("%s\n", r.to_json().dump(2).c_str());
  else std::fputs(r.to_text().c_str(), stdout);
  return kExitOk;
}

}  // namespace

void register_export(CLI::App& app, Action& run) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Export a model (+ LoRA adapter): merged FP8 or BF16 HF checkpoint as served, or the PEFT adapter");
  cmd->add_option("model", a->options.model_dir, "HF model directory (the base)")->required();
  cmd->add_option("--adapter", a->options.adapter_dir, "PEFT adapter directory (merged for fp8/bf16; required for peft)");
  cmd->add_option("--format", a->format, "fp8: merged block-FP8 checkpoint; bf16: merged BF16 checkpoint; peft: the adapter")
      ->check(CLI::IsMember({"fp8", "bf16", "peft"}))
      ->required();
  cmd->add_option("--output", a->options.output_dir, "directory to write (must not exist or be empty, unless --force)")
      ->required();
  cmd->add_option("--scale-format", a->scale_format,
                  "FP8 block scales (default: as the adapter was trained, else the base's scale_fmt, else fp32)")
      ->check(CLI::IsMember({"fp32", "ue8m0"}));
  cmd->add_flag("--force", a->options.force, "replace an existing non-empty output directory");
  cmd->add_flag("--json", a->json, "print the report as JSON");
  cmd->callback([a, &run] { run = [a] { return run_export(*a); }; });
}

}  // namespace qaft::cli
