#include "model/weights.h"

#include "core/log.h"
#include "core/rng.h"
#include "io/safetensors_index.h"
#include "numerics/bf16.h"
#include "numerics/fp16.h"
#include "numerics/fp8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

namespace qaft {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ParamSpec::hf_name(int64_t expert) const {
  if (experts == 0) return name;
  return fmt::format("{}.{}.{}", expert_prefix, expert, expert_suffix);
}

std::vector<ParamSpec> model_param_specs(const ModelConfig& c) {
  std::vector<ParamSpec> s;
  const int64_t C = c.hidden_size;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool fp8 = false) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.fp8_in_checkpoint = fp8;
    s.push_back(std::move(p));
  };
  auto add_mlp = [&](const std::string& prefix, int64_t inter) {
    add(prefix + ".gate_proj.weight", {inter, C}, true);
    add(prefix + ".up_proj.weight", {inter, C}, true);
    add(prefix + ".down_proj.weight", {C, inter}, true);
  };
  add("model.embed_tokens.weight", {c.vocab_size, C});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {C});
    if (c.attention == AttentionKind::kMla) {
      const int64_t H = c.num_heads;
      if (c.q_lora_rank > 0) {
        add(p + "self_attn.q_a_proj.weight", {c.q_lora_rank, C}, true);
        add(p + "self_attn.q_a_layernorm.weight", {c.q_lora_rank});
        add(p + "self_attn.q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}, true);
      } else {
        add(p + "self_attn.q_proj.weight", {H * c.qk_head_dim(), C}, true);
      }
      add(p + "self_attn.kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, C}, true);
      add(p + "self_attn.kv_a_layernorm.weight", {c.kv_lora_rank});
      add(p + "self_attn.kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, true);
      add(p + "self_attn.o_proj.weight", {C, H * c.v_head_dim}, true);
    } else {
      const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
      add(p + "self_attn.q_proj.weight", {q, C}, true);
      if (c.qkv_bias) add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.weight", {kv, C}, true);
      if (c.qkv_bias) add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.weight", {kv, C}, true);
      if (c.qkv_bias) add(p + "self_attn.v_proj.bias", {kv});
      add(p + "self_attn.o_proj.weight", {C, q}, true);
      if (c.o_bias) add(p + "self_attn.o_proj.bias", {C});
      if (c.qk_norm) {
        add(p + "self_attn.q_norm.weight", {c.head_dim});
        add(p + "self_attn.k_norm.weight", {c.head_dim});
      }
    }
    add(p + "post_attention_layernorm.weight", {C});
    if (!c.is_moe_layer(l)) {
      add_mlp(p + "mlp", c.intermediate_size);
      continue;
    }
    const int64_t E = c.num_experts, I = c.moe_intermediate_size;
    add(p + "mlp.gate.weight", {E, C});
    if (c.topk_method == TopkMethod::kNoauxTc) {
      add(p + "mlp.gate.e_score_correction_bias", {E});
      s.back().trainable = false;
    }
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      ParamSpec e;
      e.name = p + "mlp.experts." + proj;
      e.shape = std::string(proj) == "down_proj" ? std::vector<int64_t>{E, C, I} : std::vector<int64_t>{E, I, C};
      e.experts = E;
      e.expert_prefix = p + "mlp.experts";
      e.expert_suffix = std::string(proj) + ".weight";
      e.fp8_in_checkpoint = true;
      s.push_back(std::move(e));
    }
    if (c.shared_intermediate_size > 0) {
      if (c.family == ModelFamily::kQwen2Moe) {
        add_mlp(p + "mlp.shared_expert", c.shared_intermediate_size);
        add(p + "mlp.shared_expert_gate.weight", {1, C});
      } else {
        add_mlp(p + "mlp.shared_experts", c.shared_intermediate_size);
      }
    }
  }
  add("model.norm.weight", {C});
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, C});
  return s;
}

int64_t parameter_count(const ModelConfig& c) {
  int64_t n = 0;
  for (const ParamSpec& p : model_param_specs(c)) n += p.numel();
  return n;
}

int64_t active_parameter_count(const ModelConfig& c) {
  int64_t n = 0;
  for (const ParamSpec& p : model_param_specs(c))
    n += p.experts > 0 ? p.numel() / p.experts * c.num_experts_per_tok : p.numel();
  return n;
}

