#include "workspace_cli.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace qaft::cli {

Workspace open_workspace() { return Workspace::open(Workspace::default_home()); }

void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) {
    std::fputs("(none)\n", stdout);
    return;
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size() && c < width.size(); ++c)
      s += c + 1 == cells.size() ? cells[c] : fmt::format("{:<{}}  ", cells[c], width[c]);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    std::fputs((s + "\n").c_str(), stdout);
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void print_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [k, v] : fields)
    if (!v.empty()) width = std::max(width, k.size());
  for (const auto& [k, v] : fields)
    if (!v.empty()) fmt::print("{:<{}}  {}\n", k, width, v);
  std::fflush(stdout);
}

void print_json(const nlohmann::json& j) {
  std::fputs((j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

}  // namespace qaft::cli
