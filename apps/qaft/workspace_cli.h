// Shared by the workspace commands (dataset create/list/get/delete, model, sftj, deployment):
// opening the workspace ($QAFT_HOME, default ~/.qaft) and printing tables, key/value records and
// JSON. docs/workspace.md describes the commands.
#pragma once

#include "commands.h"
#include "core/log.h"
#include "registry/workspace.h"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <filesystem>

#include <string>
#include <utility>
#include <vector>

namespace qaft::cli {

// The workspace of $QAFT_HOME (default ~/.qaft), created when missing.
Workspace open_workspace();

// Columns padded to their widest cell, a header row first; "(none)" line when rows is empty.
void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
// "key           value" lines; pairs with an empty value are skipped.
void print_fields(const std::vector<std::pair<std::string, std::string>>& fields);
void print_json(const nlohmann::json& j);

// "debug" | "info" | "warn" | "error" | "off": the --log-level a detached child process gets.
const char* log_level_name(LogLevel level);

// Starts this qaft executable with `args` (argv, "qaft" first) in a new session, stdin from
// /dev/null, stdout and stderr appended to `log` (created when missing); `env` is its environment
// (nullptr: this process's). Returns the child's pid; the caller waits for it (waitpid). Writes
// `header` to the log first. Throws kIo when the log or the process cannot be created.
pid_t start_background(const std::vector<std::string>& args, const std::vector<std::string>* env,
                       const std::filesystem::path& log, const std::string& header = "");

// The dataset group's registry verbs: create, list, get, delete (cmd_dataset_registry.cpp).
void add_dataset_registry_commands(CLI::App& dataset_group, Action& run);

}  // namespace qaft::cli
