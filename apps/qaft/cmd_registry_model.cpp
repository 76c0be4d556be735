// `qaft model register NAME MODEL_DIR | list | get NAME | delete NAME [--force]` — the models of
// the workspace (docs/workspace.md): base models registered from a Hugging Face directory (checked
// by loading its config, tokenizer and weights; not copied) and tuned models recorded by
// fine-tuning jobs, with their lineage.
#include "registry/model_import.h"
#include "workspace_cli.h"

#include <fmt/format.h>

namespace qaft::cli {
namespace {

struct ModelArgs {
  std::string name;    // NAME
  std::string dir;     // MODEL_DIR (register)
  bool json = false;   // --json
  bool force = false;  // --force (delete)
};

std::vector<std::pair<std::string, std::string>> model_fields(const ModelRecord& m) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"name", m.name}, {"kind", std::string(model_kind_name(m.kind))}, {"format", m.format}, {"path", m.path}};
  if (m.kind == ModelKind::kBase) {
    f.push_back({"model type", m.config.value("model_type", std::string())});
  } else {
    f.push_back({"adapter", m.adapter_dir()});
    f.push_back({"base model", m.base_model});
    f.push_back({"dataset", fmt::format("{} (sha256 {})", m.dataset, m.dataset_sha256)});
    f.push_back({"job", m.source_job ? std::to_string(*m.source_job) : std::string("(deleted)")});
    const nlohmann::json& c = m.config;
    if (c.is_object()) {
      f.push_back({"steps", c.contains("steps") ? c["steps"].dump() : ""});
      f.push_back({"base format", c.value("base_format", std::string())});
      if (c.contains("qat")) f.push_back({"qat", c["qat"].value("enabled", false) ? "fp8" : "none"});
      if (c.contains("lora")) f.push_back({"lora rank", c["lora"].contains("rank") ? c["lora"]["rank"].dump() : ""});
    }
  }
  f.push_back({"qaft version", m.qaft_version});
  f.push_back({"created", m.created_at});
  return f;
}

int run_register(const ModelArgs& a) {
  Workspace ws = open_workspace();
  const ModelRecord m = register_base_model(ws, a.name, a.dir);
  if (a.json) {
    print_json(m.to_json());
  } else {
    fmt::print("model '{}' registered\n", m.name);
    print_fields(model_fields(m));
  }
  return kExitOk;
}

int run_list(bool json) {
  Workspace ws = open_workspace();
  const auto all = ws.models();
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const ModelRecord& m : all) j.push_back(m.to_json());
    print_json(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const ModelRecord& m : all)
    rows.push_back({m.name, std::string(model_kind_name(m.kind)), m.format, m.base_model.empty() ? "-" : m.base_model,
                    m.dataset.empty() ? "-" : m.dataset, m.created_at});
  print_table({"NAME", "KIND", "FORMAT", "BASE", "DATASET", "CREATED"}, rows);
  return kExitOk;
}

int run_get(const ModelArgs& a) {
  Workspace ws = open_workspace();
  const ModelRecord m = ws.model(a.name);
  if (a.json) print_json(m.to_json());
  else print_fields(model_fields(m));
  return kExitOk;
}

int run_delete(const ModelArgs& a) {
  Workspace ws = open_workspace();
  const ModelRecord m = ws.model(a.name);
  ws.delete_model(a.name, a.force);
  fmt::print("model '{}' deleted{}\n", a.name,
             m.kind == ModelKind::kBase ? fmt::format(" (its files in {} are untouched)", m.path)
             : m.source_job           ? fmt::format(" (its adapter stays with job {}: `qaft sftj delete {}` removes it)",
                                                    *m.source_job, *m.source_job)
                                      : std::string());
  return kExitOk;
}

}  // namespace

void register_model_registry(CLI::App& app, Action& run) {
  CLI::App* group = app.add_subcommand("model", "Models of the workspace ($QAFT_HOME): base models and tuned adapters");
  group->require_subcommand(1);

  auto r = std::make_shared<ModelArgs>();
  CLI::App* reg = group->add_subcommand(
      "register", "check a Hugging Face model directory (config, tokenizer, weights) and register it as a base model");
  reg->add_option("NAME", r->name, "registry name: [a-z0-9][a-z0-9._-]{0,63}")->required();
  reg->add_option("MODEL_DIR", r->dir, "model directory: config.json, *.safetensors, tokenizer files (not copied)")
      ->required();
  reg->add_flag("--json", r->json, "print the record as JSON");
  reg->callback([r, &run] { run = [r] { return run_register(*r); }; });

  auto l = std::make_shared<bool>(false);
  CLI::App* list = group->add_subcommand("list", "the registered models");
  list->add_flag("--json", *l, "print JSON");
  list->callback([l, &run] { run = [l] { return run_list(*l); }; });

  auto g = std::make_shared<ModelArgs>();
  CLI::App* get = group->add_subcommand("get", "one model with its lineage");
  get->add_option("NAME", g->name, "model name")->required();
  get->add_flag("--json", g->json, "print JSON");
  get->callback([g, &run] { run = [g] { return run_get(*g); }; });

  auto d = std::make_shared<ModelArgs>();
  CLI::App* del = group->add_subcommand("delete", "remove a model from the registry (a base model's files are kept)");
  del->add_option("NAME", d->name, "model name")->required();
  del->add_flag("--force", d->force, "also when tuned models, deployments or unfinished jobs use it");
  del->callback([d, &run] { run = [d] { return run_delete(*d); }; });
}

}  // namespace qaft::cli
