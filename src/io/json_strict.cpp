// Strict JSON parsing: duplicate keys and excessive nesting are errors, not silent surprises.
#include "io/json_strict.h"

#include "core/error.h"

#include <set>
#include <vector>

namespace qaft {
namespace {

constexpr const char* kHint =
    "the file is corrupt or was not written by a conforming writer; "
    "re-download or re-export it";

// Deepest nesting of {...}/[...] outside strings, or -1 as soon as it exceeds `limit`. A cheap
// pre-pass so that hostile input like "[[[[..." never reaches the DOM builder.
int nesting_depth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > limit) return -1;
      if (depth > deepest) deepest = depth;
    } else if (c == '}' || c == ']') {
      --depth;  // unbalanced input is the parser's to report
    }
  }
  return deepest;
}

// Drops nlohmann's "[json.exception.parse_error.101] " prefix, and cuts the message short: its
// "last read" part can quote a whole (huge) string token.
std::string plain_message(const char* what) {
  std::string s = what;
  if (s.starts_with("[json.exception.")) {
    auto close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  constexpr size_t kMax = 300;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1Fu;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0Fu;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07u;
    } else {
      return false;  // stray continuation byte or 0xF8..0xFF
    }
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len]) return false;       // overlong
    if (cp > 0x10FFFF) return false;                 // beyond Unicode
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;  // UTF-16 surrogate
    i += static_cast<size_t>(len);
  }
  return true;
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& label, int max_depth) {
  // nlohmann stops at a NUL byte as if the input ended there; JSON never contains one.
  const size_t nul = text.find('\0');
  QAFT_CHECK_HINT(nul == std::string_view::npos, ErrorKind::kInvalidFile, kHint,
                  "{}: not valid JSON: NUL byte at offset {}", label, nul);
  QAFT_CHECK_HINT(nesting_depth(text, max_depth) >= 0, ErrorKind::kInvalidFile, kHint,
                  "{}: JSON nested deeper than {} levels", label, max_depth);

  // One set of seen keys per open object; the parser reports keys of the innermost one.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;  // first duplicate key found ("" = none)
  bool found_duplicate = false;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && !found_duplicate) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        found_duplicate = true;
        duplicate = key.size() > 200 ? key.substr(0, 200) + "..." : key;
      }
    }
    return true;
  };

  nlohmann::json result;
  try {
    result = nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                   /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    QAFT_FAIL(ErrorKind::kInvalidFile, kHint, "{}: not valid JSON: {}", label,
              plain_message(e.what()));
  }
  QAFT_CHECK_HINT(!found_duplicate, ErrorKind::kInvalidFile, kHint,
                  "{}: duplicate key \"{}\" in a JSON object", label, duplicate);
  return result;
}

}  // namespace qaft
