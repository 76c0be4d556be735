// Loading tokenizer.json (+ tokenizer_config.json) into a Tokenizer.
//
// Every problem names the file and the JSON path of the offending value
// ("…/tokenizer.json: model.merges[17]: expected two tokens separated by one space"); a component
// type qaft does not implement is a kUnsupported error that names the type and what is supported.
#include "core/error.h"
#include "data/byte_level.h"
#include "data/file_util.h"
#include "data/tokenizer_impl.h"

#include <fmt/format.h>

#include <algorithm>
#include <system_error>

namespace qaft {
namespace {

using nlohmann::json;

constexpr const char* kFileHint =
    "the file must be a Hugging Face tokenizers tokenizer.json (as saved by tokenizers >= 0.13)";

// Reads typed values out of one JSON document, naming the file and path in every error.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& message) const {
    QAFT_FAIL(ErrorKind::kInvalidFile, kFileHint, "{}: {}: {}", file_, path, message);
  }
  [[noreturn]] void unsupported(const std::string& path, std::string_view what,
                                std::string_view type, std::string_view supported) const {
    QAFT_FAIL(ErrorKind::kUnsupported, fmt::format("qaft supports {}", supported),
              "{}: {}: {} type \"{}\" is not supported", file_, path, what, type);
  }

  // Member `key` of object `obj`; nullptr when absent or null.
  static const json* find(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  const json& need(const json& obj, const char* key, const std::string& path) const {
    const json* v = find(obj, key);
    if (!v) fail(path, fmt::format("missing \"{}\"", key));
    return *v;
  }
  const json& object(const json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, fmt::format("expected an object, found {}", v.type_name()));
    return v;
  }
  const json& array(const json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, fmt::format("expected an array, found {}", v.type_name()));
    return v;
  }
  std::string str(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, fmt::format("expected a string, found {}", v.type_name()));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const char* key, const std::string& path, bool dflt) const {
    const json* v = find(obj, key);
    if (!v) return dflt;
    if (!v->is_boolean())
      fail(path == "(root)" ? std::string(key) : path + "." + key,
           fmt::format("expected true or false, found {}", v->type_name()));
    return v->get<bool>();
  }
  int64_t integer(const json& v, const std::string& path, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) fail(path, fmt::format("expected an integer, found {}", v.type_name()));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(path, fmt::format("{} is outside [{}, {}]", x, lo, hi));
    return x;
  }
  std::string type_of(const json& v, const std::string& path) const {
    object(v, path);
    return str(need(v, "type", path), path + ".type");
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

json parse(std::string_view text, const std::string& file) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    const size_t at = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
    const size_t nl = text.rfind('\n', at == 0 ? 0 : at - 1);
    const size_t column = nl == std::string_view::npos ? at + 1 : at - nl;
    QAFT_FAIL(ErrorKind::kInvalidFile, "the file must be valid JSON (is it truncated?)",
              "{}: not valid JSON (line {}, column {}): {}", file, line, column, e.what());
  }
}

// A "pattern" object: {"Regex": "..."} or {"String": "..."}.
std::unique_ptr<Regex> read_pattern(const Reader& r, const json& v, const std::string& path) {
  r.object(v, path);
  if (const json* re = Reader::find(v, "Regex"))
    return std::make_unique<Regex>(r.str(*re, path + ".Regex"), false, r.file() + ": " + path + ".Regex");
  if (const json* s = Reader::find(v, "String"))
    return std::make_unique<Regex>(r.str(*s, path + ".String"), true, r.file() + ": " + path + ".String");
  r.fail(path, "expected {\"Regex\": ...} or {\"String\": ...}");
}

