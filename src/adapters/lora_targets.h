// Which linears of a model carry LoRA adapters, and the adapter parameters' names and shapes.
//
// Target patterns follow PEFT's `target_modules` (formats.md §5.3):
//   - "all-linear": every linear of the decoder layers (attention projections, dense MLP, shared
//     experts, every routed expert's gate/up/down); never the LM head, the embedding or the router;
//   - a list of names: a module matches when its path equals the name or ends with "." + name
//     ("q_a_proj", "mlp.experts.gate_proj" is not a module path — use "gate_proj");
//   - a regular expression (`target_regex`): a module matches when the whole path matches
//     (Python re.fullmatch semantics, ECMAScript syntax).
// Module paths are the HF module names: "model.layers.3.self_attn.kv_b_proj",
// "model.layers.3.mlp.experts.17.gate_proj", "model.layers.3.mlp.shared_experts.down_proj".
// Routed experts are adapted per layer and projection as a whole: a pattern must match every
// expert of a layer's projection or none (adapting a subset is refused with an error).
//
// Adapter parameters (qaft names; PEFT names are hf_name(e) with "base_model.model." in front):
//   plain linear   "<module>.lora_A.weight" [r, in], "<module>.lora_B.weight" [out, r]
//   routed experts "model.layers.L.mlp.experts.<proj>.lora_A" [E, r, in] and ".lora_B" [E, out, r],
//                  stacked; expert e's PEFT key is "model.layers.L.mlp.experts.<e>.<proj>.lora_A.weight"
#pragma once

#include "model/weights.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qaft {

struct LoraConfig {
  int64_t rank = 8;                              // r
  double alpha = 16;                             // lora_alpha
  bool rslora = false;                           // s = alpha / sqrt(r) instead of alpha / r
  double dropout = 0;                            // lora_dropout on the adapter's input (not with QAT)
  std::vector<std::string> targets = {"all-linear"};  // names, or {"all-linear"}
  std::string target_regex;                      // used instead of `targets` when non-empty
  uint64_t seed = 0;                             // initialisation of A

  double scale() const;                          // s, as PEFT computes it
};

// One adapted module.
struct LoraTarget {
  std::string module;       // HF module path; for experts "model.layers.L.mlp.experts.<proj>" (no index)
  std::string base_param;   // the qaft name of the base weight ("...q_a_proj.weight", "...experts.gate_proj")
  int64_t experts = 0;      // > 0: routed experts of one layer, stacked
  int64_t out = 0;
  int64_t in = 0;
  int64_t rank = 0;
  std::string a_name() const;  // qaft names of the adapter parameters
  std::string b_name() const;
};

// Every module the patterns select, in model_param_specs order. Throws kInvalidArgument when:
// nothing matches (listing the module names that exist, shortened per layer), a pattern matches a
// strict subset of a layer's routed experts, the rank is < 1 or larger than min(out, in) of a
// matched module (naming it), alpha is not positive, dropout is outside [0, 1), or the regex does
// not compile.
std::vector<LoraTarget> resolve_lora_targets(const ModelConfig& config, const LoraConfig& lora);

// The adapter parameters of `targets` (A then B per target). Stacked expert parameters have
// experts = E, expert_prefix "model.layers.L.mlp.experts", expert_suffix "<proj>.lora_A.weight".
std::vector<ParamSpec> lora_param_specs(const std::vector<LoraTarget>& targets);

// PEFT's initialisation: A ~ kaiming_uniform(a = √5) = U(−1/√in, 1/√in) from `seed`, B = 0.
void init_lora_params(ParamStore<float>& lora, const std::vector<LoraTarget>& targets, uint64_t seed);

// The start-of-run census lines: per module kind, how many modules carry adapters (e.g.
// "q_a_proj 4/4 layers", "routed experts gate/up/down 3 layers × 8 experts"), and the trainable
// parameter count against the model's total.
std::vector<std::string> lora_census_lines(const ModelConfig& config, const std::vector<LoraTarget>& targets);

}  // namespace qaft