template <typename T>
ParamStore<T>::ParamStore(std::vector<ParamSpec> specs) : specs_(std::move(specs)) {
  int64_t total = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    QAFT_CHECK(index_.emplace(specs_[i].name, static_cast<int64_t>(i)).second, "duplicate parameter {}", specs_[i].name);
    offsets_.push_back(total);
    total += specs_[i].numel();
  }
  data_.assign(static_cast<size_t>(total), T(0));
}

template <typename T>
T* ParamStore<T>::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) return nullptr;
  return const_cast<T*>(data_.data()) + offsets_[static_cast<size_t>(it->second)];
}

template <typename T>
T* ParamStore<T>::get(std::string_view name) const {
  T* p = find(name);
  QAFT_CHECK_HINT(p != nullptr, ErrorKind::kInternal, "", "model has no parameter {}", name);
  return p;
}

template <typename T>
const ParamSpec& ParamStore<T>::spec(std::string_view name) const {
  auto it = index_.find(std::string(name));
  QAFT_CHECK_HINT(it != index_.end(), ErrorKind::kInternal, "", "model has no parameter {}", name);
  return specs_[static_cast<size_t>(it->second)];
}

template <typename T>
int64_t ParamStore<T>::offset(std::string_view name) const {
  auto it = index_.find(std::string(name));
  QAFT_CHECK_HINT(it != index_.end(), ErrorKind::kInternal, "", "model has no parameter {}", name);
  return offsets_[static_cast<size_t>(it->second)];
}

template <typename T>
void ParamStore<T>::zero() {
  std::fill(data_.begin(), data_.end(), T(0));
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

// Converts one checkpoint tensor into `out` (numel elements); returns false (and records why)
// when its dtype is not a supported floating type.
template <typename T>
bool convert(const ShardedCheckpoint& ck, const std::string& name, const TensorInfo& info, T* out,
             std::vector<std::string>& problems) {
  const uint8_t* p = ck.bytes(name).data();
  const int64_t n = info.numel();
  switch (info.dtype) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<T>(v);
      }
      return true;
    case DType::kBF16:
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = static_cast<T>(info.dtype == DType::kBF16 ? bf16_to_float(h) : fp16_to_float(h));
      }
      return true;
    case DType::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<T>(v);
      }
      return true;
    default:
      problems.push_back(fmt::format("{}: dtype {} is not a supported weight type (F32, BF16, F16, F64, F8_E4M3)",
                                     name, dtype_name(info.dtype)));
      return false;
  }
}

// Reads the weight_scale_inv of the F8_E4M3 tensor `name` [rows, cols] into scales
// [cdiv(rows,128), cdiv(cols,128)] (F32 as stored, BF16 widened exactly). Returns false (and
// records why) when the weight is not 2-D or its scales are missing or mis-shaped.
bool read_fp8_scales(const ShardedCheckpoint& ck, const std::string& name, const TensorInfo& info,
                     std::vector<float>& scales, std::vector<std::string>& problems) {
  const std::string sname = name + "_scale_inv";
  if (info.shape.size() != 2) {
    problems.push_back(fmt::format("{}: an F8_E4M3 weight must be 2-D, got {}", name, shape_str(info.shape)));
    return false;
  }
  const int64_t rows = info.shape[0], cols = info.shape[1];
  const std::vector<int64_t> want{(rows + 127) / 128, (cols + 127) / 128};
  if (!ck.contains(sname)) {
    problems.push_back(fmt::format("{}: F8_E4M3 weight without its {} (expected F32 {})", name, sname, shape_str(want)));
    return false;
  }
  const TensorInfo& si = ck.info(sname);
  if (si.shape != want || (si.dtype != DType::kF32 && si.dtype != DType::kBF16)) {
    problems.push_back(fmt::format("{}: dtype {} shape {}, expected F32 {}", sname, dtype_name(si.dtype),
                                   shape_str(si.shape), shape_str(want)));
    return false;
  }
  scales.resize(static_cast<size_t>(want[0] * want[1]));
  const uint8_t* sp = ck.bytes(sname).data();
  for (size_t i = 0; i < scales.size(); ++i) {
    if (si.dtype == DType::kF32) {
      std::memcpy(&scales[i], sp + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, sp + 2 * i, 2);
      scales[i] = bf16_to_float(h);
    }
  }
  return true;
}