void read_normalizer(const Reader& r, const json& v, const std::string& path, tok::Normalizer& out) {
  using K = tok::NormalizerStep::Kind;
  const std::string type = r.type_of(v, path);
  tok::NormalizerStep step;
  if (type == "Sequence") {
    const json& list = r.array(r.need(v, "normalizers", path), path + ".normalizers");
    for (size_t i = 0; i < list.size(); ++i)
      read_normalizer(r, list[i], fmt::format("{}.normalizers[{}]", path, i), out);
    return;
  }
  if (type == "NFC") step.kind = K::kNfc;
  else if (type == "NFD") step.kind = K::kNfd;
  else if (type == "NFKC") step.kind = K::kNfkc;
  else if (type == "NFKD") step.kind = K::kNfkd;
  else if (type == "Lowercase") step.kind = K::kLowercase;
  else if (type == "Replace") {
    step.kind = K::kReplace;
    step.pattern = read_pattern(r, r.need(v, "pattern", path), path + ".pattern");
    step.content = r.str(r.need(v, "content", path), path + ".content");
  } else if (type == "Prepend") {
    step.kind = K::kPrepend;
    step.content = r.str(r.need(v, "prepend", path), path + ".prepend");
  } else if (type == "Strip") {
    step.kind = K::kStrip;
    step.strip_left = r.boolean(v, "strip_left", path, false);
    step.strip_right = r.boolean(v, "strip_right", path, false);
  } else {
    r.unsupported(path, "normalizer", type,
                  "the normalizers Sequence, NFC, NFD, NFKC, NFKD, Replace, Prepend, Lowercase, Strip");
  }
  out.steps.push_back(std::move(step));
}

// GPT-2's pattern, used by ByteLevel with use_regex (the default).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

tok::SplitBehavior read_behavior(const Reader& r, const json& v, const std::string& path) {
  const std::string b = r.str(v, path);
  if (b == "Removed") return tok::SplitBehavior::kRemoved;
  if (b == "Isolated") return tok::SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return tok::SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return tok::SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return tok::SplitBehavior::kContiguous;
  r.fail(path, fmt::format("unknown split behavior \"{}\" (expected Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext or Contiguous)", b));
}

void read_pre_tokenizer(const Reader& r, const json& v, const std::string& path,
                        tok::PreTokenizer& out) {
  const std::string type = r.type_of(v, path);
  if (out.byte_level)
    r.unsupported(path, "pre-tokenizer after ByteLevel", type,
                  "ByteLevel only as the last pre-tokenizer");
  if (type == "Sequence") {
    const json& list = r.array(r.need(v, "pretokenizers", path), path + ".pretokenizers");
    for (size_t i = 0; i < list.size(); ++i)
      read_pre_tokenizer(r, list[i], fmt::format("{}.pretokenizers[{}]", path, i), out);
    return;
  }
  if (type == "Split") {
    const json& p = r.need(v, "pattern", path);
    r.object(p, path + ".pattern");
    const bool literal = Reader::find(p, "String") != nullptr;
    const std::string text = r.str(r.need(p, literal ? "String" : "Regex", path + ".pattern"),
                                   path + ".pattern." + (literal ? "String" : "Regex"));
    tok::PreTokenizerStep step{Regex(text, literal, r.file() + ": " + path + ".pattern"),
                               read_behavior(r, r.need(v, "behavior", path), path + ".behavior"),
                               r.boolean(v, "invert", path, false), false};
    out.steps.push_back(std::move(step));
    return;
  }
  if (type == "Digits") {
    const bool individual = r.boolean(v, "individual_digits", path, false);
    out.steps.push_back({Regex(individual ? "\\p{N}" : "\\p{N}+", false, r.file() + ": " + path),
                         tok::SplitBehavior::kIsolated, false, false});
    return;
  }
  if (type == "ByteLevel") {
    const bool prefix = r.boolean(v, "add_prefix_space", path, true);
    if (r.boolean(v, "use_regex", path, true)) {
      out.steps.push_back({Regex(kGpt2Pattern, false, r.file() + ": " + path + " (GPT-2 pattern)"),
                           tok::SplitBehavior::kIsolated, false, prefix});
    } else {
      out.byte_level_prefix_space = prefix;
    }
    out.byte_level = true;
    return;
  }
  r.unsupported(path, "pre-tokenizer", type, "the pre-tokenizers Sequence, Split, ByteLevel, Digits");
}

