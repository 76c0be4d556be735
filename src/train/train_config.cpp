// Parsing, overrides and validation of the training configuration (train_config.h).
//
// Three passes: (1) the YAML text becomes a tree and every --set is merged into it (its key checked
// against the schema first); (2) the tree is walked once against the schema — unknown and duplicate
// keys, sections that are not maps — so that a misspelt key is reported as such rather than as the
// required field it hides; (3) the tree is converted field by field through typed getters that
// know where each value came from (file:line:col or the --set), and the cross-field rules run.
#include "train/train_config.h"

#include "core/error.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

namespace qaft {

namespace fs = std::filesystem;

std::string_view train_mode_name(TrainMode m) { return m == TrainMode::kPretrain ? "pretrain" : "sft"; }

std::string_view train_precision_name(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kExact: return "fp32";
    case GemmPrecision::kBf16: return "bf16";
    case GemmPrecision::kFp8: return "fp8";
  }
  return "?";
}

std::string_view progress_mode_name(ProgressMode p) {
  switch (p) {
    case ProgressMode::kAuto: return "auto";
    case ProgressMode::kOn: return "on";
    case ProgressMode::kOff: return "off";
  }
  return "?";
}

namespace {

constexpr const char* kDocHint = "see docs/train-config.md for every key";

// ---------------------------------------------------------------------------------------------
// The schema: every key, with the kind of value it holds. Sections are maps of further keys.

enum class Kind { kSection, kString, kPath, kInt, kUint, kFloat, kBool, kEnum, kList };

struct KeySpec {
  std::string_view path;  // dotted
  Kind kind;              // what its value is
};

constexpr KeySpec kSchema[] = {
    {"mode", Kind::kEnum},
    {"model", Kind::kSection},
    {"model.path", Kind::kPath},
    {"model.config", Kind::kPath},
    {"model.tokenizer", Kind::kPath},
    {"model.init_std", Kind::kFloat},
    {"base_format", Kind::kEnum},
    {"precision", Kind::kEnum},
    {"fp8_scale_format", Kind::kEnum},
    {"lora", Kind::kSection},
    {"lora.rank", Kind::kInt},
    {"lora.alpha", Kind::kFloat},
    {"lora.rslora", Kind::kBool},
    {"lora.dropout", Kind::kFloat},
    {"lora.targets", Kind::kList},
    {"lora.target_regex", Kind::kString},
    {"lora.seed", Kind::kUint},
    {"qat", Kind::kSection},
    {"qat.enabled", Kind::kBool},
    {"qat.scale_format", Kind::kEnum},
    {"qat.quantize_activations", Kind::kBool},
    {"data", Kind::kSection},
    {"data.train", Kind::kPath},
    {"data.eval", Kind::kPath},
    {"data.seq_len", Kind::kInt},
    {"data.batch_size", Kind::kInt},
    {"data.pack", Kind::kBool},
    {"data.shuffle", Kind::kBool},
    {"data.max_length", Kind::kInt},
    {"data.on_overflow", Kind::kEnum},
    {"optim", Kind::kSection},
    {"optim.lr", Kind::kFloat},
    {"optim.weight_decay", Kind::kFloat},
    {"optim.beta1", Kind::kFloat},
    {"optim.beta2", Kind::kFloat},
    {"optim.eps", Kind::kFloat},
    {"optim.moments", Kind::kEnum},
    {"optim.max_grad_norm", Kind::kFloat},
    {"optim.schedule", Kind::kSection},
    {"optim.schedule.warmup_steps", Kind::kInt},
    {"optim.schedule.decay", Kind::kEnum},
    {"optim.schedule.min_ratio", Kind::kFloat},
    {"steps", Kind::kInt},
    {"grad_accum", Kind::kInt},
    {"seed", Kind::kUint},
    {"recompute", Kind::kBool},
    {"balancing", Kind::kSection},
    {"balancing.bias_update_speed", Kind::kFloat},
    {"eval", Kind::kSection},
    {"eval.every", Kind::kInt},
    {"eval.batches", Kind::kInt},
    {"checkpoint", Kind::kSection},
    {"checkpoint.every", Kind::kInt},
    {"checkpoint.dir", Kind::kPath},
    {"checkpoint.keep", Kind::kInt},
    {"output", Kind::kSection},
    {"output.dir", Kind::kPath},
    {"output.metrics", Kind::kString},
    {"log", Kind::kSection},
    {"log.progress", Kind::kEnum},
};

const KeySpec* find_spec(std::string_view path) {
  for (const KeySpec& k : kSchema)
    if (k.path == path) return &k;
  return nullptr;
}

std::string_view parent_of(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : path.substr(0, dot);
}

std::string_view leaf_of(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

std::string join_path(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

// The keys directly inside section `parent` ("" = the top level), full paths.
std::vector<std::string_view> keys_of(std::string_view parent) {
  std::vector<std::string_view> out;
  for (const KeySpec& k : kSchema)
    if (parent_of(k.path) == parent) out.push_back(k.path);
  return out;
}

// Names that other trainers (axolotl, HF TrainingArguments, PEFT, torchtune) use for our keys.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"learning_rate", "optim.lr"},
    {"micro_batch_size", "data.batch_size"},
    {"per_device_train_batch_size", "data.batch_size"},
    {"batch", "data.batch_size"},
    {"gradient_accumulation_steps", "grad_accum"},
    {"max_steps", "steps"},
    {"num_steps", "steps"},
    {"sequence_len", "data.seq_len"},
    {"max_seq_length", "data.seq_len"},
    {"max_seq_len", "data.seq_len"},
    {"sample_packing", "data.pack"},
    {"r", "lora.rank"},
    {"lora_r", "lora.rank"},
    {"lora_alpha", "lora.alpha"},
    {"lora_dropout", "lora.dropout"},
    {"target_modules", "lora.targets"},
    {"lora_target_modules", "lora.targets"},
    {"lora_target_linear", "lora.targets"},
    {"use_rslora", "lora.rslora"},
    {"lr_scheduler", "optim.schedule.decay"},
    {"lr_scheduler_type", "optim.schedule.decay"},
    {"adam_beta1", "optim.beta1"},
    {"adam_beta2", "optim.beta2"},
    {"adam_epsilon", "optim.eps"},
    {"output_dir", "output.dir"},
    {"base_model", "model.path"},
    {"model_name_or_path", "model.path"},
    {"gradient_checkpointing", "recompute"},
    {"save_steps", "checkpoint.every"},
    {"save_total_limit", "checkpoint.keep"},
    {"eval_steps", "eval.every"},
    {"datasets", "data.train"},
    {"dataset", "data.train"},
    {"val_set", "data.eval"},
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The valid key closest to the unknown key `path`: another trainer's name for it (an alias), a
// sibling one or two typos away, a key of the same name in another section (a misplaced key), or
// else the sibling at the least edit distance.
std::string closest_key(std::string_view path) {
  const std::string leaf = lower(leaf_of(path));
  for (const auto& [alias, key] : kAliases)
    if (leaf == alias) return std::string(key);
  std::string_view best;
  size_t best_d = SIZE_MAX;
  for (std::string_view k : keys_of(parent_of(path))) {
    const size_t d = edit_distance(leaf, leaf_of(k));
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  if (best_d <= std::max<size_t>(1, leaf.size() / 3)) return std::string(best);
  for (const KeySpec& k : kSchema)
    if (leaf_of(k.path) == leaf) return std::string(k.path);
  return std::string(best);
}

// ---------------------------------------------------------------------------------------------
// The YAML tree and where each of its values came from.

struct Override {
  std::string key;   // dotted
  std::string text;  // the whole "key=value", for messages
};

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: {
      std::string s = n.Scalar();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return n.Tag() == "!" ? fmt::format("the quoted string '{}'", s) : fmt::format("'{}'", s);
    }
    default: return "nothing";
  }
}

bool is_absent(const YAML::Node& n) { return !n.IsDefined() || n.IsNull(); }

// The value of key `key` in map `map` (the first one; duplicates are refused earlier), or an
// undefined node. Never inserts (unlike a non-const operator[]).
YAML::Node child(const YAML::Node& map, std::string_view key) {
  if (map.IsMap())
    for (const auto& kv : map)  // (iterators yield temporaries: bind them, never it->first)
      if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
  return YAML::Node(YAML::NodeType::Undefined);
}

class Doc {
 public:
  Doc(YAML::Node root, std::string source, fs::path base_dir, std::vector<Override> overrides)
      : root_(std::move(root)),
        source_(std::move(source)),
        base_dir_(std::move(base_dir)),
        overrides_(std::move(overrides)) {}

  // The node at a dotted path; undefined when a section on the way is absent or not a map.
  YAML::Node node(std::string_view path) const {
    YAML::Node cur = root_;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string_view seg = path.substr(start, dot == std::string_view::npos ? path.npos : dot - start);
      YAML::Node next = child(cur, seg);
      if (dot == std::string_view::npos) return next;
      if (!next.IsDefined()) return next;
      cur.reset(next);
      start = dot + 1;
    }
  }

  bool has(std::string_view path) const { return !is_absent(node(path)); }

  // "(config.yaml:7:7)" or "(--set optim.lr=fast)" for the value at `path`.
  std::string where(std::string_view path) const {
    auto covers = [](std::string_view key, std::string_view p) {  // key is p or an ancestor of p
      return p == key || (p.size() > key.size() && p.substr(0, key.size()) == key && p[key.size()] == '.');
    };
    for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it)
      if (covers(it->key, path)) return fmt::format("(--set {})", it->text);
    for (std::string_view p = path; !p.empty(); p = parent_of(p)) {
      const YAML::Node n = node(p);
      if (n.IsDefined() && n.Mark().pos >= 0) return fmt::format("({})", mark_text(n.Mark()));
      for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it)
        if (covers(p, it->key)) return fmt::format("(--set {})", it->text);
    }
    return fmt::format("({})", source_);
  }

  std::string mark_text(const YAML::Mark& m) const {
    return fmt::format("{}:{}:{}", source_, m.line + 1, m.column + 1);
  }

  // A value error at `path`: "path: message (where)".
  template <typename... Args>
  [[noreturn]] void fail(std::string_view path, std::string_view hint, fmt::format_string<Args...> f,
                         Args&&... args) const {
    QAFT_FAIL(ErrorKind::kInvalidArgument, std::string(hint), "{}: {} {}", path,
              fmt::format(f, std::forward<Args>(args)...), where(path));
  }

  [[noreturn]] void missing(std::string_view path, std::string_view why = {}) const {
    const std::string_view parent = parent_of(path);
    const std::string loc =
        !parent.empty() && node(parent).IsDefined() ? where(parent) : fmt::format("({})", source_);
    QAFT_FAIL(ErrorKind::kInvalidArgument,
              fmt::format("add it to the file or pass --set {}=VALUE; {}", path, kDocHint),
              "missing required key '{}'{} {}", path, why, loc);
  }

  // Pass 2: unknown or duplicate keys, sections that are not maps.
  void check_keys() const {
    if (root_.IsDefined() && !root_.IsNull() && !root_.IsMap())
      QAFT_FAIL(ErrorKind::kInvalidArgument, kDocHint,
                "a training configuration is a map of keys (mode, model, data, ...), got {} ({})",
                describe(root_), root_.Mark().pos >= 0 ? mark_text(root_.Mark()) : source_);
    check_map(root_, "");
  }

  // Typed getters: nullopt when the key is absent or null.
  std::optional<std::string> string(std::string_view path) const {
    expect_kind(path, {Kind::kString, Kind::kPath, Kind::kEnum});
    const YAML::Node n = node(path);
    if (is_absent(n)) return std::nullopt;
    if (!n.IsScalar()) fail(path, kDocHint, "expected a string, got {}", describe(n));
    return n.Scalar();
  }

  std::optional<double> number(std::string_view path) const {
    expect_kind(path, {Kind::kFloat});
    const std::optional<std::string> s = plain_scalar(path, "a number");
    if (!s) return std::nullopt;
    std::string_view t = *s;
    if (!t.empty() && t[0] == '+') t.remove_prefix(1);
    double v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || end != t.data() + t.size() || t.empty())
      fail(path, kDocHint, "expected a number, got '{}'", *s);
    if (!std::isfinite(v)) fail(path, kDocHint, "expected a finite number, got '{}'", *s);
    return v;
  }

  std::optional<int64_t> integer(std::string_view path) const {
    expect_kind(path, {Kind::kInt});
    return parse_int<int64_t>(path, "an integer");
  }

  std::optional<uint64_t> unsigned_integer(std::string_view path) const {
    expect_kind(path, {Kind::kUint});
    return parse_int<uint64_t>(path, "a non-negative integer");
  }

  std::optional<bool> boolean(std::string_view path) const {
    expect_kind(path, {Kind::kBool});
    const std::optional<std::string> s = plain_scalar(path, "true or false");
    if (!s) return std::nullopt;
    if (*s == "true" || *s == "True" || *s == "TRUE") return true;
    if (*s == "false" || *s == "False" || *s == "FALSE") return false;
    fail(path, kDocHint, "expected true or false, got '{}'", *s);
  }

  // The index of the value in `names`; an invalid value lists the valid ones.
  template <size_t N>
  std::optional<size_t> choice(std::string_view path, const std::array<std::string_view, N>& names) const {
    expect_kind(path, {Kind::kEnum});
    const std::optional<std::string> s = string(path);
    if (!s) return std::nullopt;
    for (size_t i = 0; i < N; ++i)
      if (*s == names[i]) return i;
    fail(path, "", "invalid value '{}'; expected one of: {}", *s, fmt::join(names, ", "));
  }

  // A list of strings; a single string is a list of one.
  std::optional<std::vector<std::string>> string_list(std::string_view path) const {
    expect_kind(path, {Kind::kList});
    const YAML::Node n = node(path);
    if (is_absent(n)) return std::nullopt;
    std::vector<std::string> out;
    if (n.IsScalar()) {
      out.push_back(n.Scalar());
    } else if (n.IsSequence()) {
      for (const YAML::Node& e : n) {
        if (!e.IsScalar()) fail(path, kDocHint, "expected a list of strings, got {} in it", describe(e));
        out.push_back(e.Scalar());
      }
    } else {
      fail(path, kDocHint, "expected a list of strings, got {}", describe(n));
    }
    if (out.empty()) fail(path, kDocHint, "the list is empty");
    for (const std::string& s : out)
      if (s.empty()) fail(path, kDocHint, "an empty string in the list");
    return out;
  }

  // A path, made absolute: against the file's directory, or the working directory for a --set.
  std::optional<fs::path> path(std::string_view key) const {
    expect_kind(key, {Kind::kPath});
    const std::optional<std::string> s = string(key);
    if (!s) return std::nullopt;
    if (s->empty()) fail(key, kDocHint, "empty path");
    fs::path p(*s);
    if (p.is_relative()) p = (from_override(key) ? fs::current_path() : base_dir_) / p;
    return p.lexically_normal();
  }

 private:
  bool from_override(std::string_view path) const { return where(path).rfind("(--set ", 0) == 0; }

  void expect_kind(std::string_view path, std::initializer_list<Kind> kinds) const {
    const KeySpec* k = find_spec(path);
    QAFT_CHECK_HINT(k && std::find(kinds.begin(), kinds.end(), k->kind) != kinds.end(), ErrorKind::kInternal,
                    "", "train config: '{}' read with a getter that does not match the schema", path);
  }

  // The text of a plain (unquoted) scalar: numbers and booleans must not be quoted strings.
  std::optional<std::string> plain_scalar(std::string_view path, std::string_view what) const {
    const YAML::Node n = node(path);
    if (is_absent(n)) return std::nullopt;
    if (!n.IsScalar() || n.Tag() == "!") fail(path, kDocHint, "expected {}, got {}", what, describe(n));
    return n.Scalar();
  }

  template <typename T>
  std::optional<T> parse_int(std::string_view path, std::string_view what) const {
    const std::optional<std::string> s = plain_scalar(path, what);
    if (!s) return std::nullopt;
    std::string_view t = *s;
    if (!t.empty() && t[0] == '+') t.remove_prefix(1);
    T v{};
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec == std::errc::result_out_of_range) fail(path, kDocHint, "{} is out of range", *s);
    if (ec != std::errc() || end != t.data() + t.size() || t.empty())
      fail(path, kDocHint, "expected {}, got '{}'", what, *s);
    return v;
  }

  void check_map(const YAML::Node& map, const std::string& prefix) const {
    if (is_absent(map)) return;
    std::vector<std::pair<std::string, YAML::Mark>> seen;
    for (const auto& kv : map) {
      const YAML::Node key = kv.first;
      const YAML::Node value = kv.second;
      const std::string key_loc = key.Mark().pos >= 0 ? mark_text(key.Mark()) : source_;
      if (!key.IsScalar())
        QAFT_FAIL(ErrorKind::kInvalidArgument, kDocHint, "{}: a key must be a name, got {} ({})",
                  prefix.empty() ? "top level" : prefix, describe(key), key_loc);
      const std::string full = join_path(prefix, key.Scalar());
      if (key.Scalar() == "<<" && key.Tag() == "?")
        QAFT_FAIL(ErrorKind::kInvalidArgument, "write the keys out, or use --set to vary a configuration",
                  "YAML merge keys ('<<') are not supported ({})", key_loc);
      for (const auto& [name, mark] : seen)
        if (name == key.Scalar())
          QAFT_FAIL(ErrorKind::kInvalidArgument, "give each key once",
                    "duplicate key '{}' ({}); first given at {}:{}", full, key_loc, mark.line + 1,
                    mark.column + 1);
      seen.emplace_back(key.Scalar(), key.Mark());
      const KeySpec* spec = find_spec(full);
      if (!spec) {
        const std::string parent(parent_of(full));
        std::vector<std::string_view> valid;
        for (std::string_view k : keys_of(parent)) valid.push_back(leaf_of(k));
        QAFT_FAIL(ErrorKind::kInvalidArgument,
                  fmt::format("valid keys {}: {}; {}", parent.empty() ? "at the top level" : "of " + parent,
                              fmt::join(valid, ", "), kDocHint),
                  "unknown key '{}' ({}); did you mean '{}'?", full, key_loc, closest_key(full));
      }
      if (spec->kind == Kind::kSection) {
        if (!is_absent(value) && !value.IsMap())
          fail(full, kDocHint, "expected a section (a map of keys), got {}", describe(value));
        check_map(value, full);
      }
    }
  }

  YAML::Node root_;                  // the configuration, overrides merged in
  std::string source_;               // the file name as given, for messages
  fs::path base_dir_;                // relative paths in the file resolve against it
  std::vector<Override> overrides_;  // in the order applied
};

