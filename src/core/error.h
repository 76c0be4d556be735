// qaft::Error and QAFT_CHECK — the one way library code reports a failure.
//
// Every error carries where it was raised (file:line), what went wrong, and a hint: what the user
// can do about it. Library code never calls exit(); the CLI turns an Error into one clear line and
// an exit code, the HTTP server into a JSON error object.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace qaft {

// Broad classes of failure, so that boundaries can map them (exit codes, HTTP status).
enum class ErrorKind {
  kInvalidArgument,  // a caller or user passed something wrong (bad flag, bad shape)
  kInvalidFile,      // a file on disk is malformed (truncated safetensors, bad JSON)
  kIo,               // the OS refused (open, mmap, rename, disk full)
  kUnsupported,      // valid but not supported by qaft (yet)
  kInternal,         // a broken invariant: a bug in qaft
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string where, std::string message, std::string hint = {});

  ErrorKind kind() const { return kind_; }
  const std::string& where() const { return where_; }      // "src/io/safetensors.cpp:120"
  const std::string& message() const { return message_; }  // what went wrong
  const std::string& hint() const { return hint_; }        // what to do about it ("" if none)

 private:
  ErrorKind kind_;
  std::string where_;
  std::string message_;
  std::string hint_;
};

namespace detail {
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, std::string message,
                              std::string hint);
// Strips the build directory prefix so messages show "src/io/x.cpp:12".
const char* short_path(const char* file);
}  // namespace detail

}  // namespace qaft

// QAFT_CHECK(cond, "fmt message {}", args...) — throws kInvalidArgument with file:line.
#define QAFT_CHECK(cond, ...)                                                                \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      ::qaft::detail::throw_error(::qaft::ErrorKind::kInvalidArgument, __FILE__, __LINE__,   \
                                  ::fmt::format(__VA_ARGS__), {});                          \
  } while (0)

// QAFT_CHECK_HINT(cond, kind, "hint", "fmt message {}", args...) — full control over kind and hint.
#define QAFT_CHECK_HINT(cond, kind, hint, ...)                                              \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      ::qaft::detail::throw_error(kind, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__), hint); \
  } while (0)

// QAFT_FAIL(kind, "hint", "fmt message {}", args...) — unconditional.
#define QAFT_FAIL(kind, hint, ...) \
  ::qaft::detail::throw_error(kind, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__), hint)
