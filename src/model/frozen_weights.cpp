#include "model/frozen_weights.h"

#include "core/error.h"
#include "io/safetensors_index.h"
#include "numerics/bf16.h"
#include "numerics/scale_recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace qaft {

namespace {

constexpr BaseFormat kAllFormats[] = {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4};

// Work below this many elements stays on one thread.
constexpr int64_t kParallelElements = int64_t{1} << 16;

// The DeepSeek weight recipe: 128×128 blocks, E4M3 codes, fp32 scales, amax floor 1e-4.
const ScaleRecipe& fp8_recipe() {
  static const ScaleRecipe recipe = ScaleRecipe::deepseek_weight();
  return recipe;
}

// Scale grid entries of one group: cdiv(out,128) · cdiv(in,128).
int64_t fp8_scales_per_group(int64_t out, int64_t in) {
  return fp8_recipe().scale_rows(out) * fp8_recipe().scale_cols(in);
}

// A FrozenTensor with storage for every group, contents zero (filled by freeze_group / the FP8
// checkpoint path).
FrozenTensor allocate_frozen(int64_t groups, int64_t out, int64_t in, BaseFormat format) {
  QAFT_CHECK(format != BaseFormat::kF32, "a frozen tensor needs a storage format (bf16, fp8 or nf4), not f32");
  QAFT_CHECK(groups >= 0 && out >= 0 && in >= 0, "frozen tensor shape [{}, {}, {}] is negative", groups, out, in);
  FrozenTensor t;
  t.format = format;
  t.groups = groups;
  t.out = out;
  t.in = in;
  const auto per_group = static_cast<size_t>(out * in);
  const auto g = static_cast<size_t>(t.num_groups());
  switch (format) {
    case BaseFormat::kBf16:
      t.bf16.resize(g * per_group);
      break;
    case BaseFormat::kFp8:
      t.fp8_codes.resize(g * per_group);
      t.fp8_scales.resize(g * static_cast<size_t>(fp8_scales_per_group(out, in)));
      break;
    case BaseFormat::kNf4:
      t.nf4.resize(g);
      break;
    case BaseFormat::kF32:
      break;
  }
  return t;
}

// Quantizes w [out, in] into group g of t. Not thread-safe for the same g; distinct groups may be
// filled concurrently.
void freeze_group(const float* w, int64_t g, FrozenTensor& t) {
  const int64_t per_group = t.out * t.in;
  switch (t.format) {
    case BaseFormat::kBf16: {
      uint16_t* dst = t.bf16.data() + g * per_group;
      constexpr int64_t kChunk = 1 << 14;
      const int64_t chunks = (per_group + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (per_group >= kParallelElements)
      for (int64_t c = 0; c < chunks; ++c)
        bf16_from_float_n(w + c * kChunk, std::min(kChunk, per_group - c * kChunk), dst + c * kChunk);
      break;
    }
    case BaseFormat::kFp8:
      // quantize() parallelizes over 128-row blocks itself.
      quantize(w, t.out, t.in, t.in, fp8_recipe(), t.fp8_codes.data() + g * per_group,
               t.fp8_scales.data() + g * fp8_scales_per_group(t.out, t.in));
      break;
    case BaseFormat::kNf4:
      t.nf4[static_cast<size_t>(g)] = nf4_quantize_tensor(w, t.out, t.in, /*double_quant=*/true, kNf4DefaultBlocksize);
      break;
    case BaseFormat::kF32:
      QAFT_FAIL(ErrorKind::kInternal, "", "freeze_group called with format f32");
  }
}

// Throws unless t's arrays have the sizes its format and shape call for (a FrozenTensor is a plain
// struct: it may have been assembled by hand or from a file).
void check_storage(const FrozenTensor& t) {
  const auto per_group = static_cast<size_t>(t.out * t.in);
  const auto g = static_cast<size_t>(t.num_groups());
  switch (t.format) {
    case BaseFormat::kBf16:
      QAFT_CHECK(t.bf16.size() == g * per_group, "bf16 frozen tensor [{}, {}, {}] holds {} values, expected {}",
                 t.num_groups(), t.out, t.in, t.bf16.size(), g * per_group);
      return;
    case BaseFormat::kFp8: {
      const auto scales = g * static_cast<size_t>(fp8_scales_per_group(t.out, t.in));
      QAFT_CHECK(t.fp8_codes.size() == g * per_group && t.fp8_scales.size() == scales,
                 "fp8 frozen tensor [{}, {}, {}] holds {} codes and {} scales, expected {} and {}", t.num_groups(),
                 t.out, t.in, t.fp8_codes.size(), t.fp8_scales.size(), g * per_group, scales);
      return;
    }
    case BaseFormat::kNf4:
      QAFT_CHECK(t.nf4.size() == g, "nf4 frozen tensor with {} group(s) holds {} NF4 tensors", g, t.nf4.size());
      for (const Nf4Tensor& q : t.nf4) {
        QAFT_CHECK(q.rows == t.out && q.cols == t.in, "nf4 frozen tensor [{}, {}] holds an NF4 tensor [{}, {}]", t.out,
                   t.in, q.rows, q.cols);
        nf4_check_tensor(q);
      }
      return;
    case BaseFormat::kF32:
      break;
  }
  QAFT_FAIL(ErrorKind::kInvalidArgument, "", "a frozen tensor cannot be in format {}", base_format_name(t.format));
}

// The (groups, out, in) of a frozen parameter: [out, in] or [E, out, in].
struct FrozenShape {
  int64_t groups = 0;
  int64_t out = 0;
  int64_t in = 0;
};

FrozenShape frozen_shape(const ParamSpec& spec) {
  if (spec.experts > 0) {
    QAFT_CHECK_HINT(spec.shape.size() == 3, ErrorKind::kInternal, "", "stacked parameter {} has shape rank {}",
                    spec.name, spec.shape.size());
    return {spec.shape[0], spec.shape[1], spec.shape[2]};
  }
  QAFT_CHECK_HINT(spec.shape.size() == 2, ErrorKind::kInternal, "", "linear weight {} has shape rank {}", spec.name,
                  spec.shape.size());
  return {0, spec.shape[0], spec.shape[1]};
}

// The specs that stay in the float store, in model order.
std::vector<ParamSpec> non_frozen_specs(const std::vector<ParamSpec>& specs) {
  std::vector<ParamSpec> kept;
  for (const ParamSpec& spec : specs)
    if (!is_frozen_linear(spec)) kept.push_back(spec);
  return kept;
}

// Loads frozen parameter `spec` from the checkpoint, tensor by tensor (expert by expert), into a
// FrozenTensor; keeps block-FP8 tensors as stored when format is kFp8. Returns false when any of
// its tensors recorded a problem (in `problems`, with load_params' messages).
bool load_frozen_param(const ShardedCheckpoint& ck, const ParamSpec& spec, BaseFormat format, FrozenTensor& t,
                       std::vector<std::string>& problems) {
  const FrozenShape s = frozen_shape(spec);
  t = allocate_frozen(s.groups, s.out, s.in, format);
  const int64_t per_group = s.out * s.in;
  std::vector<float> buffer;  // [out, in] one tensor in fp32, when it has to be (re)quantized
  bool ok = true;
  for (int64_t g = 0; g < t.num_groups(); ++g) {
    if (format == BaseFormat::kFp8 && is_fp8_block_tensor(ck, spec, g)) {
      ok &= load_fp8_block_tensor(ck, spec, g, t.fp8_codes.data() + g * per_group,
                                  t.fp8_scales.data() + g * fp8_scales_per_group(s.out, s.in), problems);
      continue;
    }
    buffer.resize(static_cast<size_t>(per_group));
    if (!load_param_tensor(ck, spec, g, buffer.data(), problems)) {
      ok = false;
      continue;
    }
    freeze_group(buffer.data(), g, t);
  }
  return ok;
}

}  // namespace

std::string_view base_format_name(BaseFormat f) {
  switch (f) {
    case BaseFormat::kF32: return "f32";
    case BaseFormat::kBf16: return "bf16";
    case BaseFormat::kFp8: return "fp8";
    case BaseFormat::kNf4: return "nf4";
  }
  return "?";
}

BaseFormat parse_base_format(std::string_view name) {
  for (BaseFormat f : kAllFormats)
    if (name == base_format_name(f)) return f;
  QAFT_FAIL(ErrorKind::kInvalidArgument, "pass one of f32, bf16, fp8, nf4",
            "unknown base weight format \"{}\"; valid formats: f32, bf16, fp8, nf4", name);
}

bool is_frozen_linear(const ParamSpec& spec) {
  if (spec.experts > 0) return spec.shape.size() == 3;  // stacked routed experts [E, out, in]
  if (spec.shape.size() != 2 || !spec.name.starts_with("model.layers.") || !spec.name.ends_with(".weight"))
    return false;
  // The module: "q_a_proj", "kv_a_proj_with_mqa", "gate_proj" — not "gate" (the router) nor
  // "shared_expert_gate", which are 2-D as well.
  const std::string_view name = spec.name;
  const std::string_view path = name.substr(0, name.size() - std::string_view(".weight").size());
  const std::string_view module = path.substr(path.rfind('.') + 1);
  return spec.fp8_in_checkpoint || module.find("_proj") != std::string_view::npos;
}

// ---- FrozenTensor ------------------------------------------------------------------------------

int64_t FrozenTensor::bytes() const {
  auto total = static_cast<int64_t>(bf16.size() * sizeof(uint16_t) + fp8_codes.size() + fp8_scales.size() * sizeof(float));
  for (const Nf4Tensor& t : nf4) total += static_cast<int64_t>(t.storage_bytes());
  return total;
}

void FrozenTensor::dequantize(int64_t group, float* dst) const {
  QAFT_CHECK(group >= 0 && group < num_groups(), "group {} is out of range for a frozen tensor of {} group(s)", group,
             num_groups());
  QAFT_CHECK(dst != nullptr || out * in == 0, "FrozenTensor::dequantize given a null output");
  check_storage(*this);  // here, not inside the parallel loops below (they must not throw)
  const int64_t per_group = out * in;
  switch (format) {
    case BaseFormat::kBf16: {
      const uint16_t* src = bf16.data() + group * per_group;
      constexpr int64_t kChunk = 1 << 14;
      const int64_t chunks = (per_group + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (per_group >= kParallelElements)
      for (int64_t c = 0; c < chunks; ++c)
        bf16_to_float_n(src + c * kChunk, std::min(kChunk, per_group - c * kChunk), dst + c * kChunk);
      return;
    }
    case BaseFormat::kFp8:
      // Parallel over rows inside; each value is decode(code) · scale, one fp32 product.
      qaft::dequantize(fp8_codes.data() + group * per_group, fp8_scales.data() + group * fp8_scales_per_group(out, in),
                       out, in, fp8_recipe(), dst);
      return;
    case BaseFormat::kNf4: {
      const Nf4Tensor& t = nf4[static_cast<size_t>(group)];
      // Row ranges are independent (each reconstructs the statistics of the blocks it touches).
      constexpr int64_t kRowsPerTask = 64;
      const int64_t tasks = (out + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (per_group >= kParallelElements)
      for (int64_t k = 0; k < tasks; ++k) {
        const int64_t r0 = k * kRowsPerTask, r1 = std::min(out, r0 + kRowsPerTask);
        nf4_dequantize_rows(t, r0, r1, dst + r0 * in);
      }
      return;
    }
    case BaseFormat::kF32:
      break;
  }
  QAFT_FAIL(ErrorKind::kInternal, "", "a frozen tensor in format {}", base_format_name(format));
}

void FrozenTensor::dequantize(int64_t group, double* dst) const {
  std::vector<float> values(static_cast<size_t>(out * in));
  dequantize(group, values.data());
  std::copy(values.begin(), values.end(), dst);
}

// ---- FrozenStore -------------------------------------------------------------------------------

const FrozenTensor* FrozenStore::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void FrozenStore::insert(const std::string& name, FrozenTensor t) {
  QAFT_CHECK_HINT(tensors_.emplace(name, std::move(t)).second, ErrorKind::kInternal, "",
                  "frozen store already holds {}", name);
}

int64_t FrozenStore::bytes() const {
  int64_t total = 0;
  for (const auto& [name, t] : tensors_) total += t.bytes();
  return total;
}

// ---- Freezing and loading ----------------------------------------------------------------------

FrozenTensor freeze_tensor(const float* w, int64_t groups, int64_t out, int64_t in, BaseFormat format) {
  FrozenTensor t = allocate_frozen(groups, out, in, format);
  const int64_t per_group = out * in;
  QAFT_CHECK(w != nullptr || per_group == 0, "freeze_tensor given a null weight");
  if (format == BaseFormat::kNf4) {
    // nf4_quantize_tensor is single-threaded: spread the groups (experts) over threads.
#pragma omp parallel for schedule(dynamic) if (t.num_groups() > 1 && per_group * t.num_groups() >= kParallelElements)
    for (int64_t g = 0; g < t.num_groups(); ++g) freeze_group(w + g * per_group, g, t);
    return t;
  }
  for (int64_t g = 0; g < t.num_groups(); ++g) freeze_group(w + g * per_group, g, t);
  return t;
}

BaseModel freeze_base_model(ParamStore<float> all, BaseFormat format) {
  BaseModel m;
  m.format = format;
  if (format == BaseFormat::kF32) {
    m.params = std::move(all);
    return m;
  }
  m.params = ParamStore<float>(non_frozen_specs(all.specs()));
  for (const ParamSpec& spec : all.specs()) {
    const float* src = all.get(spec.name);
    if (!is_frozen_linear(spec)) {
      std::memcpy(m.params.get(spec.name), src, static_cast<size_t>(spec.numel()) * sizeof(float));
      continue;
    }
    const FrozenShape s = frozen_shape(spec);
    m.frozen.insert(spec.name, freeze_tensor(src, s.groups, s.out, s.in, format));
  }
  return m;
}

BaseModel load_base_model(const ShardedCheckpoint& ck, const ModelConfig& config, BaseFormat format) {
  BaseModel m;
  m.format = format;
  if (format == BaseFormat::kF32) {
    m.params = load_params<float>(ck, config);
    return m;
  }
  const std::vector<ParamSpec> specs = model_param_specs(config);
  m.params = ParamStore<float>(non_frozen_specs(specs));
  std::vector<std::string> problems;
  // In model order, so the problems come in load_params' order.
  for (const ParamSpec& spec : specs) {
    if (!is_frozen_linear(spec)) {
      const int64_t copies = std::max<int64_t>(spec.experts, 1);
      const int64_t per = spec.numel() / copies;
      for (int64_t e = 0; e < copies; ++e) load_param_tensor(ck, spec, e, m.params.get(spec.name) + e * per, problems);
      continue;
    }
    FrozenTensor t;
    if (load_frozen_param(ck, spec, format, t, problems)) m.frozen.insert(spec.name, std::move(t));
  }
  check_unexpected_tensors(ck, specs, config, problems);
  throw_load_problems(ck, problems);
  return m;
}

}  // namespace qaft