// DeepSeek block FP8: W[i, j] = e4m3(code[i, j]) · scale_inv[i / 128, j / 128].
template <typename T>
bool dequant_fp8(const ShardedCheckpoint& ck, const std::string& name, const TensorInfo& info, T* out,
                 std::vector<std::string>& problems) {
  std::vector<float> scales;
  if (!read_fp8_scales(ck, name, info, scales, problems)) return false;
  const int64_t rows = info.shape[0], cols = info.shape[1], scale_cols = (cols + 127) / 128;
  const uint8_t* codes = ck.bytes(name).data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[r * cols + c] = static_cast<T>(fp8_decode(codes[r * cols + c], Fp8Format::kE4M3) *
                                         scales[static_cast<size_t>((r / 128) * scale_cols + c / 128)]);
  return true;
}

// The checkpoint entry of tensor `expert` of `spec` when present with the expected shape;
// nullptr (problem recorded) otherwise.
const TensorInfo* find_param_tensor(const ShardedCheckpoint& ck, const ParamSpec& spec, int64_t expert,
                                    std::vector<std::string>& problems) {
  const std::string hf = spec.hf_name(expert);
  std::vector<int64_t> shape = spec.shape;
  if (spec.experts > 0) shape.erase(shape.begin());
  if (!ck.contains(hf)) {
    problems.push_back(fmt::format("{}: missing (expected {})", hf, shape_str(shape)));
    return nullptr;
  }
  const TensorInfo& info = ck.info(hf);
  if (info.shape != shape) {
    problems.push_back(fmt::format("{}: shape {}, expected {}", hf, shape_str(info.shape), shape_str(shape)));
    return nullptr;
  }
  return &info;
}

void record_nonfinite(const std::string& name, double value, int64_t index, std::vector<std::string>& problems) {
  problems.push_back(fmt::format("{}: non-finite value {} at flat index {}", name, value, index));
}

// "model.layers.61.xxx" with 61 >= num_layers: a multi-token-prediction layer.
bool is_mtp_tensor(const std::string& name, int64_t num_layers) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return false;
  size_t end = name.find('.', prefix.size());
  if (end == std::string::npos) return false;
  try {
    return std::stoll(name.substr(prefix.size(), end - prefix.size())) >= num_layers;
  } catch (...) {
    return false;
  }
}

}  // namespace

template <typename T>
bool load_param_tensor(const ShardedCheckpoint& ck, const ParamSpec& spec, int64_t expert, T* out,
                       std::vector<std::string>& problems) {
  const TensorInfo* info = find_param_tensor(ck, spec, expert, problems);
  if (info == nullptr) return false;
  const std::string hf = spec.hf_name(expert);
  const bool converted = info->dtype == DType::kE4M3 ? dequant_fp8(ck, hf, *info, out, problems)
                                                     : convert(ck, hf, *info, out, problems);
  if (!converted) return false;
  const int64_t n = info->numel();
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(static_cast<double>(out[i]))) {
      record_nonfinite(hf, static_cast<double>(out[i]), i, problems);
      return false;
    }
  return true;
}

bool is_fp8_block_tensor(const ShardedCheckpoint& ck, const ParamSpec& spec, int64_t expert) {
  const std::string hf = spec.hf_name(expert);
  return ck.contains(hf) && ck.info(hf).dtype == DType::kE4M3;
}

bool load_fp8_block_tensor(const ShardedCheckpoint& ck, const ParamSpec& spec, int64_t expert, uint8_t* codes,
                           float* scales, std::vector<std::string>& problems) {
  const TensorInfo* info = find_param_tensor(ck, spec, expert, problems);
  if (info == nullptr) return false;
  const std::string hf = spec.hf_name(expert);
  QAFT_CHECK_HINT(info->dtype == DType::kE4M3, ErrorKind::kInternal, "", "{} is {}, not F8_E4M3", hf,
                  dtype_name(info->dtype));
  std::vector<float> file_scales;
  if (!read_fp8_scales(ck, hf, *info, file_scales, problems)) return false;
  const int64_t rows = info->shape[0], cols = info->shape[1], scale_cols = (cols + 127) / 128;
  std::memcpy(codes, ck.bytes(hf).data(), static_cast<size_t>(rows * cols));
  std::memcpy(scales, file_scales.data(), file_scales.size() * sizeof(float));
  // The finiteness check of load_param_tensor, on the values it would have produced.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = fp8_decode(codes[r * cols + c], Fp8Format::kE4M3) *
                      file_scales[static_cast<size_t>((r / 128) * scale_cols + c / 128)];
      if (!std::isfinite(v)) {
        record_nonfinite(hf, static_cast<double>(v), r * cols + c, problems);
        return false;
      }
    }
  return true;
}

