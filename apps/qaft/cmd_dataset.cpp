// `qaft dataset validate FILE --model MODEL_DIR` — checks a JSONL training file line by line
// (OpenAI chat format or prompt/completion) with the model's tokenizer and chat template, prints
// each error with its line number and the statistics (rows, tokens, length histogram, estimated
// time per epoch). Exit code 0: no error; 1: errors (or the file cannot be read); 2: usage.
// The workspace verbs (`dataset create/list/get/delete`) are in cmd_dataset_registry.cpp.
#include "commands.h"
#include "core/error.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "workspace_cli.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace qaft::cli {
namespace {

struct ValidateArgs {
  std::string file;                 // the JSONL dataset
  std::string model_dir;            // MODEL_DIR with tokenizer.json + tokenizer_config.json
  DatasetOptions options;           // limits and policies
  std::string on_overflow = "drop"; // --on-overflow
  bool json = false;                // machine-readable report
  double tokens_per_second = 0;     // measured training throughput for the epoch estimate
};

std::string duration(double s) {
  if (s <= 0) return "n/a (pass --tokens-per-second)";
  if (s < 120) return fmt::format("{:.1f} s", s);
  if (s < 7200) return fmt::format("{:.1f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

int run_validate(ValidateArgs a) {
  a.options.on_overflow = a.on_overflow == "truncate" ? OverflowPolicy::kTruncate
                          : a.on_overflow == "split"  ? OverflowPolicy::kSplit
                                                      : OverflowPolicy::kDrop;
  const Tokenizer tok = Tokenizer::load(a.model_dir);
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, a.model_dir);
  const DatasetStats s = scan_dataset(a.file, tok, tpl, a.options);
  const double epoch = s.epoch_seconds(a.tokens_per_second);
  if (a.json) {
    nlohmann::json j = s.to_json();
    j["file"] = a.file;
    j["template"] = chat_format_name(tpl.format());
    if (a.tokens_per_second > 0) j["epoch_seconds"] = epoch;
    std::fputs((j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), stdout);
  } else {
    for (const DataError& e : s.first_errors)
      fmt::print("{}:{}: {}: {}\n", a.file, e.line, data_error_class_name(e.kind), e.message);
    if (s.errors > static_cast<int64_t>(s.first_errors.size()))
      fmt::print("... {} more errors\n", s.errors - static_cast<int64_t>(s.first_errors.size()));
    fmt::print("template      {}\n", chat_format_name(tpl.format()));
    fmt::print("rows          {} ({} valid, {} with errors{})\n", s.rows, s.valid_rows, s.errors,
               s.stopped_early ? ", stopped at the first error" : "");
    for (size_t c = 0; c < s.error_counts.size(); ++c)
      if (s.error_counts[c]) fmt::print("  {:<20} {}\n", data_error_class_name(static_cast<DataErrorClass>(c)), s.error_counts[c]);
    fmt::print("tokens        {} ({} trained on), longest example {}, {} truncated\n", s.tokens,
               s.trainable_tokens, s.max_example_tokens, s.truncated);
    fmt::print("lengths       (tokens <= bucket: examples)\n");
    for (int k = 0; k < kLengthBuckets; ++k)
      if (s.length_histogram[static_cast<size_t>(k)])
        fmt::print("  <= {:<10} {}\n", int64_t{1} << k, s.length_histogram[static_cast<size_t>(k)]);
    fmt::print("epoch time    {}\n", duration(epoch));
  }
  std::fflush(stdout);
  return s.errors == 0 ? kExitOk : kExitFailure;
}

}  // namespace

void register_dataset(CLI::App& app, Action& run) {
  CLI::App* ds = app.add_subcommand("dataset", "JSONL training datasets: validate, and register in the workspace ($QAFT_HOME)");
  ds->require_subcommand(1);
  auto a = std::make_shared<ValidateArgs>();
  CLI::App* v = ds->add_subcommand(
      "validate", "check a JSONL dataset line by line; print errors and statistics (exit 1 on errors)");
  v->add_option("FILE", a->file, "JSONL file: {\"messages\": [...]} or {\"prompt\", \"completion\"} per line")
      ->required();
  v->add_option("--model", a->model_dir, "model directory (tokenizer.json, tokenizer_config.json)")->required();
  v->add_option("--max-length", a->options.max_length, "context length in tokens (0 = unlimited)")
      ->check(CLI::NonNegativeNumber);
  v->add_option("--on-overflow", a->on_overflow, "longer examples: drop (an error), truncate, or split into pieces")
      ->check(CLI::IsMember({"drop", "truncate", "split"}));
  v->add_flag("--fail-fast", a->options.fail_fast, "stop at the first error");
  v->add_option("--max-line-bytes", a->options.max_line_bytes, "reject longer lines (default 64 MiB)")
      ->check(CLI::PositiveNumber);
  v->add_option("--max-errors", a->options.max_errors_kept, "errors printed (all are counted)");
  v->add_flag("--no-dedup", [a](int64_t) { a->options.deduplicate = false; }, "do not reject exact duplicates");
  v->add_option("--tokens-per-second", a->tokens_per_second,
                "training throughput measured on this machine, for the epoch-time estimate")
      ->check(CLI::NonNegativeNumber);
  v->add_flag("--json", a->json, "print the report as JSON");
  v->callback([a, &run] { run = [a] { return run_validate(*a); }; });
  // create, list, get, delete: datasets registered in the workspace (cmd_dataset_registry.cpp).
  add_dataset_registry_commands(*ds, run);
}

}  // namespace qaft::cli
