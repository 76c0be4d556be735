// Regex — a PCRE2 pattern compiled with UTF + UCP and JIT, for pre-tokenizer splits.
//
// Hugging Face tokenizer.json patterns are written for Oniguruma (Rust) and use \p{L}, \p{N},
// lookahead `\s+(?!\S)` and case-insensitive groups `(?i:'s|'t)`; PCRE2 reads the same syntax.
// One difference is corrected when the pattern is compiled: with UCP, PCRE2's \s also matches
// U+180E (MONGOLIAN VOWEL SEPARATOR), which Oniguruma and Rust do not count as white space, so \s
// and \S are rewritten to the explicit Unicode White_Space set. Matching is thread-safe: each thread
// keeps its own match data and JIT stack.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qaft {

class Regex {
 public:
  // Compiles `pattern` (a literal string when `literal`). `label` names the pattern's source in
  // errors ("tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex"). Throws kInvalidFile
  // when PCRE2 rejects the pattern.
  Regex(std::string_view pattern, bool literal, std::string label);
  ~Regex();
  Regex(Regex&& o) noexcept;
  Regex& operator=(Regex&& o) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in subject[start..) (start on a character boundary; subject valid
  // UTF-8, which is not re-checked). Returns false when there is none; otherwise sets
  // [*begin, *end). Lookarounds see the whole of `subject` and nothing beyond it.
  bool find(std::string_view subject, size_t start, size_t* begin, size_t* end) const;

  // Calls fn(begin, end) for every non-empty match, left to right (an empty match advances the
  // search by one character, as JavaScript's matchAll and Rust's find_iter do).
  template <typename Fn>
  void for_each_match(std::string_view subject, Fn&& fn) const {
    size_t pos = 0, b = 0, e = 0;
    while (pos <= subject.size() && find(subject, pos, &b, &e)) {
      if (e > b) {
        fn(b, e);
        pos = e;
      } else {
        pos = next_char(subject, b);
      }
    }
  }

  const std::string& pattern() const { return pattern_; }

  // The pattern with \s / \S replaced by the Unicode White_Space set (exposed for tests).
  static std::string rewrite_white_space(std::string_view pattern, const std::string& label);

 private:
  static size_t next_char(std::string_view s, size_t i);

  std::string pattern_;  // as given (for messages)
  std::string label_;    // where it came from (for messages)
  void* code_ = nullptr; // pcre2_code_8*
  bool jit_ = false;     // JIT compilation succeeded
};

}  // namespace qaft
