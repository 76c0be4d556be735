// The CLI's verb groups. Each cmd_*.cpp registers its subcommand on the root app and sets `run`
// to the action to execute when that subcommand is chosen. Actions return the process exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace qaft::cli {

using Action = std::function<int()>;

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // the work failed (bad file, I/O)
inline constexpr int kExitUsage = 2;     // bad command line

void register_numerics(CLI::App& app, Action& run);
void register_tokenizer(CLI::App& app, Action& run);
void register_model(CLI::App& app, Action& run);  // inspect, logits, generate
void register_dataset(CLI::App& app, Action& run);  // validate; create, list, get, delete
void register_train(CLI::App& app, Action& run);    // train CONFIG.yaml
void register_eval(CLI::App& app, Action& run);     // eval MODEL_DIR --dataset FILE
void register_serve(CLI::App& app, Action& run);    // serve MODEL_DIR (HTTP server)
void register_export(CLI::App& app, Action& run);   // export MODEL_DIR --format fp8|bf16|peft --output DIR
// The workspace ($QAFT_HOME, docs/workspace.md); `dataset create/list/get/delete` are registered
// by register_dataset.
void register_model_registry(CLI::App& app, Action& run);  // model register, list, get, delete
void register_sftj(CLI::App& app, Action& run);            // sftj create, resume, list, get, delete
void register_deployment(CLI::App& app, Action& run);      // deployment create, stop, list, get, delete

}  // namespace qaft::cli
