#include "core/error.h"

#include <cstring>

namespace qaft {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kInvalidFile: return "invalid file";
    case ErrorKind::kIo: return "I/O error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

static std::string compose(const std::string& where, const std::string& message,
                           const std::string& hint) {
  std::string s = message + " [" + where + "]";
  if (!hint.empty()) s += "\n  hint: " + hint;
  return s;
}

Error::Error(ErrorKind kind, std::string where, std::string message, std::string hint)
    : std::runtime_error(compose(where, message, hint)),
      kind_(kind),
      where_(std::move(where)),
      message_(std::move(message)),
      hint_(std::move(hint)) {}

namespace detail {

const char* short_path(const char* file) {
  for (const char* marker : {"/src/", "/apps/", "/tests/", "/bench/"}) {
    if (const char* p = std::strstr(file, marker)) return p + 1;
  }
  return file;
}

void throw_error(ErrorKind kind, const char* file, int line, std::string message, std::string hint) {
  throw Error(kind, fmt::format("{}:{}", short_path(file), line), std::move(message), std::move(hint));
}

}  // namespace detail
}  // namespace qaft
