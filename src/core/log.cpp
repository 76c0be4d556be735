#include "core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace qaft {
namespace {

LogLevel initial_level() {
  if (const char* env = std::getenv("QAFT_LOG_LEVEL"))
    if (auto l = log_level_from_name(env)) return *l;
  return LogLevel::kInfo;
}

std::atomic<int>& level_storage() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}

const auto kStart = std::chrono::steady_clock::now();

}  // namespace

void log_set_level(LogLevel level) { level_storage().store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(level_storage().load(std::memory_order_relaxed)); }

std::optional<LogLevel> log_level_from_name(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  return std::nullopt;
}

void log_write(LogLevel level, std::string_view message) {
  static std::mutex mutex;
  static constexpr char kLetters[] = {'D', 'I', 'W', 'E', ' '};
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - kStart).count();
  std::lock_guard<std::mutex> lock(mutex);
  std::fprintf(stderr, "[qaft %c %.3fs] %.*s\n", kLetters[static_cast<int>(level)], seconds,
               static_cast<int>(message.size()), message.data());
}

}  // namespace qaft
