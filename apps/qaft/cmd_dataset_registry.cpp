// `qaft dataset create NAME FILE --model M | list | get NAME | delete NAME` — datasets registered
// in the workspace (docs/workspace.md): create validates the file with the model's tokenizer and
// chat template, copies it into the workspace and records its statistics and SHA-256.
#include "core/error.h"
#include "registry/dataset_import.h"
#include "registry/model_import.h"
#include "workspace_cli.h"

#include <fmt/format.h>

namespace qaft::cli {
namespace {

struct CreateArgs {
  std::string name;                  // registry name
  std::string file;                  // the JSONL file
  std::string model;                 // registered model name or model directory (the tokenizer)
  DatasetImportOptions options;      // validation
  std::string on_overflow = "drop";  // --on-overflow
  bool json = false;                 // print the record as JSON
};

struct NameArgs {
  std::string name;    // NAME
  bool json = false;   // --json
  bool force = false;  // --force (delete)
};

std::vector<std::pair<std::string, std::string>> dataset_fields(const DatasetRecord& d) {
  const nlohmann::json& s = d.stats;
  auto num = [&](const char* key) { return s.contains(key) ? s[key].dump() : std::string(); };
  return {{"name", d.name},
          {"rows", fmt::format("{} ({} valid, {} with errors)", d.rows, num("valid_rows"), num("errors"))},
          {"tokens", fmt::format("{} ({} trained on)", d.tokens, num("trainable_tokens"))},
          {"longest", num("max_example_tokens")},
          {"tokenizer", s.value("tokenizer", std::string())},
          {"sha256", d.sha256},
          {"path", d.path},
          {"source", d.source},
          {"created", d.created_at}};
}

int run_create(CreateArgs a) {
  a.options.scan.on_overflow = a.on_overflow == "truncate" ? OverflowPolicy::kTruncate : OverflowPolicy::kDrop;
  Workspace ws = open_workspace();
  const auto dir = resolve_model_dir(ws, a.model);
  const DatasetImport imp = import_dataset(ws, a.name, a.file, dir, a.model, a.options);
  if (a.json) {
    print_json(imp.record.to_json());
  } else {
    for (const DataError& e : imp.stats.first_errors)
      fmt::print("{}:{}: {}: {} (skipped)\n", a.file, e.line, data_error_class_name(e.kind), e.message);
    fmt::print("dataset '{}' registered\n", a.name);
    print_fields(dataset_fields(imp.record));
  }
  return kExitOk;
}

int run_list(bool json) {
  Workspace ws = open_workspace();
  const auto all = ws.datasets();
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const DatasetRecord& d : all) j.push_back(d.to_json());
    print_json(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const DatasetRecord& d : all)
    rows.push_back({d.name, std::to_string(d.rows), std::to_string(d.tokens), d.sha256.substr(0, 12), d.created_at});
  print_table({"NAME", "ROWS", "TOKENS", "SHA256", "CREATED"}, rows);
  return kExitOk;
}

int run_get(const NameArgs& a) {
  Workspace ws = open_workspace();
  const DatasetRecord d = ws.dataset(a.name);
  if (a.json) print_json(d.to_json());
  else print_fields(dataset_fields(d));
  return kExitOk;
}

int run_delete(const NameArgs& a) {
  Workspace ws = open_workspace();
  ws.delete_dataset(a.name, a.force);
  fmt::print("dataset '{}' deleted\n", a.name);
  return kExitOk;
}

}  // namespace

void add_dataset_registry_commands(CLI::App& ds, Action& run) {
  auto c = std::make_shared<CreateArgs>();
  CLI::App* create = ds.add_subcommand(
      "create", "validate a JSONL dataset, copy it into the workspace ($QAFT_HOME) and register it as NAME");
  create->add_option("NAME", c->name, "registry name: [a-z0-9][a-z0-9._-]{0,63}")->required();
  create->add_option("FILE", c->file, "JSONL file: {\"messages\": [...]} or {\"prompt\", \"completion\"} per line")
      ->required();
  create->add_option("--model", c->model, "registered model name or model directory whose tokenizer validates it")
      ->required();
  create->add_option("--max-length", c->options.scan.max_length, "context length in tokens (0 = unlimited)")
      ->check(CLI::NonNegativeNumber);
  create->add_option("--on-overflow", c->on_overflow, "longer examples: drop (an error) or truncate")
      ->check(CLI::IsMember({"drop", "truncate"}));
  create->add_flag("--allow-errors", c->options.allow_errors,
                   "register a file with invalid lines (training skips them); default: refuse it");
  create->add_flag("--json", c->json, "print the record as JSON");
  create->callback([c, &run] { run = [c] { return run_create(*c); }; });

  auto l = std::make_shared<bool>(false);
  CLI::App* list = ds.add_subcommand("list", "the registered datasets");
  list->add_flag("--json", *l, "print JSON");
  list->callback([l, &run] { run = [l] { return run_list(*l); }; });

  auto g = std::make_shared<NameArgs>();
  CLI::App* get = ds.add_subcommand("get", "one registered dataset: statistics, hash, paths");
  get->add_option("NAME", g->name, "dataset name")->required();
  get->add_flag("--json", g->json, "print JSON");
  get->callback([g, &run] { run = [g] { return run_get(*g); }; });

  auto d = std::make_shared<NameArgs>();
  CLI::App* del = ds.add_subcommand("delete", "remove a dataset and its copy from the workspace");
  del->add_option("NAME", d->name, "dataset name")->required();
  del->add_flag("--force", d->force, "also when unfinished jobs train on it (they can no longer be resumed)");
  del->callback([d, &run] { run = [d] { return run_delete(*d); }; });
}

}  // namespace qaft::cli
