// JSONL datasets: the bounded line reader, per-line validation and tokenization, statistics.
// See dataset.h and docs/data.md.
#include "data/dataset.h"

#include "core/error.h"
#include "data/utf8.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <unordered_set>

namespace qaft {

const char* data_error_class_name(DataErrorClass c) {
  switch (c) {
    case DataErrorClass::kLineTooLong: return "line-too-long";
    case DataErrorClass::kInvalidUtf8: return "invalid-utf8";
    case DataErrorClass::kInvalidJson: return "invalid-json";
    case DataErrorClass::kNotObject: return "not-an-object";
    case DataErrorClass::kBadSchema: return "bad-schema";
    case DataErrorClass::kUnknownRole: return "unknown-role";
    case DataErrorClass::kEmptyContent: return "empty-content";
    case DataErrorClass::kNoAssistant: return "no-assistant-turn";
    case DataErrorClass::kBadWeight: return "bad-weight";
    case DataErrorClass::kTooLong: return "too-long";
    case DataErrorClass::kDuplicate: return "duplicate";
    case DataErrorClass::kEmptyFile: return "empty-file";
    case DataErrorClass::kCount: break;
  }
  return "?";
}

double DatasetStats::epoch_seconds(double tokens_per_second) const {
  return tokens_per_second > 0 ? static_cast<double>(tokens) / tokens_per_second : 0.0;
}

// ---- LineReader ---------------------------------------------------------------------------------

LineReader::LineReader(const std::filesystem::path& path, size_t max_line_bytes)
    : path_(path.string()), max_(max_line_bytes), buf_(size_t{1} << 20) {
  f_ = std::fopen(path_.c_str(), "rb");
  QAFT_CHECK_HINT(f_ != nullptr, ErrorKind::kIo, "check the path and its permissions",
                  "cannot open {}: {}", path_, std::strerror(errno));
}

LineReader::~LineReader() {
  if (f_) std::fclose(f_);
}

bool LineReader::fill() {
  if (eof_) return false;
  pos_ = 0;
  end_ = std::fread(buf_.data(), 1, buf_.size(), f_);
  if (end_ == 0) {
    QAFT_CHECK_HINT(!std::ferror(f_), ErrorKind::kIo, "", "cannot read {}", path_);
    eof_ = true;
    return false;
  }
  return true;
}

bool LineReader::next(std::string& line, bool& too_long) {
  line.clear();
  too_long = false;
  bool any = false;  // a byte (or the newline) of this line was seen
  for (;;) {
    if (pos_ == end_ && !fill()) break;
    const char* begin = buf_.data() + pos_;
    const void* nl = std::memchr(begin, '\n', end_ - pos_);
    const size_t n = nl ? static_cast<size_t>(static_cast<const char*>(nl) - begin) : end_ - pos_;
    any = true;
    if (!too_long) {
      const size_t room = max_ - std::min(max_, line.size());
      line.append(begin, std::min(n, room));
      if (n > room) too_long = true;
    }
    pos_ += n;
    if (nl) {
      ++pos_;
      break;
    }
  }
  if (!any) return false;
  if (!too_long && !line.empty() && line.back() == '\r') line.pop_back();
  ++line_no_;
  return true;
}

// ---- validation ---------------------------------------------------------------------------------

namespace {

bool fail(DataError& e, int64_t line, DataErrorClass kind, std::string message) {
  e = DataError{line, kind, std::move(message)};
  return false;
}

bool parse_line(const std::string& text, int64_t line, nlohmann::json& j, DataError& e) {
  const size_t bad = utf8::first_invalid(text);
  if (bad != std::string::npos)
    return fail(e, line, DataErrorClass::kInvalidUtf8, fmt::format("ill-formed UTF-8 at byte {}", bad));
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& x) {
    std::string m = x.what();
    const size_t p = m.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] " prefix
    return fail(e, line, DataErrorClass::kInvalidJson, p == std::string::npos ? m : m.substr(p + 2));
  }
  if (!j.is_object())
    return fail(e, line, DataErrorClass::kNotObject,
                fmt::format("expected a JSON object, got {}", j.type_name()));
  return true;
}

