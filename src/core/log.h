// Levelled logging to stderr: QAFT_LOG(kInfo, "loaded {} tensors", n).
//
// The level is process-wide, set by the CLI's --log-level (or QAFT_LOG_LEVEL for library users).
// Lines are "[qaft I 12.345s] message" — level letter and seconds since start.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string_view>

namespace qaft {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void log_set_level(LogLevel level);
LogLevel log_level();
std::optional<LogLevel> log_level_from_name(std::string_view name);  // "debug", "info", ...
void log_write(LogLevel level, std::string_view message);

}  // namespace qaft

#define QAFT_LOG(level, ...)                                                 \
  do {                                                                       \
    if (::qaft::LogLevel::level >= ::qaft::log_level())                      \
      ::qaft::log_write(::qaft::LogLevel::level, ::fmt::format(__VA_ARGS__)); \
  } while (0)
