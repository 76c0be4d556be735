// Tokenizer: encode (added tokens → normalizer → pre-tokenizer → BPE → post-processor) and decode.
// Loading lives in tokenizer_json.cpp.
#include "core/error.h"
#include "data/byte_level.h"
#include "data/tokenizer_impl.h"
#include "data/utf8.h"

#include <algorithm>

namespace qaft::tok {

void AddedTokenMatcher::add(std::string_view content, int32_t index) {
  if (content.empty()) return;
  int32_t node = 0;
  for (char ch : content) {
    const auto b = static_cast<uint8_t>(ch);
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& kids = nodes_[static_cast<size_t>(node)].children;
      kids.insert(std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{0})),
                  {b, next});
    }
    node = next;
  }
  if (nodes_[static_cast<size_t>(node)].token < 0) nodes_[static_cast<size_t>(node)].token = index;
  first_[static_cast<uint8_t>(content[0])] = true;
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  const auto& kids = nodes_[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{0}));
  return it != kids.end() && it->first == b ? it->second : -1;
}

namespace {

// Word characters for single_word: letters, digits (of any script) and '_'; approximated here by
// ASCII alphanumerics plus every non-ASCII code point that is not white space.
bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !utf8::is_white_space(c);
}

char32_t char_before(std::string_view s, size_t i) {
  size_t k = i - 1;
  while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
  return utf8::decode_step(s, k).code_point;
}

}  // namespace

bool AddedTokenMatcher::longest(std::string_view text, size_t i,
                                const std::vector<AddedToken>& tokens, size_t* end,
                                int32_t* index) const {
  int32_t node = 0;
  bool found = false;
  for (size_t j = i; j < text.size(); ++j) {
    node = child(node, static_cast<uint8_t>(text[j]));
    if (node < 0) break;
    const int32_t t = nodes_[static_cast<size_t>(node)].token;
    if (t < 0) continue;
    if (tokens[static_cast<size_t>(t)].single_word) {
      const bool left_ok = i == 0 || !is_word_char(char_before(text, i));
      const bool right_ok = j + 1 == text.size() || !is_word_char(utf8::decode_step(text, j + 1).code_point);
      if (!left_ok || !right_ok) continue;
    }
    *end = j + 1;
    *index = t;
    found = true;
  }
  return found;
}

size_t AddedTokenMatcher::strip_back(std::string_view text, size_t floor, size_t i) {
  while (i > floor) {
    size_t k = i - 1;
    while (k > floor && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
    if (!utf8::is_white_space(utf8::decode_step(text, k).code_point)) break;
    i = k;
  }
  return i;
}

size_t AddedTokenMatcher::strip_front(std::string_view text, size_t i) {
  while (i < text.size()) {
    const utf8::Step st = utf8::decode_step(text, i);
    if (!utf8::is_white_space(st.code_point)) break;
    i += static_cast<size_t>(st.length);
  }
  return i;
}

}  // namespace qaft::tok

