#include "model/checkpoint.h"

#include "io/atomic_file.h"
#include "io/safetensors_index.h"
#include "numerics/bf16.h"

#include <nlohmann/json.hpp>

#include <deque>
#include <filesystem>

namespace qaft {

void set_checkpoint_format(nlohmann::json& cfg, CheckpointFormat format, ScaleFormat fp8_scale_format) {
  if (format == CheckpointFormat::kFp8Block) {
    cfg["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                  {"weight_block_size", {128, 128}}};
    if (fp8_scale_format == ScaleFormat::kUe8m0) cfg["quantization_config"]["scale_fmt"] = "ue8m0";
  } else {
    cfg.erase("quantization_config");
  }
  cfg["torch_dtype"] = format == CheckpointFormat::kF32 ? "float32" : "bfloat16";
}

bool checkpoint_keeps_f32(std::string_view name) {
  return name.ends_with("e_score_correction_bias") || name.ends_with(".bias");
}

void save_checkpoint(const ParamStore<float>& params, const std::string& config_json, const std::string& dir,
                     const CheckpointOptions& opt) {
  nlohmann::json cfg = nlohmann::json::parse(config_json);
  set_checkpoint_format(cfg, opt.format, opt.fp8_scale_format);
  std::filesystem::create_directories(dir);

  // Buffers must outlive writer.write(); a deque keeps element addresses stable.
  std::deque<std::vector<uint8_t>> bytes;
  std::deque<std::vector<float>> floats;
  std::deque<std::vector<uint16_t>> halves;
  ShardedWriter shard_writer(opt.max_shard_bytes == 0 ? UINT64_MAX : opt.max_shard_bytes);
  auto add_tensor = [&](const std::string& name, const ParamSpec& spec, const float* data, std::vector<int64_t> shape,
                        int64_t n) {
    const bool keep_f32 = opt.format == CheckpointFormat::kF32 || checkpoint_keeps_f32(name);
    if (opt.format == CheckpointFormat::kFp8Block && spec.fp8_in_checkpoint) {
      const ScaleRecipe recipe{Granularity::kBlock128x128, opt.fp8_scale_format, Fp8Format::kE4M3, 0.0f};
      auto& codes = bytes.emplace_back(static_cast<size_t>(n));
      auto& scales = floats.emplace_back(static_cast<size_t>(recipe.scale_rows(shape[0]) * recipe.scale_cols(shape[1])));
      quantize(data, shape[0], shape[1], shape[1], recipe, codes.data(), scales.data());
      shard_writer.add(name, DType::kE4M3, shape, codes.data(), codes.size());
      shard_writer.add(name + "_scale_inv", DType::kF32, {recipe.scale_rows(shape[0]), recipe.scale_cols(shape[1])},
                       scales.data(), scales.size() * sizeof(float));
    } else if (keep_f32) {
      shard_writer.add(name, DType::kF32, shape, data, static_cast<size_t>(n) * sizeof(float));
    } else {
      auto& h = halves.emplace_back(static_cast<size_t>(n));
      bf16_from_float_n(data, n, h.data());
      shard_writer.add(name, DType::kBF16, shape, h.data(), h.size() * sizeof(uint16_t));
    }
  };
  for (const ParamSpec& spec : params.specs()) {
    const float* data = params.get(spec.name);
    if (spec.experts == 0) {
      add_tensor(spec.name, spec, data, spec.shape, spec.numel());
      continue;
    }
    const int64_t per = spec.numel() / spec.experts;
    for (int64_t e = 0; e < spec.experts; ++e)
      add_tensor(spec.hf_name(e), spec, data + e * per, {spec.shape[1], spec.shape[2]}, per);
  }
  shard_writer.set_metadata("format", "pt");
  // Shards (model-0000i-of-0000n.safetensors) + model.safetensors.index.json, even for one shard.
  shard_writer.write(dir);
  write_file_atomic(dir + "/config.json", cfg.dump(2) + "\n");
}

}  // namespace qaft
