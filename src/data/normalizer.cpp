// Normalizer steps (see tokenizer_impl.h). Unicode normalization forms and lower-casing come from
// ICU; an ASCII or already-normalized text is passed through without a copy into ICU.
#include "core/error.h"
#include "data/tokenizer_impl.h"
#include "data/utf8.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

namespace qaft::tok {
namespace {

const icu::Normalizer2& instance(NormalizerStep::Kind kind) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (kind) {
    case NormalizerStep::Kind::kNfc: n = icu::Normalizer2::getNFCInstance(status); break;
    case NormalizerStep::Kind::kNfd: n = icu::Normalizer2::getNFDInstance(status); break;
    case NormalizerStep::Kind::kNfkc: n = icu::Normalizer2::getNFKCInstance(status); break;
    default: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  QAFT_CHECK_HINT(U_SUCCESS(status) && n, ErrorKind::kInternal, "check the ICU installation",
                  "ICU normalizer unavailable: {}", u_errorName(status));
  return *n;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  return true;
}

void unicode_normalize(NormalizerStep::Kind kind, std::string& s) {
  if (is_ascii(s)) return;  // ASCII is invariant under all four forms
  const icu::Normalizer2& n = instance(kind);
  UErrorCode status = U_ZERO_ERROR;
  const icu::StringPiece in(s.data(), static_cast<int32_t>(s.size()));
  if (n.isNormalizedUTF8(in, status) && U_SUCCESS(status)) return;
  status = U_ZERO_ERROR;
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  icu::StringByteSink<std::string> sink(&out);
  n.normalizeUTF8(0, in, sink, nullptr, status);
  QAFT_CHECK_HINT(U_SUCCESS(status), ErrorKind::kInternal, "", "ICU normalization failed: {}",
                  u_errorName(status));
  s.swap(out);
}

void lowercase(std::string& s) {
  if (is_ascii(s)) {
    for (char& c : s)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return;
  }
  UErrorCode status = U_ZERO_ERROR;
  std::string out;
  out.reserve(s.size());
  icu::StringByteSink<std::string> sink(&out);
  icu::CaseMap::utf8ToLower("", 0, icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), sink,
                            nullptr, status);
  QAFT_CHECK_HINT(U_SUCCESS(status), ErrorKind::kInternal, "", "ICU lower-casing failed: {}",
                  u_errorName(status));
  s.swap(out);
}

void replace(const Regex& pattern, const std::string& content, std::string& s) {
  std::string out;
  size_t last = 0;
  pattern.for_each_match(s, [&](size_t b, size_t e) {
    out.append(s, last, b - last);
    out.append(content);
    last = e;
  });
  if (last == 0 && out.empty()) return;  // no match
  out.append(s, last, std::string::npos);
  s.swap(out);
}

void strip(bool left, bool right, std::string& s) {
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e) {
      const utf8::Step st = utf8::decode_step(s, b);
      if (!st.valid || !utf8::is_white_space(st.code_point)) break;
      b += static_cast<size_t>(st.length);
    }
  }
  if (right) {
    while (e > b) {
      size_t k = e - 1;
      while (k > b && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
      const utf8::Step st = utf8::decode_step(s, k);
      if (!st.valid || !utf8::is_white_space(st.code_point)) break;
      e = k;
    }
  }
  s = s.substr(b, e - b);
}

}  // namespace

void Normalizer::apply(std::string_view text, std::string& out) const {
  out.assign(text);
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::kNfc:
      case NormalizerStep::Kind::kNfd:
      case NormalizerStep::Kind::kNfkc:
      case NormalizerStep::Kind::kNfkd: unicode_normalize(step.kind, out); break;
      case NormalizerStep::Kind::kReplace: replace(*step.pattern, step.content, out); break;
      case NormalizerStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, step.content);
        break;
      case NormalizerStep::Kind::kLowercase: lowercase(out); break;
      case NormalizerStep::Kind::kStrip: strip(step.strip_left, step.strip_right, out); break;
    }
  }
}

}  // namespace qaft::tok