// ---------------------------------------------------------------------------------------------
// Pass 1: --set.

YAML::Node parse_yaml(const std::string& text, const std::string& source) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    QAFT_FAIL(ErrorKind::kInvalidFile, "fix the YAML syntax at that place", "{}:{}:{}: malformed YAML: {}",
              source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  QAFT_CHECK_HINT(docs.size() <= 1, ErrorKind::kInvalidFile, "keep one configuration per file",
                  "{}: {} YAML documents ('---'); expected one", source, docs.size());
  return docs.empty() ? YAML::Node(YAML::NodeType::Null) : docs[0];
}

Override apply_override(YAML::Node& root, const std::string& text) {
  const size_t eq = text.find('=');
  const std::string key = eq == std::string::npos ? text : text.substr(0, eq);
  QAFT_CHECK_HINT(eq != std::string::npos && !key.empty(), ErrorKind::kInvalidArgument,
                  "write --set KEY=VALUE, e.g. --set optim.lr=1e-4", "--set {}: expected KEY=VALUE", text);
  // Every segment must be a key of the schema, and only the last may be a value.
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    const std::string partial = key.substr(0, dot);
    const KeySpec* spec = find_spec(partial);
    if (!spec) {
      std::vector<std::string_view> valid;
      for (std::string_view k : keys_of(parent_of(partial))) valid.push_back(leaf_of(k));
      QAFT_FAIL(
          ErrorKind::kInvalidArgument,
          fmt::format("valid keys {}: {}; {}",
                      parent_of(partial).empty() ? "at the top level" : "of " + std::string(parent_of(partial)),
                      fmt::join(valid, ", "), kDocHint),
          "--set {}: unknown key '{}'; did you mean '{}'?", text, partial, closest_key(partial));
    }
    if (dot == std::string::npos) break;
    QAFT_CHECK_HINT(spec->kind == Kind::kSection, ErrorKind::kInvalidArgument, kDocHint,
                    "--set {}: '{}' is a value, not a section", text, partial);
    start = dot + 1;
  }
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    QAFT_FAIL(ErrorKind::kInvalidArgument, "quote the value if it holds YAML syntax characters",
              "--set {}: malformed value: {}", text, e.msg);
  }
  // Walk (creating sections as needed) to the parent map and set the key there.
  YAML::Node cur = root;
  if (!cur.IsMap()) {
    QAFT_CHECK_HINT(is_absent(cur), ErrorKind::kInvalidArgument, kDocHint,
                    "--set {}: the configuration is not a map of keys", text);
    root.reset(YAML::Node(YAML::NodeType::Map));
    cur.reset(root);
  }
  size_t start = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
    const std::string seg = key.substr(start, dot - start);
    YAML::Node next = child(cur, seg);
    if (is_absent(next)) {
      next = YAML::Node(YAML::NodeType::Map);
      cur[seg] = next;
      next.reset(child(cur, seg));
    } else {
      QAFT_CHECK_HINT(next.IsMap(), ErrorKind::kInvalidArgument, kDocHint,
                      "--set {}: '{}' in the file is {}, not a section", text, key.substr(0, dot),
                      describe(next));
    }
    cur.reset(next);
    start = dot + 1;
  }
  const std::string leaf = key.substr(start);
  // Replace the value in place: erase then add (operator= on an aliased node would write through).
  if (child(cur, leaf).IsDefined()) cur.remove(leaf);
  cur[leaf] = value;
  return Override{key, text};
}