void read_decoder(const Reader& r, const json& v, const std::string& path, tok::Decoder& out) {
  using K = tok::DecoderStep::Kind;
  const std::string type = r.type_of(v, path);
  if (type == "Sequence") {
    const json& list = r.array(r.need(v, "decoders", path), path + ".decoders");
    for (size_t i = 0; i < list.size(); ++i)
      read_decoder(r, list[i], fmt::format("{}.decoders[{}]", path, i), out);
    return;
  }
  tok::DecoderStep step;
  if (type == "ByteLevel") step.kind = K::kByteLevel;
  else if (type == "Fuse") step.kind = K::kFuse;
  else if (type == "ByteFallback") step.kind = K::kByteFallback;
  else if (type == "Replace") {
    step.kind = K::kReplace;
    step.pattern = read_pattern(r, r.need(v, "pattern", path), path + ".pattern");
    step.content = r.str(r.need(v, "content", path), path + ".content");
  } else if (type == "Strip") {
    step.kind = K::kStrip;
    step.content = r.str(r.need(v, "content", path), path + ".content");
    step.start = static_cast<int>(r.integer(r.need(v, "start", path), path + ".start", 0, 1 << 20));
    step.stop = static_cast<int>(r.integer(r.need(v, "stop", path), path + ".stop", 0, 1 << 20));
  } else {
    r.unsupported(path, "decoder", type, "the decoders Sequence, ByteLevel, Replace, Fuse, Strip, ByteFallback");
  }
  out.steps.push_back(std::move(step));
}

// Splits "a b" merges; Rust tokenizers require exactly one space.
std::pair<std::string, std::string> read_merge(const Reader& r, const json& m, const std::string& path) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
      r.fail(path, fmt::format("expected two tokens separated by one space, found \"{}\"", s));
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  r.fail(path, "expected \"left right\" or [\"left\", \"right\"]");
}

void read_model(const Reader& r, const json& v, bool byte_level, tok::BpeModel& m) {
  const std::string path = "model";
  r.object(v, path);
  const json* type = Reader::find(v, "type");
  if (type) {
    const std::string t = r.str(*type, "model.type");
    if (t != "BPE") r.unsupported("model.type", "model", t, "the BPE model");
  } else if (!Reader::find(v, "merges")) {
    r.fail(path, "missing \"type\"");
  }
  if (const json* d = Reader::find(v, "dropout"); d && (!d->is_number() || d->get<double>() > 0))
    r.unsupported("model.dropout", "BPE option", "dropout", "BPE without dropout (dropout: null)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* x = Reader::find(v, key);
    if (x && !r.str(*x, std::string("model.") + key).empty())
      r.unsupported(std::string("model.") + key, "BPE option", key, "byte-level BPE without subword affixes");
  }
  m.byte_level = byte_level;
  m.byte_fallback = r.boolean(v, "byte_fallback", path, false);
  m.ignore_merges = r.boolean(v, "ignore_merges", path, false);
  m.fuse_unk = r.boolean(v, "fuse_unk", path, false);

  const json& vocab = r.object(r.need(v, "vocab", path), "model.vocab");
  m.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string vpath = fmt::format("model.vocab[{}]", json(it.key()).dump());
    const auto id = static_cast<int32_t>(r.integer(it.value(), vpath, 0, (1 << 30)));
    if (m.id_to_text.size() <= static_cast<size_t>(id)) m.id_to_text.resize(static_cast<size_t>(id) + 1);
    m.id_to_text[static_cast<size_t>(id)] = it.key();
    if (byte_level) {
      if (auto bytes = byte_level::decode(it.key())) m.vocab.emplace(std::move(*bytes), id);
      else m.text_only.emplace(it.key(), id);
    } else {
      m.vocab.emplace(it.key(), id);
    }
  }
  auto lookup = [&](const std::string& text) -> int32_t {
    if (byte_level) {
      auto bytes = byte_level::decode(text);
      if (bytes) {
        auto it = m.vocab.find(*bytes);
        return it == m.vocab.end() ? -1 : it->second;
      }
      auto it = m.text_only.find(text);
      return it == m.text_only.end() ? -1 : it->second;
    }
    auto it = m.vocab.find(text);
    return it == m.vocab.end() ? -1 : it->second;
  };
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = m.vocab.find(std::string(1, static_cast<char>(b)));
      m.byte_ids[static_cast<size_t>(b)] = it == m.vocab.end() ? -1 : it->second;
    }
  }
  if (m.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      auto it = m.vocab.find(fmt::format("<0x{:02X}>", b));
      m.fallback_ids[static_cast<size_t>(b)] = it == m.vocab.end() ? -1 : it->second;
    }
  }
  if (const json* unk = Reader::find(v, "unk_token")) {
    const std::string u = r.str(*unk, "model.unk_token");
    m.unk_id = lookup(u);
    if (m.unk_id < 0) r.fail("model.unk_token", fmt::format("\"{}\" is not in model.vocab", u));
  }

  const json& merges = r.array(r.need(v, "merges", path), "model.merges");
  std::vector<std::pair<uint64_t, tok::MergeTable::Merge>> entries;
  entries.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string mpath = fmt::format("model.merges[{}]", i);
    auto [a, b] = read_merge(r, merges[i], mpath);
    const int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
    if (ia < 0 || ib < 0 || im < 0)
      r.fail(mpath, fmt::format("\"{}\" is not in model.vocab", ia < 0 ? a : ib < 0 ? b : a + b));
    entries.push_back({tok::MergeTable::pack(ia, ib), {static_cast<int32_t>(i), im}});
  }
  m.merges.build(entries);
}

