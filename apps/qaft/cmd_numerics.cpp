// `qaft numerics` — prints the numerics report (src/numerics/numerics_report.h) as aligned text
// tables, or as JSON with --json.
#include "commands.h"
#include "core/cpu_features.h"
#include "numerics/numerics_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

namespace qaft::cli {
namespace {

std::string cell_text(const ReportCell& c) {
  if (auto* s = std::get_if<std::string>(&c)) return *s;
  if (auto* i = std::get_if<int64_t>(&c)) return std::to_string(*i);
  return fmt::format("{:.4g}", std::get<double>(c));
}

nlohmann::json cell_json(const ReportCell& c) {
  if (auto* s = std::get_if<std::string>(&c)) return *s;
  if (auto* i = std::get_if<int64_t>(&c)) return *i;
  return std::get<double>(c);
}

void print_text(const std::vector<ReportTable>& tables) {
  for (const ReportTable& t : tables) {
    std::vector<size_t> width(t.columns.size());
    for (size_t j = 0; j < t.columns.size(); ++j) width[j] = t.columns[j].size();
    for (const auto& row : t.rows)
      for (size_t j = 0; j < row.size(); ++j) width[j] = std::max(width[j], cell_text(row[j]).size());
    fmt::print("\n({}) {}\n", t.id, t.title);
    auto line = [&](auto&& text_of) {
      std::string s = " ";
      for (size_t j = 0; j < t.columns.size(); ++j) s += fmt::format(" {:<{}} ", text_of(j), width[j]);
      fmt::print("{}\n", s);
    };
    line([&](size_t j) { return t.columns[j]; });
    line([&](size_t j) { return std::string(width[j], '-'); });
    for (const auto& row : t.rows) line([&](size_t j) { return cell_text(row[j]); });
    fmt::print("  note: {}\n", t.note);
  }
}

nlohmann::json to_json(const std::vector<ReportTable>& tables, const NumericsReportConfig& c) {
  nlohmann::json j;
  j["config"] = {{"seed", c.seed}, {"rows", c.rows}, {"cols", c.cols},
                 {"outlier_fraction", c.outlier_fraction}, {"outlier_scale", c.outlier_scale},
                 {"dots_per_k", c.dots_per_k}, {"dot_ks", c.dot_ks}};
  j["cpu"] = cpu_features().summary();
  j["tables"] = nlohmann::json::array();
  for (const ReportTable& t : tables) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : t.rows) {
      nlohmann::json r = nlohmann::json::object();
      for (size_t k = 0; k < row.size(); ++k) r[t.columns[k]] = cell_json(row[k]);
      rows.push_back(r);
    }
    j["tables"].push_back({{"id", t.id}, {"title", t.title}, {"note", t.note}, {"columns", t.columns}, {"rows", rows}});
  }
  return j;
}

}  // namespace

void register_numerics(CLI::App& app, Action& run) {
  auto config = std::make_shared<NumericsReportConfig>();
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "numerics", "Reproduce DeepSeek-V3's FP8 numerics claims with qaft's codecs (four tables)");
  cmd->add_flag("--json", *json, "print JSON instead of text tables");
  cmd->add_option("--seed", config->seed, "RNG seed (the report is deterministic for a seed)");
  cmd->add_option("--rows", config->rows, "activation rows (tokens)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--cols", config->cols, "activation width")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--outlier-fraction", config->outlier_fraction, "fraction of outlier channels")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--outlier-scale", config->outlier_scale, "outlier magnitude factor")
      ->check(CLI::Range(1.0, 1e6));
  cmd->add_option("--dots", config->dots_per_k, "dot products per K in table (c)")->check(CLI::Range(1, 100000));
  cmd->callback([&run, config, json] {
    run = [config, json] {
      auto tables = numerics_report(*config);
      if (*json) fmt::print("{}\n", to_json(tables, *config).dump(2));
      else print_text(tables);
      return kExitOk;
    };
  });
}

}  // namespace qaft::cli