bool record_to_example(const nlohmann::json& j, int64_t line, const ChatTemplate& tpl,
                       const Tokenizer& tok, const DatasetOptions& o, Example& ex, DataError& e) {
  ex = Example{};
  ex.line = line;
  if (auto w = j.find("weight"); w != j.end()) {
    if (!w->is_number() || !std::isfinite(w->get<double>()) || w->get<double>() < 0)
      return fail(e, line, DataErrorClass::kBadWeight,
                  fmt::format("\"weight\" must be a finite number >= 0, got {}", w->dump()));
    ex.weight = w->get<float>();
  }
  if (auto m = j.find("messages"); m != j.end()) {
    if (!m->is_array())
      return fail(e, line, DataErrorClass::kBadSchema, "\"messages\" must be an array");
    std::vector<ChatMessage> msgs;
    bool assistant = false;
    for (size_t i = 0; i < m->size(); ++i) {
      const nlohmann::json& x = (*m)[i];
      if (!x.is_object())
        return fail(e, line, DataErrorClass::kBadSchema, fmt::format("messages[{}] is not an object", i));
      auto r = x.find("role");
      if (r == x.end() || !r->is_string())
        return fail(e, line, DataErrorClass::kBadSchema, fmt::format("messages[{}] has no string \"role\"", i));
      const std::string role = r->get<std::string>();
      if (role != "system" && role != "user" && role != "assistant")
        return fail(e, line, DataErrorClass::kUnknownRole,
                    fmt::format("messages[{}]: unknown role \"{}\" (expected system, user or assistant)", i, role));
      auto c = x.find("content");
      if (c == x.end() || c->is_null())
        return fail(e, line, DataErrorClass::kEmptyContent, fmt::format("messages[{}] ({}) has no \"content\"", i, role));
      if (!c->is_string())
        return fail(e, line, DataErrorClass::kBadSchema,
                    fmt::format("messages[{}]: \"content\" must be a string, got {}", i, c->type_name()));
      if (c->get_ref<const std::string&>().empty())
        return fail(e, line, DataErrorClass::kEmptyContent, fmt::format("messages[{}] ({}) has empty \"content\"", i, role));
      assistant = assistant || role == "assistant";
      msgs.push_back({role, c->get<std::string>()});
    }
    if (!assistant)
      return fail(e, line, DataErrorClass::kNoAssistant, "no assistant message: nothing to train on");
    RenderedChat r = tpl.render(msgs);
    ex.ids = std::move(r.ids);
    ex.loss_mask = std::move(r.loss_mask);
  } else if (j.contains("text")) {
    // Pretraining text: BOS (what the model adds) + text + EOS, every token trained on.
    auto t = j.find("text");
    if (t->is_null()) return fail(e, line, DataErrorClass::kEmptyContent, "no \"text\"");
    if (!t->is_string()) return fail(e, line, DataErrorClass::kBadSchema, "\"text\" must be a string");
    if (t->get_ref<const std::string&>().empty()) return fail(e, line, DataErrorClass::kEmptyContent, "empty \"text\"");
    ex.ids = tok.encode(t->get_ref<const std::string&>(), true);
    if (auto eos = tok.eos_id()) ex.ids.push_back(*eos);
    ex.loss_mask.assign(ex.ids.size(), 1);
  } else if (j.contains("prompt") || j.contains("completion")) {
    for (const char* k : {"prompt", "completion"}) {
      auto f = j.find(k);
      if (f == j.end() || f->is_null())
        return fail(e, line, DataErrorClass::kEmptyContent, fmt::format("no \"{}\"", k));
      if (!f->is_string())
        return fail(e, line, DataErrorClass::kBadSchema, fmt::format("\"{}\" must be a string", k));
    }
    const std::string& completion = j["completion"].get_ref<const std::string&>();
    if (completion.empty()) return fail(e, line, DataErrorClass::kEmptyContent, "empty \"completion\"");
    // BOS (what the model adds) + prompt, then completion + EOS trained on.
    ex.ids = tok.encode(j["prompt"].get_ref<const std::string&>(), true);
    ex.loss_mask.assign(ex.ids.size(), 0);
    EncodeOptions eo;
    eo.add_special_tokens = false;
    tok.encode_append(completion, eo, ex.ids);
    if (auto eos = tok.eos_id()) ex.ids.push_back(*eos);
    ex.loss_mask.resize(ex.ids.size(), 1);
  } else {
    return fail(e, line, DataErrorClass::kBadSchema,
                "expected \"messages\" (chat format), \"prompt\" and \"completion\", or \"text\" (pretraining)");
  }
  const auto n = static_cast<int64_t>(ex.ids.size());
  if (o.max_length > 0 && n > o.max_length) {
    if (o.on_overflow == OverflowPolicy::kSplit) return true;  // scan_dataset cuts it
    if (o.on_overflow == OverflowPolicy::kDrop)
      return fail(e, line, DataErrorClass::kTooLong,
                  fmt::format("{} tokens > max length {} (dropped; --on-overflow truncate keeps the start)",
                              n, o.max_length));
    ex.ids.resize(static_cast<size_t>(o.max_length));
    ex.loss_mask.resize(static_cast<size_t>(o.max_length));
    ex.truncated = true;
    bool any = false;
    for (uint8_t x : ex.loss_mask) any = any || x;
    if (!any)
      return fail(e, line, DataErrorClass::kTooLong,
                  fmt::format("{} tokens > max length {} and no trained token is left after truncation",
                              n, o.max_length));
  }
  return true;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

int length_bucket(int64_t n) {
  int k = 0;
  while (k + 1 < kLengthBuckets && (int64_t{1} << k) < n) ++k;
  return k;
}

}  // namespace

