#include "workspace_cli.h"

#include "core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

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

pid_t start_background(const std::vector<std::string>& args, const std::vector<std::string>* env,
                       const std::filesystem::path& log, const std::string& header) {
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  QAFT_CHECK_HINT(fd >= 0, ErrorKind::kIo, "check that the workspace is writable", "cannot create {}: {}",
                  log.string(), std::strerror(errno));
  if (!header.empty() && ::write(fd, header.data(), header.size()) < 0)
    QAFT_LOG(kWarn, "cannot write to {}", log.string());
  std::error_code ec;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) ::close(fd);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "", "cannot find the qaft executable: {}", ec.message());
  std::vector<char*> argv, envp;
  for (const std::string& s : args) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  if (env) {
    for (const std::string& s : *env) envp.push_back(const_cast<char*>(s.c_str()));
    envp.push_back(nullptr);
  }
  const pid_t pid = ::fork();
  if (pid < 0) ::close(fd);
  QAFT_CHECK_HINT(pid >= 0, ErrorKind::kIo, "", "cannot start a background process: {}", std::strerror(errno));
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    ::setsid();
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (env) ::execve(exe.c_str(), argv.data(), envp.data());
    else ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

}  // namespace qaft::cli