// ---------------------------------------------------------------------------------------------
// Pass 3: conversion and the rules.

constexpr std::array<std::string_view, 2> kModeNames = {"pretrain", "sft"};
constexpr std::array<std::string_view, 4> kBaseFormatNames = {"f32", "bf16", "fp8", "nf4"};
constexpr std::array<BaseFormat, 4> kBaseFormats = {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8,
                                                    BaseFormat::kNf4};
constexpr std::array<std::string_view, 3> kPrecisionNames = {"fp32", "bf16", "fp8"};
constexpr std::array<std::string_view, 2> kScaleFormatNames = {"fp32", "ue8m0"};
constexpr std::array<std::string_view, 3> kOverflowNames = {"drop", "truncate", "split"};
constexpr std::array<std::string_view, 2> kMomentNames = {"fp32", "bf16"};
constexpr std::array<std::string_view, 3> kDecayNames = {"cosine", "linear", "constant"};
constexpr std::array<std::string_view, 3> kProgressNames = {"auto", "on", "off"};

std::string_view base_format_key(BaseFormat f) {
  for (size_t i = 0; i < kBaseFormats.size(); ++i)
    if (kBaseFormats[i] == f) return kBaseFormatNames[i];
  return "?";
}

TrainConfig convert(const Doc& d) {
  TrainConfig c;
  const auto mode = d.choice("mode", kModeNames);
  if (!mode) d.missing("mode", " (pretrain or sft)");
  c.mode = *mode == 0 ? TrainMode::kPretrain : TrainMode::kSft;
  const bool sft = c.mode == TrainMode::kSft;

  // model
  const auto model_path = d.path("model.path");
  const auto model_config = d.path("model.config");
  const auto model_tokenizer = d.path("model.tokenizer");
  const auto init_std = d.number("model.init_std");
  if (model_path) {
    for (const char* k : {"model.config", "model.tokenizer", "model.init_std"})
      if (d.has(k))
        d.fail(
            k,
            "give model.path (a model directory) or, to pretrain from scratch, model.config + model.tokenizer",
            "cannot be combined with model.path");
    c.model.path = *model_path;
  } else if (model_config || model_tokenizer || init_std) {
    const char* given = model_config ? "model.config" : model_tokenizer ? "model.tokenizer" : "model.init_std";
    if (sft)
      d.fail(given, "sft fine-tunes an existing model: set model.path to its directory",
             "only for pretraining from scratch (mode: pretrain)");
    if (!model_config) d.missing("model.config", " (pretraining from scratch needs a config.json)");
    if (!model_tokenizer)
      d.missing("model.tokenizer", " (pretraining from scratch needs a tokenizer directory)");
    c.model.config = *model_config;
    c.model.tokenizer = *model_tokenizer;
    c.model.init_std = init_std.value_or(0.02);
    if (!(c.model.init_std > 0)) d.fail("model.init_std", "", "must be > 0, got {}", c.model.init_std);
  } else {
    d.missing("model.path", sft ? "" : " (or model.config + model.tokenizer to pretrain from scratch)");
  }

  // base_format, precision
  const auto base = d.choice("base_format", kBaseFormatNames);
  c.base_format = base ? kBaseFormats[*base] : sft ? BaseFormat::kBf16 : BaseFormat::kF32;
  if (!sft && c.base_format != BaseFormat::kF32)
    d.fail("base_format", "remove base_format, or set it to f32",
           "pretraining trains every weight and keeps them in f32, got '{}'", base_format_key(c.base_format));
  const auto precision = d.choice("precision", kPrecisionNames);
  constexpr std::array<GemmPrecision, 3> kPrecisions = {GemmPrecision::kExact, GemmPrecision::kBf16,
                                                        GemmPrecision::kFp8};
  c.precision = precision ? kPrecisions[*precision] : GemmPrecision::kExact;
  if (const auto sf = d.choice("fp8_scale_format", kScaleFormatNames))
    c.fp8_scale_format = *sf == 0 ? ScaleFormat::kFp32 : ScaleFormat::kUe8m0;

  // seed first: lora.seed defaults to it.
  c.seed = d.unsigned_integer("seed").value_or(0);

  // lora
  if (!sft && d.node("lora").IsDefined() && !d.node("lora").IsNull())
    d.fail("lora", "remove the lora section, or use mode: sft",
           "LoRA adapters are for mode: sft, not pretrain");
  if (sft) {
    c.lora.rank = d.integer("lora.rank").value_or(8);
    if (c.lora.rank < 1) d.fail("lora.rank", "", "must be >= 1, got {}", c.lora.rank);
    c.lora.alpha = d.number("lora.alpha").value_or(16);
    if (!(c.lora.alpha > 0)) d.fail("lora.alpha", "", "must be > 0, got {}", c.lora.alpha);
    c.lora.rslora = d.boolean("lora.rslora").value_or(false);
    c.lora.dropout = d.number("lora.dropout").value_or(0);
    if (!(c.lora.dropout >= 0 && c.lora.dropout < 1))
      d.fail("lora.dropout", "", "must be in [0, 1), got {}", c.lora.dropout);
    const auto targets = d.string_list("lora.targets");
    const auto regex = d.string("lora.target_regex");
    if (regex && targets)
      d.fail("lora.target_regex", "keep one of them", "cannot be combined with lora.targets");
    if (regex) {
      if (regex->empty()) d.fail("lora.target_regex", "", "empty regular expression");
      c.lora.target_regex = *regex;
      c.lora.targets.clear();
    } else if (targets) {
      c.lora.targets = *targets;
    }
    c.lora.seed = d.unsigned_integer("lora.seed").value_or(c.seed);
  } else {
    c.lora = TrainConfig::Lora{};
    c.lora.seed = c.seed;
  }

  // qat
  c.qat.enabled = d.boolean("qat.enabled").value_or(sft);
  if (!sft && c.qat.enabled)
    d.fail("qat.enabled", "for FP8 pretraining set precision: fp8",
           "quantization-aware training is for LoRA fine-tuning (mode: sft)");
  if (const auto sf = d.choice("qat.scale_format", kScaleFormatNames))
    c.qat.scale_format = *sf == 0 ? ScaleFormat::kFp32 : ScaleFormat::kUe8m0;
  c.qat.quantize_activations = d.boolean("qat.quantize_activations").value_or(true);
  if (sft && c.qat.enabled && c.lora.dropout > 0)
    d.fail("lora.dropout", "set lora.dropout: 0 or qat.enabled: false",
           "must be 0 with QAT (the quantized merged weight has no separate adapter input to drop)");

  // data
  const auto train = d.path("data.train");
  if (!train) d.missing("data.train");
  c.data.train = *train;
  c.data.eval = d.path("data.eval").value_or(fs::path{});
  const auto seq_len = d.integer("data.seq_len");
  if (!seq_len) d.missing("data.seq_len");
  c.data.seq_len = *seq_len;
  if (c.data.seq_len <= 0) d.fail("data.seq_len", "", "must be > 0, got {}", c.data.seq_len);
  c.data.batch_size = d.integer("data.batch_size").value_or(1);
  if (c.data.batch_size <= 0) d.fail("data.batch_size", "", "must be > 0, got {}", c.data.batch_size);
  c.data.pack = d.boolean("data.pack").value_or(true);
  c.data.shuffle = d.boolean("data.shuffle").value_or(true);
  c.data.max_length = d.integer("data.max_length").value_or(c.data.seq_len);
  if (c.data.max_length < 1 || c.data.max_length > c.data.seq_len)
    d.fail("data.max_length", "an example longer than a row cannot be placed whole; raise data.seq_len instead",
           "must be in [1, data.seq_len = {}], got {}", c.data.seq_len, c.data.max_length);
  if (const auto o = d.choice("data.on_overflow", kOverflowNames))
    c.data.on_overflow = static_cast<OverflowPolicy>(*o);

  // steps (the schedule is checked against it)
  const auto steps = d.integer("steps");
  if (!steps) d.missing("steps");
  c.steps = *steps;
  if (c.steps <= 0) d.fail("steps", "", "must be > 0, got {}", c.steps);
  c.grad_accum = d.integer("grad_accum").value_or(1);
  if (c.grad_accum < 1) d.fail("grad_accum", "", "must be >= 1, got {}", c.grad_accum);
  c.recompute = d.boolean("recompute").value_or(false);

  // optim
  const auto lr = d.number("optim.lr");
  if (!lr) d.missing("optim.lr");
  c.optim.lr = *lr;
  if (!(c.optim.lr > 0)) d.fail("optim.lr", "", "must be > 0, got {}", c.optim.lr);
  c.optim.weight_decay = d.number("optim.weight_decay").value_or(sft ? 0.0 : 0.1);
  if (c.optim.weight_decay < 0) d.fail("optim.weight_decay", "", "must be >= 0, got {}", c.optim.weight_decay);
  for (auto [key, field, def] :
       {std::tuple{"optim.beta1", &c.optim.beta1, 0.9}, std::tuple{"optim.beta2", &c.optim.beta2, 0.95}}) {
    *field = d.number(key).value_or(def);
    if (!(*field >= 0 && *field < 1)) d.fail(key, "", "must be in [0, 1), got {}", *field);
  }
  c.optim.eps = d.number("optim.eps").value_or(1e-8);
  if (!(c.optim.eps > 0)) d.fail("optim.eps", "", "must be > 0, got {}", c.optim.eps);
  if (const auto m = d.choice("optim.moments", kMomentNames))
    c.optim.moments = *m == 0 ? MomentPrecision::kF32 : MomentPrecision::kBF16;
  c.optim.max_grad_norm = d.number("optim.max_grad_norm").value_or(1.0);
  if (c.optim.max_grad_norm < 0)
    d.fail("optim.max_grad_norm", "0 turns clipping off", "must be >= 0, got {}", c.optim.max_grad_norm);
  c.optim.schedule.warmup_steps = d.integer("optim.schedule.warmup_steps").value_or(0);
  if (c.optim.schedule.warmup_steps < 0 || c.optim.schedule.warmup_steps > c.steps)
    d.fail("optim.schedule.warmup_steps", "", "must be in [0, steps = {}], got {}", c.steps,
           c.optim.schedule.warmup_steps);
  if (const auto decay = d.choice("optim.schedule.decay", kDecayNames))
    c.optim.schedule.decay = static_cast<LrDecay>(*decay);
  c.optim.schedule.min_ratio = d.number("optim.schedule.min_ratio").value_or(0.1);
  if (!(c.optim.schedule.min_ratio >= 0 && c.optim.schedule.min_ratio <= 1))
    d.fail("optim.schedule.min_ratio", "", "must be in [0, 1], got {}", c.optim.schedule.min_ratio);

  // balancing
  c.balancing.bias_update_speed = d.number("balancing.bias_update_speed").value_or(sft ? 0.0 : 0.001);
  if (c.balancing.bias_update_speed < 0)
    d.fail("balancing.bias_update_speed", "0 turns it off", "must be >= 0, got {}",
           c.balancing.bias_update_speed);

  // eval
  c.eval.every = d.integer("eval.every").value_or(0);
  if (c.eval.every < 0)
    d.fail("eval.every", "0 evaluates only at the end", "must be >= 0, got {}", c.eval.every);
  c.eval.batches = d.integer("eval.batches").value_or(0);
  if (c.eval.batches < 0)
    d.fail("eval.batches", "0 evaluates the whole set", "must be >= 0, got {}", c.eval.batches);

  // output, checkpoint
  const auto out_dir = d.path("output.dir");
  if (!out_dir) d.missing("output.dir");
  c.output.dir = *out_dir;
  c.output.metrics = d.string("output.metrics").value_or("metrics.jsonl");
  if (c.output.metrics.empty() || fs::path(c.output.metrics).is_absolute() ||
      fs::path(c.output.metrics).lexically_normal().string().rfind("..", 0) == 0)
    d.fail("output.metrics", "give a file name such as metrics.jsonl",
           "must be a relative file name inside output.dir, got '{}'", c.output.metrics);
  c.checkpoint.every = d.integer("checkpoint.every").value_or(0);
  if (c.checkpoint.every < 0)
    d.fail("checkpoint.every", "0 checkpoints only at the end", "must be >= 0, got {}", c.checkpoint.every);
  c.checkpoint.dir = d.path("checkpoint.dir").value_or(c.output.dir / "checkpoints");
  c.checkpoint.keep = d.integer("checkpoint.keep").value_or(1);
  if (c.checkpoint.keep < 1) d.fail("checkpoint.keep", "", "must be >= 1, got {}", c.checkpoint.keep);

  // log
  if (const auto p = d.choice("log.progress", kProgressNames)) c.log.progress = static_cast<ProgressMode>(*p);
  return c;
}

