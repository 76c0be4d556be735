// PCRE2 wrapper for pre-tokenizer patterns (see regex.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/regex.h"

#include "core/error.h"
#include "data/utf8.h"

#include <pcre2.h>

#include <utility>

namespace qaft {
namespace {

constexpr const char* kPatternHint =
    "the pattern must be a regular expression PCRE2 accepts (the Oniguruma syntax Hugging Face "
    "tokenizers use is mostly the same)";

// The Unicode White_Space set as the inside of a character class.
constexpr std::string_view kWhiteSpaceClass =
    "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Per-thread matching state: PCRE2 match data (only the whole-match pair is read) and a JIT stack
// large enough for backtracking over long runs such as `\s+(?!\S)` on megabytes of spaces.
struct MatchScratch {
  pcre2_match_data* data = nullptr;        // receives the match offsets
  pcre2_match_context* context = nullptr;  // carries the JIT stack and the heap limit
  pcre2_jit_stack* jit_stack = nullptr;    // 64 KiB growing to 64 MiB

  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
    if (context && jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
    // The interpreter fallback keeps its backtracking frames on the heap; allow 1 GiB.
    if (context) pcre2_set_heap_limit(context, 1024 * 1024);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  QAFT_CHECK_HINT(s.data && s.context, ErrorKind::kIo, "", "out of memory creating PCRE2 match data");
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string Regex::rewrite_white_space(std::string_view p, const std::string& label) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      if (e == 'Q') {  // \Q...\E: copied verbatim
        const size_t end = p.find("\\E", i + 2);
        const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
        out.append(p.substr(i, stop - i));
        i = stop;
        continue;
      }
      if (e == 's') {
        if (in_class) out.append(kWhiteSpaceClass);
        else out.append("[").append(kWhiteSpaceClass).append("]");
        i += 2;
        continue;
      }
      if (e == 'S') {
        QAFT_CHECK_HINT(!in_class, ErrorKind::kUnsupported, kPatternHint,
                        "{}: \\S inside a character class is not supported in pattern {}", label, p);
        out.append("[^").append(kWhiteSpaceClass).append("]");
        i += 2;
        continue;
      }
      out.append(p.substr(i, 2));
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      ++i;
      // A ']' right after '[' or '[^' is a literal member.
      if (i < p.size() && p[i] == '^') out.push_back(p[i++]);
      if (i < p.size() && p[i] == ']') out.push_back(p[i++]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
    ++i;
  }
  return out;
}

Regex::Regex(std::string_view pattern, bool literal, std::string label)
    : pattern_(pattern), label_(std::move(label)) {
  const std::string source = literal ? std::string(pattern) : rewrite_white_space(pattern, label_);
  int err = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                                   options, &err, &offset, nullptr);
  if (!code)
    QAFT_FAIL(ErrorKind::kInvalidFile, kPatternHint, "{}: cannot compile pattern {:?}: {} (at offset {})",
              label_, std::string(pattern), pcre2_message(err), offset);
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

Regex::Regex(Regex&& o) noexcept
    : pattern_(std::move(o.pattern_)), label_(std::move(o.label_)), code_(o.code_), jit_(o.jit_) {
  o.code_ = nullptr;
}

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
    pattern_ = std::move(o.pattern_);
    label_ = std::move(o.label_);
    code_ = std::exchange(o.code_, nullptr);
    jit_ = o.jit_;
  }
  return *this;
}

bool Regex::find(std::string_view subject, size_t start, size_t* begin, size_t* end) const {
  MatchScratch& s = scratch();
  auto* code = static_cast<const pcre2_code*>(code_);
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc;
  if (jit_) {
    rc = pcre2_jit_match(code, subj, subject.size(), start, PCRE2_NO_UTF_CHECK, s.data, s.context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // retry in the interpreter, whose frames live on the heap
      rc = pcre2_match(code, subj, subject.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, s.data,
                       s.context);
  } else {
    rc = pcre2_match(code, subj, subject.size(), start, PCRE2_NO_UTF_CHECK, s.data, s.context);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0)
    QAFT_FAIL(ErrorKind::kUnsupported, "split the text into smaller pieces",
              "{}: matching pattern {:?} on {} bytes failed: {}", label_, pattern_, subject.size(),
              pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
  *begin = ov[0];
  *end = ov[1];
  return true;
}

size_t Regex::next_char(std::string_view s, size_t i) {
  if (i >= s.size()) return i + 1;
  return i + static_cast<size_t>(utf8::sequence_length(static_cast<uint8_t>(s[i])));
}

}  // namespace qaft
