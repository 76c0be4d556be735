// Target resolution (which linears get adapters), adapter parameter specs, PEFT initialisation and
// the census lines. Module paths and matching rules: lora_targets.h.
#include "adapters/lora_targets.h"

#include "core/error.h"
#include "core/rng.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <string_view>

namespace qaft {

double LoraConfig::scale() const {
  // PEFT (tuners/lora/layer.py update_layer): alpha / sqrt(r) with use_rslora, else alpha / r.
  QAFT_CHECK(rank > 0, "LoRA rank must be positive, got {}", rank);
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

std::string LoraTarget::a_name() const { return module + (experts > 0 ? ".lora_A" : ".lora_A.weight"); }
std::string LoraTarget::b_name() const { return module + (experts > 0 ? ".lora_B" : ".lora_B.weight"); }

namespace {

constexpr std::string_view kLayerPrefix = "model.layers.";

// A linear of the model that may carry an adapter: a plain [out, in] weight, or one layer's stacked
// routed experts [E, out, in] (one candidate, E module paths).
struct Candidate {
  std::string module;           // HF path; stacked experts "model.layers.L.mlp.experts.<proj>"
  const ParamSpec* spec = nullptr;
  std::vector<std::string> paths;  // the HF module paths a pattern is matched against ([E] for experts)
};

// The model's linears split into those LoRA may adapt and those it never does.
struct ModuleSet {
  std::vector<ParamSpec> specs;         // model_param_specs(config); candidates point into it
  std::vector<Candidate> candidates;    // in spec order
  std::vector<std::string> never;       // embed_tokens, lm_head, routers, shared_expert_gate
};

bool ends_with_component(std::string_view path, std::string_view name) {
  return path == name || (path.size() > name.size() && path.ends_with(name) &&
                          path[path.size() - name.size() - 1] == '.');
}

// "model.layers.3.self_attn.q_a_proj" -> "self_attn.q_a_proj"; other paths unchanged.
std::string_view strip_layer(std::string_view path) {
  if (!path.starts_with(kLayerPrefix)) return path;
  const size_t dot = path.find('.', kLayerPrefix.size());
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

// The layer index of a decoder-layer path, -1 for others.
int64_t layer_of(std::string_view path) {
  if (!path.starts_with(kLayerPrefix)) return -1;
  int64_t l = 0;
  for (size_t i = kLayerPrefix.size(); i < path.size() && path[i] != '.'; ++i) l = l * 10 + (path[i] - '0');
  return l;
}

// The short per-layer name of a module, as a user would write it as a target:
// "q_a_proj", "gate_proj" (dense MLP), "shared_experts.down_proj", "experts.{0..7}.up_proj",
// "mlp.gate" (router), "embed_tokens".
std::string kind_of(const std::string& module, int64_t experts) {
  std::string_view s = strip_layer(module);
  if (s.starts_with("model.")) s.remove_prefix(6);
  if (s.starts_with("self_attn.")) s.remove_prefix(10);
  if (s.starts_with("mlp.") && s != "mlp.gate") s.remove_prefix(4);
  if (experts == 0) return std::string(s);
  const size_t dot = s.rfind('.');  // "experts.gate_proj"
  return fmt::format("{}.{{0..{}}}.{}", s.substr(0, dot), experts - 1, s.substr(dot + 1));
}

// Candidates point into m.specs; moving the ModuleSet keeps the vector's buffer, so they stay valid.
ModuleSet model_modules(const ModelConfig& config) {
  ModuleSet m;
  m.specs = model_param_specs(config);
  for (const ParamSpec& spec : m.specs) {
    if (spec.experts > 0) {
      Candidate c{spec.name, &spec, {}};
      for (int64_t e = 0; e < spec.experts; ++e) {
        std::string path = spec.hf_name(e);  // "...experts.<e>.gate_proj.weight"
        path.resize(path.size() - 7);
        c.paths.push_back(std::move(path));
      }
      m.candidates.push_back(std::move(c));
      continue;
    }
    if (spec.shape.size() != 2 || !spec.name.ends_with(".weight")) continue;  // norms, biases
    std::string module = spec.name.substr(0, spec.name.size() - 7);
    const bool router = module.ends_with(".mlp.gate") || module.ends_with(".shared_expert_gate");
    if (!module.starts_with(kLayerPrefix) || router) {
      m.never.push_back(std::move(module));
      continue;
    }
    m.candidates.push_back(Candidate{module, &spec, {module}});
  }
  return m;
}

// Distinct items in first-seen order, joined with ", ".
std::string join_distinct(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& s : items)
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return fmt::format("{}", fmt::join(out, ", "));
}

// "modules of this model: q_a_proj, ..., experts.{0..7}.gate_proj, ...; never adapted: ..."
std::string describe_modules(const ModuleSet& m) {
  std::vector<std::string> kinds, never;
  for (const Candidate& c : m.candidates) kinds.push_back(kind_of(c.module, c.spec->experts));
  for (const std::string& n : m.never) never.push_back(kind_of(n, 0));
  return fmt::format("modules of this model: {}; never adapted: {}", join_distinct(kinds), join_distinct(never));
}

const char* const kTargetHint =
    "a target name matches a module path that equals it or ends with '.' + name (\"q_a_proj\", "
    "\"shared_experts.down_proj\"); \"all-linear\" selects every linear of the decoder layers";

void validate_config(const LoraConfig& lora) {
  QAFT_CHECK(lora.rank >= 1, "LoRA rank must be at least 1, got {}", lora.rank);
  QAFT_CHECK(std::isfinite(lora.alpha) && lora.alpha > 0, "LoRA alpha must be positive, got {}", lora.alpha);
  QAFT_CHECK(lora.dropout >= 0 && lora.dropout < 1, "LoRA dropout must be in [0, 1), got {}", lora.dropout);
  if (!lora.target_regex.empty()) return;
  QAFT_CHECK_HINT(!lora.targets.empty(), ErrorKind::kInvalidArgument, kTargetHint,
                  "no LoRA targets given (neither target names nor a target regex)");
  for (const std::string& t : lora.targets) {
    QAFT_CHECK_HINT(!t.empty(), ErrorKind::kInvalidArgument, kTargetHint, "empty LoRA target name");
    QAFT_CHECK_HINT(t != "all-linear" || lora.targets.size() == 1, ErrorKind::kInvalidArgument, kTargetHint,
                    "LoRA target \"all-linear\" cannot be combined with other names ({})",
                    fmt::join(lora.targets, ", "));
  }
}

// selected[c][e]: whether the patterns pick path e of candidate c. Throws when a name (or the
// regex) matches no candidate.
std::vector<std::vector<bool>> match(const ModuleSet& m, const LoraConfig& lora) {
  std::vector<std::vector<bool>> selected;
  for (const Candidate& c : m.candidates) selected.emplace_back(c.paths.size(), false);

  if (!lora.target_regex.empty()) {
    std::regex re;
    try {
      re = std::regex(lora.target_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      QAFT_FAIL(ErrorKind::kInvalidArgument, "target_regex uses ECMAScript syntax and must match a whole module path",
                "LoRA target_regex '{}' does not compile: {}", lora.target_regex, e.what());
    }
    bool any = false;
    for (size_t c = 0; c < m.candidates.size(); ++c)
      for (size_t e = 0; e < selected[c].size(); ++e)
        if (std::regex_match(m.candidates[c].paths[e], re)) any = selected[c][e] = true;
    if (!any) {
      std::vector<std::string> hit;
      for (const std::string& n : m.never)
        if (std::regex_match(n, re)) hit.push_back(kind_of(n, 0));
      QAFT_FAIL(ErrorKind::kInvalidArgument,
                "the regex must match a whole path such as model.layers.0.self_attn.o_proj (re.fullmatch)",
                "LoRA target_regex '{}' matches {}; {}", lora.target_regex,
                hit.empty() ? std::string("no module")
                            : fmt::format("only modules qaft never adapts ({})", join_distinct(hit)),
                describe_modules(m));
    }
    return selected;
  }

  if (lora.targets.size() == 1 && lora.targets[0] == "all-linear") {
    for (auto& s : selected) s.assign(s.size(), true);
    return selected;
  }
  for (const std::string& name : lora.targets) {
    bool any = false;
    for (size_t c = 0; c < m.candidates.size(); ++c)
      for (size_t e = 0; e < selected[c].size(); ++e)
        if (ends_with_component(m.candidates[c].paths[e], name)) any = selected[c][e] = true;
    if (any) continue;
    std::vector<std::string> hit;
    for (const std::string& n : m.never)
      if (ends_with_component(n, name)) hit.push_back(kind_of(n, 0));
    if (!hit.empty())
      QAFT_FAIL(ErrorKind::kInvalidArgument, kTargetHint,
                "LoRA target '{}' names {}, which qaft never adapts (the embedding, the LM head and the routers "
                "stay frozen); {}",
                name, join_distinct(hit), describe_modules(m));
    QAFT_FAIL(ErrorKind::kInvalidArgument, kTargetHint, "LoRA target '{}' matches no module; {}", name,
              describe_modules(m));
  }
  return selected;
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// 1234567 -> "1,234,567".
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// A percentage with about two significant digits: "12%", "1.2%", "0.012%".
std::string percent(double p) {
  if (p >= 10) return fmt::format("{:.0f}%", p);
  if (p >= 1) return fmt::format("{:.1f}%", p);
  return fmt::format("{:.2g}%", p);
}

int64_t adapter_numel(const LoraTarget& t) { return std::max<int64_t>(t.experts, 1) * t.rank * (t.out + t.in); }

// A stable RNG stream per module (FNV-1a), so that A of a module depends only on (seed, module).
uint64_t stream_of(const std::string& module) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : module) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace

std::vector<LoraTarget> resolve_lora_targets(const ModelConfig& config, const LoraConfig& lora) {
  validate_config(lora);
  const ModuleSet m = model_modules(config);
  const std::vector<std::vector<bool>> selected = match(m, lora);
  const std::string pattern =
      lora.target_regex.empty() ? fmt::format("targets {}", fmt::join(lora.targets, ", ")) : "target_regex " + lora.target_regex;

  std::vector<LoraTarget> targets;
  for (size_t c = 0; c < m.candidates.size(); ++c) {
    const Candidate& cand = m.candidates[c];
    const auto& sel = selected[c];
    const int64_t n = std::count(sel.begin(), sel.end(), true);
    if (n == 0) continue;
    if (n < static_cast<int64_t>(sel.size())) {
      std::vector<int64_t> picked;
      for (size_t e = 0; e < sel.size(); ++e)
        if (sel[e]) picked.push_back(static_cast<int64_t>(e));
      QAFT_FAIL(ErrorKind::kInvalidArgument,
                "qaft adapts a layer's routed experts all or none: widen the pattern to every expert or exclude them",
                "LoRA {}: {} of the {} routed experts of {} are selected (experts {}); a strict subset of a layer's "
                "experts cannot be adapted",
                pattern, n, sel.size(), cand.module, fmt::join(picked, ", "));
    }
    const std::vector<int64_t>& shape = cand.spec->shape;  // [out, in] or [E, out, in]
    LoraTarget t;
    t.module = cand.module;
    t.base_param = cand.spec->name;
    t.experts = cand.spec->experts;
    t.out = shape[shape.size() - 2];
    t.in = shape[shape.size() - 1];
    t.rank = lora.rank;
    QAFT_CHECK_HINT(t.rank <= std::min(t.out, t.in), ErrorKind::kInvalidArgument,
                    "choose a rank no larger than the smallest dimension of every adapted module, or target fewer modules",
                    "LoRA rank {} is larger than min(out, in) = {} of {} {}{}", t.rank, std::min(t.out, t.in), t.module,
                    shape_str({t.out, t.in}), t.experts > 0 ? fmt::format(" (each of {} experts)", t.experts) : "");
    targets.push_back(std::move(t));
  }
  return targets;
}

std::vector<ParamSpec> lora_param_specs(const std::vector<LoraTarget>& targets) {
  std::vector<ParamSpec> specs;
  for (const LoraTarget& t : targets) {
    ParamSpec a, b;
    a.name = t.a_name();
    b.name = t.b_name();
    a.shape = {t.rank, t.in};   // [r, in]
    b.shape = {t.out, t.rank};  // [out, r]
    if (t.experts > 0) {
      const size_t dot = t.module.rfind('.');  // "model.layers.L.mlp.experts" . "gate_proj"
      const std::string prefix = t.module.substr(0, dot), proj = t.module.substr(dot + 1);
      a.shape.insert(a.shape.begin(), t.experts);  // [E, r, in]
      b.shape.insert(b.shape.begin(), t.experts);  // [E, out, r]
      a.experts = b.experts = t.experts;
      a.expert_prefix = b.expert_prefix = prefix;
      a.expert_suffix = proj + ".lora_A.weight";
      b.expert_suffix = proj + ".lora_B.weight";
    }
    specs.push_back(std::move(a));
    specs.push_back(std::move(b));
  }
  return specs;
}

void init_lora_params(ParamStore<float>& lora, const std::vector<LoraTarget>& targets, uint64_t seed) {
  for (const LoraTarget& t : targets) {
    const int64_t copies = std::max<int64_t>(t.experts, 1);
    const int64_t na = copies * t.rank * t.in, nb = copies * t.out * t.rank;
    QAFT_CHECK_HINT(lora.spec(t.a_name()).numel() == na && lora.spec(t.b_name()).numel() == nb,
                    ErrorKind::kInternal, "", "LoRA parameters of {} do not match its target shape", t.module);
    float* a = lora.get(t.a_name());
    float* b = lora.get(t.b_name());
    // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound = gain·√3/√fan_in = 1/√in.
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(t.in)));
    const CounterRng rng(seed, stream_of(t.module));
#pragma omp parallel for schedule(static) if (na > (1 << 16))
    for (int64_t i = 0; i < na; ++i) a[i] = bound * (2.0f * rng.uniform(static_cast<uint64_t>(i)) - 1.0f);
    std::fill(b, b + nb, 0.0f);
  }
}

std::vector<std::string> lora_census_lines(const ModelConfig& config, const std::vector<LoraTarget>& targets) {
  const ModuleSet m = model_modules(config);
  int64_t trainable = 0, modules = 0;
  std::set<int64_t> ranks;
  for (const LoraTarget& t : targets) {
    trainable += adapter_numel(t);
    modules += std::max<int64_t>(t.experts, 1);
    ranks.insert(t.rank);
  }
  const int64_t total = parameter_count(config);
  std::vector<std::string> lines;
  lines.push_back(fmt::format("LoRA r={}: {} modules, {} trainable parameters ({} of {})", fmt::join(ranks, "/"),
                              modules, with_commas(trainable), percent(100.0 * static_cast<double>(trainable) /
                                                                         static_cast<double>(total)),
                              with_commas(total)));

  // Plain modules, one line per kind in model order: "  q_a_proj [24, 32]: 3/3 layers, 2,688 parameters".
  struct Kind {
    std::string shape;
    int64_t in_model = 0, adapted = 0, params = 0;
  };
  std::vector<std::string> order;
  std::map<std::string, Kind> kinds;
  std::set<int64_t> moe_layers;
  for (const Candidate& c : m.candidates) {
    if (c.spec->experts > 0) {
      moe_layers.insert(layer_of(c.module));
      continue;
    }
    const std::string k = kind_of(c.module, 0);
    if (!kinds.count(k)) order.push_back(k);
    kinds[k].shape = shape_str(c.spec->shape);
    ++kinds[k].in_model;
  }
  std::set<int64_t> expert_layers;
  std::vector<std::string> projs;
  int64_t expert_targets = 0, expert_params = 0, experts = 0;
  for (const LoraTarget& t : targets) {
    if (t.experts > 0) {
      expert_layers.insert(layer_of(t.module));
      std::string proj = t.module.substr(t.module.rfind('.') + 1);
      if (proj.ends_with("_proj")) proj.resize(proj.size() - 5);
      if (std::find(projs.begin(), projs.end(), proj) == projs.end()) projs.push_back(proj);
      ++expert_targets;
      expert_params += adapter_numel(t);
      experts = t.experts;
      continue;
    }
    Kind& k = kinds[kind_of(t.module, 0)];
    ++k.adapted;
    k.params += adapter_numel(t);
  }
  for (const std::string& name : order) {
    const Kind& k = kinds[name];
    if (k.adapted > 0)
      lines.push_back(fmt::format("  {} {}: {}/{} layers, {} parameters", name, k.shape, k.adapted, k.in_model,
                                  with_commas(k.params)));
  }
  if (expert_targets > 0) {
    const int64_t nl = static_cast<int64_t>(expert_layers.size());
    if (expert_targets == nl * static_cast<int64_t>(projs.size()))
      lines.push_back(fmt::format("  routed experts: {}/{} MoE layers x {} experts x {}, {} parameters", nl,
                                  moe_layers.size(), experts, fmt::join(projs, "/"), with_commas(expert_params)));
    else
      lines.push_back(fmt::format("  routed experts: {} layer projections in {}/{} MoE layers x {} experts ({}), {} "
                                  "parameters",
                                  expert_targets, nl, moe_layers.size(), experts, fmt::join(projs, "/"),
                                  with_commas(expert_params)));
  }
  return lines;
}

}  // namespace qaft
