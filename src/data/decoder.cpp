// Decoding: the tokenizer.json decoder chain (ByteLevel, Replace, Fuse, Strip, ByteFallback) with
// the semantics of Hugging Face tokenizers, transformers' clean_up_tokenization_spaces, and
// IncrementalDecoder for streaming.
#include "core/error.h"
#include "data/byte_level.h"
#include "data/tokenizer_impl.h"
#include "data/utf8.h"

namespace qaft::tok {
namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t pos = s.find(from);
  if (pos == std::string::npos) return;
  std::string out;
  size_t last = 0;
  while (pos != std::string::npos) {
    out.append(s, last, pos - last);
    out.append(to);
    last = pos + from.size();
    pos = s.find(from, last);
  }
  out.append(s, last, std::string::npos);
  s.swap(out);
}

// "<0x41>" → 0x41; -1 for anything else.
int byte_fallback_value(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (char c : t.substr(3, 2)) {
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

void step_byte_level(std::vector<std::string>& tokens) {
  std::string bytes;
  for (const std::string& t : tokens) {
    if (auto b = byte_level::decode(t)) bytes += *b;
    else bytes += t;  // a token outside the byte alphabet (an added token) stands for itself
  }
  tokens.assign(1, utf8::repair(bytes));
}

void step_byte_fallback(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string pending;
  auto flush = [&] {
    if (pending.empty()) return;
    if (utf8::is_valid(pending)) {
      out.push_back(pending);
    } else {
      for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    pending.clear();
  };
  for (std::string& t : tokens) {
    const int v = byte_fallback_value(t);
    if (v >= 0) {
      pending.push_back(static_cast<char>(v));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  tokens.swap(out);
}

void step_strip(const DecoderStep& step, std::vector<std::string>& tokens) {
  const std::string& c = step.content;
  for (std::string& t : tokens) {
    size_t b = 0, e = t.size();
    for (int k = 0; k < step.start && e - b >= c.size() && t.compare(b, c.size(), c) == 0; ++k)
      b += c.size();
    for (int k = 0; k < step.stop && e - b >= c.size() && t.compare(e - c.size(), c.size(), c) == 0; ++k)
      e -= c.size();
    t = t.substr(b, e - b);
  }
}

}  // namespace

std::string Decoder::run(std::vector<std::string>& tokens) const {
  if (!present) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) joined.push_back(' ');
      joined += tokens[i];
    }
    return joined;
  }
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::kByteLevel: step_byte_level(tokens); break;
      case DecoderStep::Kind::kByteFallback: step_byte_fallback(tokens); break;
      case DecoderStep::Kind::kStrip: step_strip(step, tokens); break;
      case DecoderStep::Kind::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens) {
          std::string out;
          size_t last = 0;
          step.pattern->for_each_match(t, [&](size_t b, size_t e) {
            out.append(t, last, b - last);
            out.append(step.content);
            last = e;
          });
          if (last == 0 && out.empty()) continue;
          out.append(t, last, std::string::npos);
          t.swap(out);
        }
        break;
    }
  }
  std::string joined;
  for (const std::string& t : tokens) joined += t;
  return joined;
}

std::string clean_up_tokenization(std::string_view text) {
  std::string s(text);
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) replace_all(s, from, to);
  return s;
}

}  // namespace qaft::tok

namespace qaft {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

std::string IncrementalDecoder::push(int32_t id) {
  if (tokenizer_->is_streamable()) {
    tokenizer_->append_token_bytes(id, skip_special_, pending_);
    const size_t n = utf8::complete_prefix(pending_);
    if (n == 0) return {};
    std::string out = utf8::repair(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
  }
  // General decoders (Strip, Replace, ...) may depend on neighbouring tokens: decode a window that
  // starts a few tokens back and emit what grew, unless it ends in an incomplete character.
  ids_.push_back(id);
  const std::span<const int32_t> all(ids_);
  const std::string before = tokenizer_->decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tokenizer_->decode(all.subspan(prefix_), skip_special_);
  if (now.size() <= before.size() || now.compare(0, before.size(), before) != 0 ||
      (now.size() >= 3 && now.compare(now.size() - 3, 3, "\xEF\xBF\xBD") == 0))
    return {};
  std::string out = now.substr(before.size());
  prefix_ = read_;
  read_ = ids_.size();
  if (prefix_ > 64) {  // keep the window bounded
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
  return out;
}

std::string IncrementalDecoder::push(std::span<const int32_t> ids) {
  std::string out;
  for (int32_t id : ids) out += push(id);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  if (tokenizer_->is_streamable()) {
    out = utf8::repair(pending_);
  } else if (read_ < ids_.size()) {
    const std::span<const int32_t> all(ids_);
    const std::string before = tokenizer_->decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
    const std::string now = tokenizer_->decode(all.subspan(prefix_), skip_special_);
    if (now.size() > before.size() && now.compare(0, before.size(), before) == 0)
      out = now.substr(before.size());
  }
  reset();
  return out;
}

void IncrementalDecoder::reset() {
  pending_.clear();
  ids_.clear();
  prefix_ = read_ = 0;
}

}  // namespace qaft