namespace qaft {

void Tokenizer::Impl::encode_text(std::string_view text, bool parse_special,
                                  std::vector<int32_t>& out) const {
  thread_local std::string normalized;
  thread_local std::deque<std::string> arena;
  thread_local std::vector<std::string_view> pieces;
  std::string_view norm = text;
  if (!normalizer.steps.empty()) {
    normalizer.apply(text, normalized);
    norm = normalized;
  }
  arena.clear();
  pieces.clear();
  const tok::AddedTokenMatcher& m = parse_special ? match_normalized : match_normalized_nonspecial;
  auto pre_tokenize = [&](size_t b, size_t e) {
    const size_t first = pieces.size();
    pre_tokenizer.split(norm.substr(b, e - b), pieces, arena);
    for (size_t k = first; k < pieces.size(); ++k) model.encode_word(pieces[k], out);
  };
  if (m.empty()) {
    pre_tokenize(0, norm.size());
  } else {
    m.split(norm, added, pre_tokenize,
            [&](int32_t index) { out.push_back(added[static_cast<size_t>(index)].id); });
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  EncodeOptions o;
  o.add_special_tokens = add_special_tokens;
  return encode(text, o);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_append(text, options, out);
  return out;
}

void Tokenizer::encode_append(std::string_view text, const EncodeOptions& options,
                              std::vector<int32_t>& out) const {
  const Impl& t = *impl_;
  const size_t bad = utf8::first_invalid(text);
  QAFT_CHECK(bad == std::string_view::npos,
             "text to encode is not valid UTF-8 (byte 0x{:02X} at offset {})",
             static_cast<uint8_t>(text[bad == std::string_view::npos ? 0 : bad]), bad);
  if (options.add_special_tokens) {
    if (t.post_processor.from_template) out.insert(out.end(), t.post_processor.prefix.begin(), t.post_processor.prefix.end());
    else if (t.config.add_bos_token && t.bos_id) out.push_back(*t.bos_id);
  }
  const bool parse_special = !options.split_special_tokens;
  const tok::AddedTokenMatcher& m = parse_special ? t.match_raw : t.match_raw_nonspecial;
  if (m.empty()) {
    t.encode_text(text, parse_special, out);
  } else {
    m.split(
        text, t.added,
        [&](size_t b, size_t e) { t.encode_text(text.substr(b, e - b), parse_special, out); },
        [&](int32_t index) { out.push_back(t.added[static_cast<size_t>(index)].id); });
  }
  if (options.add_special_tokens) {
    if (t.post_processor.from_template) out.insert(out.end(), t.post_processor.suffix.begin(), t.post_processor.suffix.end());
    else if (t.config.add_eos_token && t.eos_id) out.push_back(*t.eos_id);
  }
}

namespace {

void check_id(const Tokenizer::Impl& t, int32_t id) {
  QAFT_CHECK(id >= 0 && id < t.vocab_size, "token id {} is outside the vocabulary [0, {})", id,
             t.vocab_size);
}

}  // namespace

const std::string& Tokenizer::id_to_token(int32_t id) const {
  const Impl& t = *impl_;
  check_id(t, id);
  const int32_t a = t.added_index_of_id[static_cast<size_t>(id)];
  if (a >= 0) return t.added[static_cast<size_t>(a)].content;
  static const std::string kEmpty;
  return static_cast<size_t>(id) < t.model.id_to_text.size() ? t.model.id_to_text[static_cast<size_t>(id)] : kEmpty;
}

bool Tokenizer::is_special(int32_t id) const {
  const Impl& t = *impl_;
  if (id < 0 || id >= t.vocab_size) return false;
  const int32_t a = t.added_index_of_id[static_cast<size_t>(id)];
  return a >= 0 && t.added[static_cast<size_t>(a)].special;
}

void Tokenizer::append_token_bytes(int32_t id, bool skip_special_tokens, std::string& out) const {
  const Impl& t = *impl_;
  check_id(t, id);
  QAFT_CHECK(t.decoder.simple_byte_level, "append_token_bytes needs a ByteLevel decoder");
  if (skip_special_tokens && is_special(id)) return;
  const std::string& b = t.decoded_bytes[static_cast<size_t>(id)];
  QAFT_CHECK(!b.empty() || !id_to_token(id).empty(), "token id {} is not in the vocabulary", id);
  out += b;
}

bool Tokenizer::is_streamable() const {
  return impl_->decoder.simple_byte_level && !impl_->config.clean_up_tokenization_spaces;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& t = *impl_;
  std::string text;
  if (t.decoder.simple_byte_level) {
    std::string bytes;
    for (int32_t id : ids) {
      check_id(t, id);
      if (skip_special_tokens && is_special(id)) continue;
      const std::string& b = t.decoded_bytes[static_cast<size_t>(id)];
      QAFT_CHECK(!b.empty() || !id_to_token(id).empty(), "token id {} is not in the vocabulary", id);
      bytes += b;
    }
    text = utf8::repair(bytes);
  } else {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const std::string& s = id_to_token(id);
      QAFT_CHECK(!s.empty(), "token id {} is not in the vocabulary", id);
      if (skip_special_tokens && is_special(id)) continue;
      tokens.push_back(s);
    }
    text = utf8::repair(t.decoder.run(tokens));
  }
  if (t.config.clean_up_tokenization_spaces) text = tok::clean_up_tokenization(text);
  return text;
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const Impl& t = *impl_;
  if (auto it = t.added_by_content.find(token); it != t.added_by_content.end()) return it->second;
  if (t.model.byte_level) {
    // The vocabulary is keyed by raw bytes; look the written form ("Ġhello") up through them.
    if (auto bytes = byte_level::decode(token)) {
      if (auto it = t.model.vocab.find(*bytes); it != t.model.vocab.end()) return it->second;
    }
    if (auto it = t.model.text_only.find(token); it != t.model.text_only.end()) return it->second;
    return std::nullopt;
  }
  if (auto it = t.model.vocab.find(token); it != t.model.vocab.end()) return it->second;
  return std::nullopt;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  const Impl& t = *impl_;
  QAFT_CHECK(utf8::is_valid(text), "text to pre-tokenize is not valid UTF-8");
  std::vector<std::string> out;
  std::string normalized;
  std::deque<std::string> arena;
  std::vector<std::string_view> pieces;
  auto on_token = [&](int32_t index) { out.push_back(t.added[static_cast<size_t>(index)].content); };
  auto on_text = [&](size_t b, size_t e) {
    const std::string_view section = text.substr(b, e - b);
    std::string_view norm = section;
    if (!t.normalizer.steps.empty()) {
      t.normalizer.apply(section, normalized);
      norm = normalized;
    }
    t.match_normalized.split(norm, t.added, [&](size_t x, size_t y) {
      pieces.clear();
      t.pre_tokenizer.split(norm.substr(x, y - x), pieces, arena);
      for (std::string_view p : pieces) out.emplace_back(p);
    }, on_token);
  };
  t.match_raw.split(text, t.added, on_text, on_token);
  return out;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const TokenizerConfig& Tokenizer::config() const { return impl_->config; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad_id; }
const std::string& Tokenizer::source() const { return impl_->source; }
void Tokenizer::clear_cache() const { impl_->model.clear_cache(); }

}  // namespace qaft