bool example_from_json(const std::string& text, int64_t line, const ChatTemplate& tpl,
                       const Tokenizer& tok, const DatasetOptions& options, Example& out,
                       DataError& error) {
  nlohmann::json j;
  return parse_line(text, line, j, error) && record_to_example(j, line, tpl, tok, options, out, error);
}

DatasetStats scan_dataset(const std::filesystem::path& path, const Tokenizer& tok,
                          const ChatTemplate& tpl, const DatasetOptions& o,
                          const std::function<void(Example&&)>& sink) {
  DatasetStats s;
  auto report = [&](DataError&& e) {
    ++s.errors;
    ++s.error_counts[static_cast<size_t>(e.kind)];
    if (s.first_errors.size() < o.max_errors_kept) s.first_errors.push_back(std::move(e));
    if (o.fail_fast) s.stopped_early = true;
  };
  LineReader reader(path, o.max_line_bytes);
  std::unordered_set<uint64_t> seen;
  std::string text;
  bool too_long = false;
  while (!s.stopped_early && reader.next(text, too_long)) {
    const int64_t line = reader.line_number();
    ++s.lines;
    if (too_long) {
      ++s.rows;
      report({line, DataErrorClass::kLineTooLong,
              fmt::format("line longer than {} bytes (raise the limit to read it)", o.max_line_bytes)});
      continue;
    }
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;  // blank line
    ++s.rows;
    nlohmann::json j;
    DataError e;
    Example ex;
    if (!parse_line(text, line, j, e) || !record_to_example(j, line, tpl, tok, o, ex, e)) {
      report(std::move(e));
      continue;
    }
    if (o.deduplicate && !seen.insert(fnv1a(j.dump())).second) {
      report({line, DataErrorClass::kDuplicate, "exact duplicate of an earlier line"});
      continue;
    }
    ++s.valid_rows;
    auto emit = [&](Example&& piece) {
      const auto n = static_cast<int64_t>(piece.ids.size());
      s.tokens += n;
      for (uint8_t x : piece.loss_mask) s.trainable_tokens += x;
      s.truncated += piece.truncated ? 1 : 0;
      s.max_example_tokens = std::max(s.max_example_tokens, n);
      ++s.length_histogram[static_cast<size_t>(length_bucket(n))];
      if (sink) sink(std::move(piece));
    };
    const auto len = static_cast<int64_t>(ex.ids.size());
    if (o.max_length <= 0 || len <= o.max_length) {
      emit(std::move(ex));
      continue;
    }
    for (int64_t b = 0; b < len; b += o.max_length) {  // kSplit: consecutive pieces
      const int64_t e_ = std::min(len, b + o.max_length);
      Example piece;
      piece.line = ex.line;
      piece.weight = ex.weight;
      piece.truncated = true;
      piece.ids.assign(ex.ids.begin() + b, ex.ids.begin() + e_);
      piece.loss_mask.assign(ex.loss_mask.begin() + b, ex.loss_mask.begin() + e_);
      if (std::find(piece.loss_mask.begin(), piece.loss_mask.end(), 1) != piece.loss_mask.end()) emit(std::move(piece));
    }
  }
  if (s.rows == 0) report({0, DataErrorClass::kEmptyFile, "the file holds no example"});
  return s;
}

nlohmann::json DatasetStats::to_json() const {
  const DatasetStats& s = *this;
  nlohmann::json j = {{"rows", s.rows},
                      {"valid_rows", s.valid_rows},
                      {"tokens", s.tokens},
                      {"trainable_tokens", s.trainable_tokens},
                      {"truncated", s.truncated},
                      {"errors", s.errors},
                      {"stopped_early", s.stopped_early},
                      {"max_example_tokens", s.max_example_tokens}};
  nlohmann::json counts = nlohmann::json::object();
  for (size_t c = 0; c < s.error_counts.size(); ++c)
    if (s.error_counts[c]) counts[data_error_class_name(static_cast<DataErrorClass>(c))] = s.error_counts[c];
  j["error_counts"] = counts;
  nlohmann::json first = nlohmann::json::array();
  for (const DataError& e : s.first_errors)
    first.push_back({{"line", e.line}, {"class", data_error_class_name(e.kind)}, {"message", e.message}});
  j["first_errors"] = first;
  nlohmann::json hist = nlohmann::json::array();
  for (size_t k = 0; k < s.length_histogram.size(); ++k)
    if (s.length_histogram[k]) hist.push_back({{"max_tokens", int64_t{1} << k}, {"examples", s.length_histogram[k]}});
  j["length_histogram"] = hist;
  return j;
}

}  // namespace qaft
