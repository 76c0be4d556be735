// The model's parameters: their names and shapes per architecture (the name map), a contiguous
// store of them, and loading from a Hugging Face checkpoint directory.
//
// Names are the Hugging Face names (formats.md §1.7, §2), except that routed experts are stacked
// per layer: "model.layers.{L}.mlp.experts.gate_proj" [E, I, C] holds every
// "model.layers.{L}.mlp.experts.{e}.gate_proj.weight" so the grouped expert GEMM sees one buffer.
// Loading converts BF16/F16/F32 and DeepSeek block-FP8 (E4M3 `weight` × 128×128 `weight_scale_inv`)
// to the compute type; stacking the experts and converting are copies (see docs/model.md).
#pragma once

#include "core/error.h"
#include "model/config.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qaft {

class ShardedCheckpoint;

struct ParamSpec {
  std::string name;            // qaft name (= HF name except stacked experts)
  std::vector<int64_t> shape;  // [out, in] for linears; [E, out, in] for stacked experts
  int64_t experts = 0;         // > 0: stacked; HF names are <prefix>.{e}.<expert_suffix>
  std::string expert_prefix;   // "model.layers.3.mlp.experts"
  std::string expert_suffix;   // "gate_proj.weight"
  bool fp8_in_checkpoint = false;  // a linear weight that DeepSeek FP8 checkpoints store as E4M3
  bool trainable = true;       // false for buffers (the router correction bias)
  int64_t numel() const;
  // The HF name of expert e of a stacked parameter (or `name` for a plain one).
  std::string hf_name(int64_t expert = -1) const;
};

// Every parameter of the model described by `config`, in a fixed order.
std::vector<ParamSpec> model_param_specs(const ModelConfig& config);
// Parameter counts: total, and active per token (embedding + attention + dense + shared +
// K routed experts + head), as `qaft inspect` prints them.
int64_t parameter_count(const ModelConfig& config);
int64_t active_parameter_count(const ModelConfig& config);

// All parameters in one contiguous zero-initialised buffer, in spec order.
template <typename T>
class ParamStore {
 public:
  ParamStore() = default;
  explicit ParamStore(std::vector<ParamSpec> specs);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  // Pointer to a parameter's data; throws naming the parameter when absent.
  T* get(std::string_view name) const;
  // nullptr when absent.
  T* find(std::string_view name) const;
  const ParamSpec& spec(std::string_view name) const;
  T* data() const { return const_cast<T*>(data_.data()); }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }
  int64_t offset(std::string_view name) const;
  void zero();

 private:
  std::vector<ParamSpec> specs_;
  std::vector<T> data_;
  std::unordered_map<std::string, int64_t> index_;  // name -> spec position
  std::vector<int64_t> offsets_;                    // [specs] element offset of each parameter
};

// Loads every parameter of `config` from the checkpoint. Collects all problems — missing tensors,
// unexpected tensors, wrong shapes, unsupported dtypes, non-finite values (with the tensor name) —
// and throws one kInvalidFile error listing them. The MTP layers
// (model.layers.{num_hidden_layers..}) are skipped with a notice.
template <typename T>
ParamStore<T> load_params(const ShardedCheckpoint& checkpoint, const ModelConfig& config);

// ---- The steps of load_params, one checkpoint tensor at a time ----------------------------------
// For loaders that keep some parameters in another form (model/frozen_weights.h). Each step appends
// load_params' messages to `problems`; throw_load_problems reports them as load_params does.

// Loads tensor `expert` of `spec` (its HF name spec.hf_name(expert); pass 0 for a plain parameter),
// converted to T, into out [numel / max(experts, 1)]: checks presence, shape, dtype (BF16, F16,
// F32, F64, or F8_E4M3 with its weight_scale_inv) and finiteness. Returns false when it recorded
// a problem.
template <typename T>
bool load_param_tensor(const ShardedCheckpoint& checkpoint, const ParamSpec& spec, int64_t expert, T* out,
                       std::vector<std::string>& problems);
// True when tensor `expert` of `spec` is in the checkpoint as F8_E4M3 (DeepSeek block FP8).
bool is_fp8_block_tensor(const ShardedCheckpoint& checkpoint, const ParamSpec& spec, int64_t expert);
// For such a tensor [out, in]: copies its E4M3 codes into codes [out, in] and its weight_scale_inv
// into scales [cdiv(out,128), cdiv(in,128)] (fp32; BF16 scales are widened exactly), as stored —
// no dequantization — with the checks and messages of load_param_tensor (the finiteness check is on
// the dequantized values code · scale). Returns false when it recorded a problem.
bool load_fp8_block_tensor(const ShardedCheckpoint& checkpoint, const ParamSpec& spec, int64_t expert,
                           uint8_t* codes, float* scales, std::vector<std::string>& problems);
// Records every checkpoint tensor that no spec expects (MTP layers and rotary inv_freq buffers are
// skipped; the MTP ones with a notice).
void check_unexpected_tensors(const ShardedCheckpoint& checkpoint, const std::vector<ParamSpec>& specs,
                              const ModelConfig& config, std::vector<std::string>& problems);
// Throws load_params' kInvalidFile error listing `problems`; does nothing when there are none.
void throw_load_problems(const ShardedCheckpoint& checkpoint, const std::vector<std::string>& problems);

// Deterministic random initialisation for tests and pretraining from scratch: linears and
// experts ~ N(0, std), norms = 1, biases = 0 (router correction bias ~ N(0, std) when
// `random_router_bias`).
template <typename T>
void init_params_random(ParamStore<T>& params, uint64_t seed, double std, bool random_router_bias = false);

}  // namespace qaft