void read_post_processor(const Reader& r, const json& v, const std::string& path,
                         tok::PostProcessor& out) {
  const std::string type = r.type_of(v, path);
  if (type == "ByteLevel") return;  // offsets only; no ids change
  if (type == "Sequence") {
    const json& list = r.array(r.need(v, "processors", path), path + ".processors");
    for (size_t i = 0; i < list.size(); ++i)
      read_post_processor(r, list[i], fmt::format("{}.processors[{}]", path, i), out);
    return;
  }
  if (type != "TemplateProcessing")
    r.unsupported(path, "post-processor", type, "the post-processors ByteLevel, TemplateProcessing, Sequence");
  out.from_template = true;
  const json& single = r.array(r.need(v, "single", path), path + ".single");
  const json& specials = r.object(r.need(v, "special_tokens", path), path + ".special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string ipath = fmt::format("{}.single[{}]", path, i);
    const json& item = r.object(single[i], ipath);
    if (const json* seq = Reader::find(item, "Sequence")) {
      const std::string id = r.str(r.need(*seq, "id", ipath + ".Sequence"), ipath + ".Sequence.id");
      if (id != "A" || seen_sequence) r.fail(ipath, "a single-sequence template must contain sequence A once");
      seen_sequence = true;
      continue;
    }
    const json& st = r.need(item, "SpecialToken", ipath);
    const std::string name = r.str(r.need(st, "id", ipath + ".SpecialToken"), ipath + ".SpecialToken.id");
    const json* spec = Reader::find(specials, name.c_str());
    if (!spec) r.fail(path + ".special_tokens", fmt::format("missing \"{}\"", name));
    const json& ids = r.array(r.need(*spec, "ids", path + ".special_tokens." + name),
                              path + ".special_tokens." + name + ".ids");
    for (size_t k = 0; k < ids.size(); ++k) {
      const auto id = static_cast<int32_t>(r.integer(ids[k], fmt::format("{}.special_tokens.{}.ids[{}]", path, name, k), 0, 1 << 30));
      (seen_sequence ? out.suffix : out.prefix).push_back(id);
    }
  }
  if (!seen_sequence) r.fail(path + ".single", "the template has no sequence A");
}

AddedToken read_added_token(const Reader& r, const json& v, const std::string& path) {
  r.object(v, path);
  AddedToken t;
  t.id = static_cast<int32_t>(r.integer(r.need(v, "id", path), path + ".id", 0, 1 << 30));
  t.content = r.str(r.need(v, "content", path), path + ".content");
  if (t.content.empty()) r.fail(path + ".content", "an added token cannot be empty");
  t.special = r.boolean(v, "special", path, false);
  t.lstrip = r.boolean(v, "lstrip", path, false);
  t.rstrip = r.boolean(v, "rstrip", path, false);
  t.single_word = r.boolean(v, "single_word", path, false);
  t.normalized = r.boolean(v, "normalized", path, !t.special);
  return t;
}