void check_unexpected_tensors(const ShardedCheckpoint& ck, const std::vector<ParamSpec>& specs,
                              const ModelConfig& config, std::vector<std::string>& problems) {
  std::set<std::string> expected;
  for (const ParamSpec& spec : specs)
    for (int64_t e = 0; e < std::max<int64_t>(spec.experts, 1); ++e) {
      const std::string hf = spec.hf_name(e);
      expected.insert(hf);
      expected.insert(hf + "_scale_inv");
    }
  int64_t mtp = 0;
  for (const std::string& name : ck.names()) {
    if (expected.count(name)) continue;
    if (is_mtp_tensor(name, config.num_layers)) {
      ++mtp;
      continue;
    }
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    problems.push_back(fmt::format("{}: unexpected tensor (not part of a {} model with this config)", name, config.model_type));
  }
  if (mtp > 0)
    QAFT_LOG(kInfo, "skipped {} multi-token-prediction tensors (model.layers.{}+); qaft does not use the MTP module",
             mtp, config.num_layers);
}

void throw_load_problems(const ShardedCheckpoint& ck, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string list;
  for (size_t i = 0; i < problems.size() && i < 50; ++i) list += "\n  - " + problems[i];
  if (problems.size() > 50) list += fmt::format("\n  ... and {} more", problems.size() - 50);
  QAFT_FAIL(ErrorKind::kInvalidFile, "the checkpoint does not match config.json; check that both come from the same model",
            "{}: {} problem(s) loading the checkpoint:{}", ck.dir(), problems.size(), list);
}

template <typename T>
ParamStore<T> load_params(const ShardedCheckpoint& ck, const ModelConfig& config) {
  ParamStore<T> store(model_param_specs(config));
  std::vector<std::string> problems;
  for (const ParamSpec& spec : store.specs()) {
    const int64_t copies = std::max<int64_t>(spec.experts, 1);
    const int64_t per = spec.numel() / copies;
    for (int64_t e = 0; e < copies; ++e) load_param_tensor(ck, spec, e, store.get(spec.name) + e * per, problems);
  }
  check_unexpected_tensors(ck, store.specs(), config, problems);
  throw_load_problems(ck, problems);
  return store;
}

template <typename T>
void init_params_random(ParamStore<T>& params, uint64_t seed, double std, bool random_router_bias) {
  uint64_t stream = 0;
  for (const ParamSpec& spec : params.specs()) {
    T* p = params.get(spec.name);
    const int64_t n = spec.numel();
    CounterRng rng(seed, stream++);
    const bool is_norm = spec.shape.size() == 1 && spec.name.find("norm") != std::string::npos;
    const bool is_bias = spec.name.ends_with(".bias");
    const bool is_router_bias = spec.name.ends_with("e_score_correction_bias");
    // Counter-based RNG: element i's value depends only on (seed, stream, i), so this loop is
    // parallel and gives the same values for any thread count.
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
      if (is_norm) p[i] = T(1);
      else if (is_router_bias) p[i] = random_router_bias ? static_cast<T>(std * rng.normal(static_cast<uint64_t>(i))) : T(0);
      else if (is_bias) p[i] = T(0);
      else p[i] = static_cast<T>(std * rng.normal(static_cast<uint64_t>(i)));
    }
  }
}

template class ParamStore<float>;
template class ParamStore<double>;
template ParamStore<float> load_params<float>(const ShardedCheckpoint&, const ModelConfig&);
template ParamStore<double> load_params<double>(const ShardedCheckpoint&, const ModelConfig&);
template bool load_param_tensor<float>(const ShardedCheckpoint&, const ParamSpec&, int64_t, float*,
                                       std::vector<std::string>&);
template bool load_param_tensor<double>(const ShardedCheckpoint&, const ParamSpec&, int64_t, double*,
                                        std::vector<std::string>&);
template void init_params_random<float>(ParamStore<float>&, uint64_t, double, bool);
template void init_params_random<double>(ParamStore<double>&, uint64_t, double, bool);

}  // namespace qaft
