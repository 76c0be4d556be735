// `qaft deployment list | get NAME | delete NAME [--force]` — deployments recorded in the workspace
// (docs/workspace.md). `deployment create MODEL --live-merge`, which starts the HTTP server, comes
// with the server; its table and liveness rule (the server holds deployments/<name>.lock) are here.
#include "workspace_cli.h"

#include <fmt/format.h>

namespace qaft::cli {
namespace {

struct DeploymentArgs {
  std::string name;    // NAME
  bool json = false;   // --json
  bool force = false;  // --force (delete)
};

int run_list(bool json) {
  Workspace ws = open_workspace();
  const auto all = ws.deployments();
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const DeploymentRecord& d : all) j.push_back(d.to_json());
    print_json(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const DeploymentRecord& d : all)
    rows.push_back({d.name, d.model, std::string(deployment_status_name(d.status)), fmt::format("{}:{}", d.host, d.port),
                    d.precision + (d.live_merge ? " live-merge" : ""), d.created_at});
  print_table({"NAME", "MODEL", "STATUS", "ADDRESS", "PRECISION", "CREATED"}, rows);
  return kExitOk;
}

int run_get(const DeploymentArgs& a) {
  Workspace ws = open_workspace();
  const DeploymentRecord d = ws.deployment(a.name);
  if (a.json) {
    print_json(d.to_json());
    return kExitOk;
  }
  print_fields({{"name", d.name},
                {"model", d.model},
                {"adapter", d.adapter},
                {"status", std::string(deployment_status_name(d.status))},
                {"address", fmt::format("http://{}:{}", d.host, d.port)},
                {"precision", d.precision},
                {"live merge", d.live_merge ? "yes" : "no"},
                {"pid", d.pid ? std::to_string(d.pid) : ""},
                {"error", d.error},
                {"created", d.created_at}});
  return kExitOk;
}

int run_delete(const DeploymentArgs& a) {
  Workspace ws = open_workspace();
  ws.delete_deployment(a.name, a.force);
  fmt::print("deployment '{}' deleted\n", a.name);
  return kExitOk;
}

}  // namespace

void register_deployment(CLI::App& app, Action& run) {
  CLI::App* group = app.add_subcommand("deployment", "Deployments of the workspace ($QAFT_HOME)");
  group->require_subcommand(1);

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
  CLI::App* del = group->add_subcommand("delete", "remove a deployment's record (refused while its server runs)");
  del->add_option("NAME", d->name, "deployment name")->required();
  del->add_flag("--force", d->force, "forget it even if its server still runs");
  del->callback([d, &run] { run = [d] { return run_delete(*d); }; });
}

}  // namespace qaft::cli