// A token in tokenizer_config.json: a string, or {"content": ...} (an AddedToken dump).
std::optional<std::string> config_token(const Reader& r, const json& cfg, const char* key) {
  const json* v = Reader::find(cfg, key);
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) return r.str(r.need(*v, "content", key), std::string(key) + ".content");
  r.fail(key, fmt::format("expected a string or an object with \"content\", found {}", v->type_name()));
}

void read_config(const Reader& r, const json& cfg, TokenizerConfig& c, std::vector<AddedToken>& added) {
  r.object(cfg, "(root)");
  c.raw = cfg;
  if (const json* v = Reader::find(cfg, "tokenizer_class")) c.tokenizer_class = r.str(*v, "tokenizer_class");
  c.bos_token = config_token(r, cfg, "bos_token");
  c.eos_token = config_token(r, cfg, "eos_token");
  c.pad_token = config_token(r, cfg, "pad_token");
  c.unk_token = config_token(r, cfg, "unk_token");
  c.add_bos_token = r.boolean(cfg, "add_bos_token", "(root)", false);
  c.add_eos_token = r.boolean(cfg, "add_eos_token", "(root)", false);
  c.clean_up_tokenization_spaces = r.boolean(cfg, "clean_up_tokenization_spaces", "(root)", false);
  if (const json* v = Reader::find(cfg, "model_max_length"); v && v->is_number_integer())
    c.model_max_length = v->get<int64_t>();
  if (const json* t = Reader::find(cfg, "chat_template")) {
    if (t->is_string()) {
      c.chat_template = t->get<std::string>();
    } else {
      const json& list = r.array(*t, "chat_template");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string p = fmt::format("chat_template[{}]", i);
        if (r.str(r.need(list[i], "name", p), p + ".name") == "default")
          c.chat_template = r.str(r.need(list[i], "template", p), p + ".template");
      }
    }
  }
  if (const json* dec = Reader::find(cfg, "added_tokens_decoder")) {
    r.object(*dec, "added_tokens_decoder");
    for (auto it = dec->begin(); it != dec->end(); ++it) {
      const std::string p = fmt::format("added_tokens_decoder[{}]", json(it.key()).dump());
      int32_t id = -1;
      try {
        id = std::stoi(it.key());
      } catch (const std::exception&) {
        r.fail(p, "the key must be a token id");
      }
      if (std::any_of(added.begin(), added.end(), [&](const AddedToken& a) { return a.id == id; })) continue;
      json entry = it.value();
      entry["id"] = id;
      added.push_back(read_added_token(r, entry, p));
    }
  }
  // Tokens the config names are special (transformers registers them so).
  std::vector<std::string> names;
  for (const auto& t : {c.bos_token, c.eos_token, c.pad_token, c.unk_token})
    if (t) names.push_back(*t);
  if (const json* extra = Reader::find(cfg, "additional_special_tokens"); extra && extra->is_array()) {
    for (const json& e : *extra) {
      if (e.is_string()) names.push_back(e.get<std::string>());
      else if (e.is_object() && e.contains("content") && e["content"].is_string())
        names.push_back(e["content"].get<std::string>());
    }
  }
  for (AddedToken& a : added)
    if (std::find(names.begin(), names.end(), a.content) != names.end()) a.special = true;
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json,
                               const std::string& source) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.source = source;
  const Reader r(source);
  const json root = parse(tokenizer_json, source);
  r.object(root, "(root)");

  if (const json* n = Reader::find(root, "normalizer")) read_normalizer(r, *n, "normalizer", t.normalizer);
  if (const json* p = Reader::find(root, "pre_tokenizer")) read_pre_tokenizer(r, *p, "pre_tokenizer", t.pre_tokenizer);
  read_model(r, r.need(root, "model", "(root)"), t.pre_tokenizer.byte_level, t.model);
  if (const json* p = Reader::find(root, "post_processor")) read_post_processor(r, *p, "post_processor", t.post_processor);
  if (const json* d = Reader::find(root, "decoder")) {
    t.decoder.present = true;
    read_decoder(r, *d, "decoder", t.decoder);
  }
  t.decoder.simple_byte_level =
      t.decoder.present && t.decoder.steps.size() == 1 && t.decoder.steps[0].kind == tok::DecoderStep::Kind::kByteLevel;
  if (const json* a = Reader::find(root, "added_tokens")) {
    r.array(*a, "added_tokens");
    for (size_t i = 0; i < a->size(); ++i)
      t.added.push_back(read_added_token(r, (*a)[i], fmt::format("added_tokens[{}]", i)));
  }

  std::string config_label = source;
  if (const size_t slash = source.rfind('/'); slash != std::string::npos) config_label = source.substr(0, slash + 1) + "tokenizer_config.json";
  else config_label = "tokenizer_config.json";
  if (!config_json.empty()) {
    const Reader cr(config_label);
    read_config(cr, parse(config_json, config_label), t.config, t.added);
  }

  // Ids: the vocabulary and the added tokens together.
  int32_t max_id = static_cast<int32_t>(t.model.id_to_text.size()) - 1;
  for (const AddedToken& a : t.added) max_id = std::max(max_id, a.id);
  t.vocab_size = max_id + 1;
  t.added_index_of_id.assign(static_cast<size_t>(t.vocab_size), -1);
  for (size_t i = 0; i < t.added.size(); ++i) {
    const AddedToken& a = t.added[i];
    t.added_index_of_id[static_cast<size_t>(a.id)] = static_cast<int32_t>(i);
    t.added_by_content.emplace(a.content, a.id);
    const auto index = static_cast<int32_t>(i);
    (a.normalized ? t.match_normalized : t.match_raw).add(a.content, index);
    if (!a.special) (a.normalized ? t.match_normalized_nonspecial : t.match_raw_nonspecial).add(a.content, index);
  }
  if (t.decoder.simple_byte_level) {
    t.decoded_bytes.assign(static_cast<size_t>(t.vocab_size), std::string());
    for (size_t id = 0; id < t.model.id_to_text.size(); ++id) {
      const std::string& text = t.model.id_to_text[id];
      auto bytes = byte_level::decode(text);
      t.decoded_bytes[id] = bytes ? std::move(*bytes) : text;
    }
    for (const AddedToken& a : t.added) t.decoded_bytes[static_cast<size_t>(a.id)] = a.content;
  }

  Tokenizer tokenizer(std::move(impl));
  auto id_of = [&](const std::optional<std::string>& name, const char* key) -> std::optional<int32_t> {
    if (!name) return std::nullopt;
    auto id = tokenizer.token_to_id(*name);
    if (!id)
      QAFT_FAIL(ErrorKind::kInvalidFile, kFileHint, "{}: {}: \"{}\" is neither an added token nor in the vocabulary",
                config_label, key, *name);
    return id;
  };
  Impl& ti = *tokenizer.impl_;
  ti.bos_id = id_of(ti.config.bos_token, "bos_token");
  ti.eos_id = id_of(ti.config.eos_token, "eos_token");
  ti.pad_id = id_of(ti.config.pad_token, "pad_token");
  ti.unk_id = id_of(ti.config.unk_token, "unk_token");
  return tokenizer;
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  std::error_code ec;
  const bool is_dir = !std::filesystem::is_regular_file(path, ec);
  const std::filesystem::path dir = is_dir ? path : path.parent_path();
  const std::filesystem::path file = is_dir ? path / "tokenizer.json" : path;
  if (!std::filesystem::exists(file, ec))
    QAFT_FAIL(ErrorKind::kIo, "pass a Hugging Face model directory that contains tokenizer.json",
              "cannot open {}: No such file or directory", file.string());
  const std::string text = data::read_file(file);
  const std::filesystem::path config = dir / "tokenizer_config.json";
  std::string config_text;
  if (std::filesystem::exists(config, ec)) config_text = data::read_file(config);
  return from_json(text, config_text, file.string());
}

}  // namespace qaft