TrainConfig parse(const std::string& text, const std::vector<std::string>& overrides, fs::path base_dir,
                  const std::string& source) {
  YAML::Node root = parse_yaml(text, source);
  std::vector<Override> applied;
  for (const std::string& o : overrides) applied.push_back(apply_override(root, o));
  if (base_dir.empty()) base_dir = fs::current_path();
  const Doc doc(root, source, fs::absolute(base_dir).lexically_normal(), std::move(applied));
  doc.check_keys();
  return convert(doc);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TrainConfig load_train_config(const fs::path& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  QAFT_CHECK_HINT(!fs::is_directory(path, ec), ErrorKind::kIo,
                  "pass the YAML file, e.g. configs/sft-tiny-qat-fp8.yaml", "training config {} is a directory",
                  path.string());
  std::ifstream in(path, std::ios::binary);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "check the path; ready configurations are in configs/",
                  "cannot open training config {}: {}", path.string(), std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  QAFT_CHECK_HINT(!in.bad(), ErrorKind::kIo, "", "cannot read training config {}", path.string());
  TrainConfig c = parse(ss.str(), overrides, fs::absolute(path).parent_path(), path.string());
  c.source = fs::absolute(path).lexically_normal();
  return c;
}

TrainConfig parse_train_config(std::string_view yaml, const std::vector<std::string>& overrides,
                               const fs::path& base_dir, std::string_view source_name) {
  return parse(std::string(yaml), overrides, base_dir, std::string(source_name));
}

void check_train_config_paths(const TrainConfig& c) {
  std::error_code ec;
  auto need = [&](bool ok, std::string_view key, const fs::path& p, std::string_view what) {
    QAFT_CHECK_HINT(ok, ErrorKind::kInvalidArgument,
                    fmt::format("fix {} in the configuration or pass --set {}=PATH", key, key),
                    "{}: {} not found: {}", key, what, p.string());
  };
  if (!c.model.path.empty()) {
    need(fs::is_directory(c.model.path, ec), "model.path", c.model.path, "model directory");
    need(fs::is_regular_file(c.model.path / "config.json", ec), "model.path", c.model.path / "config.json",
         "config.json");
  } else {
    need(fs::is_regular_file(c.model.config, ec), "model.config", c.model.config, "config.json");
    need(fs::is_regular_file(c.model.tokenizer / "tokenizer.json", ec), "model.tokenizer",
         c.model.tokenizer / "tokenizer.json", "tokenizer.json");
  }
  need(fs::is_regular_file(c.data.train, ec), "data.train", c.data.train, "training data");
  if (!c.data.eval.empty())
    need(fs::is_regular_file(c.data.eval, ec), "data.eval", c.data.eval, "evaluation data");
}

std::vector<std::string> train_config_keys() {
  std::vector<std::string> out;
  for (const KeySpec& k : kSchema)
    if (k.kind != Kind::kSection) out.emplace_back(k.path);
  return out;
}

// ---------------------------------------------------------------------------------------------

nlohmann::json TrainConfig::to_json() const {
  using nlohmann::json;
  const bool sft = mode == TrainMode::kSft;
  json j;
  j["mode"] = std::string(train_mode_name(mode));
  json m = json::object();
  if (model.from_scratch()) {
    m["config"] = model.config.string();
    m["tokenizer"] = model.tokenizer.string();
    m["init_std"] = model.init_std;
  } else {
    m["path"] = model.path.string();
  }
  j["model"] = m;
  j["base_format"] = std::string(base_format_key(base_format));
  j["precision"] = std::string(train_precision_name(precision));
  j["fp8_scale_format"] = std::string(kScaleFormatNames[fp8_scale_format == ScaleFormat::kFp32 ? 0 : 1]);
  if (sft) {
    json l = {{"rank", lora.rank},
              {"alpha", lora.alpha},
              {"rslora", lora.rslora},
              {"dropout", lora.dropout},
              {"seed", lora.seed}};
    if (lora.target_regex.empty())
      l["targets"] = lora.targets;
    else
      l["target_regex"] = lora.target_regex;
    j["lora"] = l;
  }
  j["qat"] = {{"enabled", qat.enabled},
              {"scale_format", std::string(kScaleFormatNames[qat.scale_format == ScaleFormat::kFp32 ? 0 : 1])},
              {"quantize_activations", qat.quantize_activations}};
  json dj = {{"train", data.train.string()},
             {"seq_len", data.seq_len},
             {"batch_size", data.batch_size},
             {"pack", data.pack},
             {"shuffle", data.shuffle},
             {"max_length", data.max_length},
             {"on_overflow", std::string(kOverflowNames[static_cast<size_t>(data.on_overflow)])}};
  if (!data.eval.empty()) dj["eval"] = data.eval.string();
  j["data"] = dj;
  j["optim"] = {{"lr", optim.lr},
                {"weight_decay", optim.weight_decay},
                {"beta1", optim.beta1},
                {"beta2", optim.beta2},
                {"eps", optim.eps},
                {"moments", std::string(kMomentNames[optim.moments == MomentPrecision::kF32 ? 0 : 1])},
                {"max_grad_norm", optim.max_grad_norm},
                {"schedule",
                 {{"warmup_steps", optim.schedule.warmup_steps},
                  {"decay", std::string(kDecayNames[static_cast<size_t>(optim.schedule.decay)])},
                  {"min_ratio", optim.schedule.min_ratio}}}};
  j["steps"] = steps;
  j["grad_accum"] = grad_accum;
  j["seed"] = seed;
  j["recompute"] = recompute;
  j["balancing"] = {{"bias_update_speed", balancing.bias_update_speed}};
  j["eval"] = {{"every", eval.every}, {"batches", eval.batches}};
  j["checkpoint"] = {{"every", checkpoint.every}, {"dir", checkpoint.dir.string()}, {"keep", checkpoint.keep}};
  j["output"] = {{"dir", output.dir.string()}, {"metrics", output.metrics}};
  j["log"] = {{"progress", std::string(progress_mode_name(log.progress))}};
  return j;
}

nlohmann::json TrainConfig::identity_json() const {
  nlohmann::json j = to_json();
  for (const char* k : {"eval", "checkpoint", "output", "log", "recompute"}) j.erase(k);
  j["data"].erase("eval");
  return j;
}

LoraConfig TrainConfig::lora_config() const {
  LoraConfig l;
  l.rank = lora.rank;
  l.alpha = lora.alpha;
  l.rslora = lora.rslora;
  l.dropout = lora.dropout;
  l.targets = lora.targets;
  l.target_regex = lora.target_regex;
  l.seed = lora.seed;
  return l;
}

QatConfig TrainConfig::qat_config() const {
  QatConfig q;
  q.enabled = qat.enabled;
  q.weight_scale_format = qat.scale_format;
  q.quantize_activations = qat.quantize_activations;
  return q;
}

AdamWConfig TrainConfig::adamw_config() const {
  AdamWConfig a;
  a.beta1 = optim.beta1;
  a.beta2 = optim.beta2;
  a.eps = optim.eps;
  a.weight_decay = optim.weight_decay;
  a.moments = optim.moments;
  return a;
}

LrSchedule TrainConfig::lr_schedule() const {
  LrSchedule s;
  s.peak = optim.lr;
  s.warmup_steps = optim.schedule.warmup_steps;
  s.total_steps = steps;
  s.decay = optim.schedule.decay;
  s.min_ratio = optim.schedule.min_ratio;
  return s;
}

BatcherOptions TrainConfig::batcher_options() const {
  BatcherOptions b;
  b.batch_size = data.batch_size;
  b.seq_len = data.seq_len;
  b.mode = data.pack ? BatchMode::kPack : BatchMode::kPad;
  b.shuffle = data.shuffle;
  b.seed = seed;
  b.pad_id = 0;
  return b;
}

DatasetOptions TrainConfig::dataset_options() const {
  DatasetOptions o;
  o.max_length = data.max_length;
  o.on_overflow = data.on_overflow;
  return o;
}

fs::path TrainConfig::metrics_path() const { return output.dir / output.metrics; }

}  // namespace qaft
