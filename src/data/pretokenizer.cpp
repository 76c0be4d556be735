// Pre-tokenization: the Split steps of a tokenizer.json pre-tokenizer run over the pieces the
// previous step produced, each piece matched on its own (lookarounds do not see past it), with
// Hugging Face's delimiter behaviours (Removed, Isolated, MergedWithPrevious, MergedWithNext,
// Contiguous) and `invert`.
#include "data/tokenizer_impl.h"

#include <algorithm>

namespace qaft::tok {
namespace {

struct Span {
  size_t begin;   // byte offset in the subject
  size_t end;     // one past the last byte
  bool is_match;  // a delimiter (after `invert`)
};

// Applies one split step to `subject`, appending the resulting non-empty pieces.
void split_one(const PreTokenizerStep& step, std::string_view subject,
               std::vector<std::string_view>& out) {
  if (step.behavior == SplitBehavior::kIsolated) {
    // Every match and every gap is a piece of its own (with or without invert).
    size_t last = 0;
    step.regex.for_each_match(subject, [&](size_t b, size_t e) {
      if (b > last) out.push_back(subject.substr(last, b - last));
      out.push_back(subject.substr(b, e - b));
      last = e;
    });
    if (last < subject.size()) out.push_back(subject.substr(last));
    return;
  }
  std::vector<Span> spans;
  size_t last = 0;
  step.regex.for_each_match(subject, [&](size_t b, size_t e) {
    if (b > last) spans.push_back({last, b, step.invert});
    spans.push_back({b, e, !step.invert});
    last = e;
  });
  if (last < subject.size()) spans.push_back({last, subject.size(), step.invert});

  std::vector<Span> merged;
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.is_match) merged.push_back(s);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !merged.empty()) merged.back().end = s.end;
        else merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& s = spans[k];
        if (s.is_match && !previous_match && !merged.empty()) merged.back().begin = s.begin;
        else merged.push_back(s);
        previous_match = s.is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (!merged.empty() && s.is_match && previous_match) merged.back().end = s.end;
        else merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kIsolated: break;  // handled above
  }
  for (const Span& s : merged)
    if (s.end > s.begin) out.push_back(subject.substr(s.begin, s.end - s.begin));
}

std::string_view with_prefix_space(std::string_view piece, std::deque<std::string>& arena) {
  if (!piece.empty() && piece.front() == ' ') return piece;
  arena.push_back(std::string(" ").append(piece));
  return arena.back();
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces,
                         std::deque<std::string>& arena) const {
  if (text.empty()) return;
  const size_t first = pieces.size();
  if (steps.empty()) {
    pieces.push_back(byte_level_prefix_space ? with_prefix_space(text, arena) : text);
    return;
  }
  thread_local std::vector<std::string_view> current, next;
  current.assign(1, text);
  for (size_t k = 0; k < steps.size(); ++k) {
    const PreTokenizerStep& step = steps[k];
    std::vector<std::string_view>& dst = k + 1 == steps.size() ? pieces : next;
    if (&dst == &next) next.clear();
    for (std::string_view piece : current) {
      if (step.prefix_space) piece = with_prefix_space(piece, arena);
      split_one(step, piece, dst);
    }
    if (&dst == &next) current.swap(next);
  }
  if (byte_level_prefix_space) {
    for (size_t k = first; k < pieces.size(); ++k) pieces[k] = with_prefix_space(pieces[k], arena);
  }
}

}  // namespace qaft::tok
