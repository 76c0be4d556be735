// A served model as an HF checkpoint directory (see export_checkpoint.h).
#include "infer/export_checkpoint.h"

#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/safetensors_index.h"
#include "numerics/bf16.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace qaft {

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

// config.json as model_config_from_json reads it (plain JSON: what loads for serving exports too).
nlohmann::json parse_config(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    QAFT_FAIL(ErrorKind::kInvalidFile, "config.json must be valid JSON", "{}: {}", source, e.what());
  }
  QAFT_CHECK_HINT(j.is_object(), ErrorKind::kInvalidFile, "", "{}: the top level must be a JSON object", source);
  return j;
}
int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One served tensor, by its qaft parameter name (model/weights.h): a linear (its weight, or its
// bias) or plain fp32 values.
struct Served {
  const InferLinear* linear = nullptr;
  bool bias = false;                         // the linear's bias rather than its weight
  const std::vector<float>* values = nullptr;  // norms, router, embedding, head, correction bias
};

// Every tensor of the serving weights under the parameter name it was built from (the names of
// serving_weights.cpp's Builder).
std::map<std::string, Served> served_tensors(const ModelConfig& config, const ServingWeights& w) {
  std::map<std::string, Served> m;
  auto values = [&](const std::string& name, const std::vector<float>& v) {
    if (!v.empty()) m[name] = Served{nullptr, false, &v};
  };
  auto linear = [&](const std::string& module, const InferLinear& l) {  // "….q_proj" → .weight (+ .bias)
    m[module + ".weight"] = Served{&l, false, nullptr};
    if (!l.bias().empty()) m[module + ".bias"] = Served{&l, true, nullptr};
  };
  auto mlp = [&](const std::string& prefix, const ServingMlp& s) {
    linear(prefix + ".gate_proj", s.gate);
    linear(prefix + ".up_proj", s.up);
    linear(prefix + ".down_proj", s.down);
  };
  values("model.embed_tokens.weight", w.embed);
  values("lm_head.weight", w.head);
  values("model.norm.weight", w.final_norm);
  for (int64_t l = 0; l < static_cast<int64_t>(w.layers.size()); ++l) {
    const ServingLayer& L = w.layers[sz(l)];
    const std::string p = fmt::format("model.layers.{}", l), a = p + ".self_attn", f = p + ".mlp";
    values(p + ".input_layernorm.weight", L.norm1);
    values(p + ".post_attention_layernorm.weight", L.norm2);
    if (config.attention == AttentionKind::kMla) {
      const ServingMla& s = L.mla;
      if (s.q_lora) {
        linear(a + ".q_a_proj", s.q_a);
        linear(a + ".q_b_proj", s.q_b);
        values(a + ".q_a_layernorm.weight", s.q_a_norm);
      } else {
        linear(a + ".q_proj", s.q);
      }
      linear(a + ".kv_a_proj_with_mqa", s.kv_a);
      linear(a + ".kv_b_proj", s.kv_b);
      linear(a + ".o_proj", s.o);
      values(a + ".kv_a_layernorm.weight", s.kv_norm);
    } else {
      const ServingGqa& s = L.gqa;
      linear(a + ".q_proj", s.q);
      linear(a + ".k_proj", s.k);
      linear(a + ".v_proj", s.v);
      linear(a + ".o_proj", s.o);
      values(a + ".q_norm.weight", s.q_norm);
      values(a + ".k_norm.weight", s.k_norm);
    }
    if (!L.moe) {
      mlp(f, L.mlp);
      continue;
    }
    const ServingMoe& e = L.moe_ffn;
    values(f + ".gate.weight", e.router);
    values(f + ".gate.e_score_correction_bias", e.bias);
    m[f + ".experts.gate_proj"] = Served{&e.gate, false, nullptr};  // stacked: one tensor per expert
    m[f + ".experts.up_proj"] = Served{&e.up, false, nullptr};
    m[f + ".experts.down_proj"] = Served{&e.down, false, nullptr};
    if (e.has_shared) {
      mlp(f + (config.family == ModelFamily::kQwen2Moe ? ".shared_expert" : ".shared_experts"), e.shared);
      values(f + ".shared_expert_gate.weight", e.shared_gate);
    }
  }
  return m;
}

// One tensor of the checkpoint, its bytes made when its shard is written.
struct Planned {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::function<std::vector<uint8_t>()> bytes;
};

template <typename T>
std::vector<uint8_t> as_bytes(const T* data, int64_t n) {
  std::vector<uint8_t> b(sz(n) * sizeof(T));
  if (n > 0) std::memcpy(b.data(), data, b.size());
  return b;
}

std::vector<uint8_t> bf16_bytes(const float* v, int64_t n) {
  std::vector<uint16_t> h(sz(n));
  bf16_from_float_n(v, n, h.data());
  return as_bytes(h.data(), n);
}

// True when every value is a BF16 value (widening its BF16 rounding gives it back, bit for bit).
bool exactly_bf16(const std::vector<float>& v) {
  for (float x : v)
    if (std::bit_cast<uint32_t>(bf16_to_float(bf16_from_float(x))) != std::bit_cast<uint32_t>(x)) return false;
  return true;
}

class Planner {
 public:
  Planner(CheckpointFormat format, ServingCheckpointReport& report) : format_(format), report_(report) {}

  // Norms, router, embedding, head, biases: BF16 when exact (and the format is not F32), else F32.
  void values(const std::string& name, const std::vector<float>* v, std::vector<int64_t> shape) {
    const int64_t n = static_cast<int64_t>(v->size());
    const bool f32 = format_ == CheckpointFormat::kF32 || checkpoint_keeps_f32(name) || !exactly_bf16(*v);
    if (f32 && format_ != CheckpointFormat::kF32 && !checkpoint_keeps_f32(name)) {
      ++report_.f32_not_bf16;
      if (first_f32_.empty()) first_f32_ = name;
    }
    if (f32) add(name, DType::kF32, std::move(shape), [v, n] { return as_bytes(v->data(), n); });
    else add(name, DType::kBF16, std::move(shape), [v, n] { return bf16_bytes(v->data(), n); });
  }

  // Group g of a served linear as `name` (".weight" included), in its serving format.
  void linear(const std::string& name, const InferLinear& l, int64_t g) {
    const int64_t out = l.out(), in = l.in();
    switch (l.precision()) {
      case Precision::kFp8: {
        const BlockWeight& b = l.block(g);
        QAFT_CHECK_HINT(b.element() == WeightElement::kE4M3, ErrorKind::kInternal, "", "{}: an FP8 linear without E4M3 codes",
                        name);
        add(name, DType::kE4M3, {out, in}, [&b] { return b.codes(); });
        add(name + "_scale_inv", DType::kF32, {cdiv(out, kScaleBlock), cdiv(in, kScaleBlock)},
            [&b] { return as_bytes(b.scales().data(), static_cast<int64_t>(b.scales().size())); });
        ++report_.fp8_weights;
        return;
      }
      case Precision::kBf16:
        add(name, DType::kBF16, {out, in}, [&l, g, out, in] { return bf16_bytes(l.weight_values(g).data(), out * in); });
        return;
      case Precision::kF32:
        add(name, DType::kF32, {out, in}, [&l, g, out, in] { return as_bytes(l.weight_values(g).data(), out * in); });
        return;
    }
  }

  const std::vector<Planned>& tensors() const { return tensors_; }
  const std::string& first_f32() const { return first_f32_; }

 private:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::function<std::vector<uint8_t>()> bytes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const uint64_t nbytes = dtype_bytes(dtype, sz(n));
    tensors_.push_back(Planned{name, dtype, std::move(shape), nbytes, std::move(bytes)});
    ++report_.tensors;
    report_.tensor_bytes += nbytes;
  }

  CheckpointFormat format_;
  ServingCheckpointReport& report_;
  std::vector<Planned> tensors_;
  std::string first_f32_;  // the first tensor written F32 because it is not exactly BF16
};

CheckpointFormat checkpoint_format(Precision p) {
  switch (p) {
    case Precision::kFp8: return CheckpointFormat::kFp8Block;
    case Precision::kBf16: return CheckpointFormat::kBF16;
    case Precision::kF32: return CheckpointFormat::kF32;
  }
  return CheckpointFormat::kF32;
}

// Shards greedily in tensor order: a new shard when the next tensor would pass the budget.
std::vector<std::vector<const Planned*>> plan_shards(const std::vector<Planned>& tensors, uint64_t max_bytes) {
  std::vector<std::vector<const Planned*>> shards(1);
  uint64_t used = 0;
  for (const Planned& t : tensors) {
    if (!shards.back().empty() && used + t.nbytes > max_bytes) {
      shards.emplace_back();
      used = 0;
    }
    shards.back().push_back(&t);
    used += t.nbytes;
  }
  return shards;
}

// The transformers class vLLM/SGLang pick the model implementation by (config.json "architectures").
const char* hf_architecture(const std::string& model_type) {
  static const std::map<std::string, const char*> kArchitectures = {
      {"deepseek_v3", "DeepseekV3ForCausalLM"}, {"deepseek_v2", "DeepseekV2ForCausalLM"},
      {"qwen2", "Qwen2ForCausalLM"},            {"qwen2_moe", "Qwen2MoeForCausalLM"},
      {"qwen3", "Qwen3ForCausalLM"},            {"qwen3_moe", "Qwen3MoeForCausalLM"},
      {"llama", "LlamaForCausalLM"}};
  const auto it = kArchitectures.find(model_type);
  return it == kArchitectures.end() ? nullptr : it->second;
}

}  // namespace

nlohmann::json ServingRecord::to_json() const {
  nlohmann::json j = {{"precision", precision_name(precision)}};
  if (precision == Precision::kFp8) {
    j["scale_format"] = scale_format_name(scale_format);
    j["quantize_activations"] = quantize_activations;
  }
  j["source"] = source.is_null() ? nlohmann::json::object() : source;
  return j;
}

std::optional<ServingRecord> read_serving_record(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "pass a Hugging Face model directory that contains config.json",
                  "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json cfg = parse_config(ss.str(), path);
  if (!cfg.contains(kServingRecordKey)) return std::nullopt;
  const nlohmann::json& j = cfg[kServingRecordKey];
  auto bad = [&](const char* field, const std::string& why) {
    QAFT_FAIL(ErrorKind::kInvalidFile,
              fmt::format("fix or remove \"{}\" in config.json (qaft export writes it)", kServingRecordKey),
              "{}: \"{}\"{} {}", path, kServingRecordKey, *field ? fmt::format(".\"{}\"", field) : "", why);
  };
  if (!j.is_object()) bad("", "must be an object");
  ServingRecord r;
  if (!j.contains("precision") || !j["precision"].is_string()) bad("precision", "must be \"fp8\", \"bf16\" or \"f32\"");
  const std::string precision = j["precision"].get<std::string>();
  if (precision != "fp8" && precision != "bf16" && precision != "f32")
    bad("precision", "is \"" + precision + "\", not fp8, bf16 or f32");
  r.precision = parse_precision(precision);
  if (j.contains("scale_format")) {
    if (!j["scale_format"].is_string() || (j["scale_format"] != "fp32" && j["scale_format"] != "ue8m0"))
      bad("scale_format", "must be \"fp32\" or \"ue8m0\"");
    r.scale_format = j["scale_format"] == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  }
  if (j.contains("quantize_activations")) {
    if (!j["quantize_activations"].is_boolean()) bad("quantize_activations", "must be true or false");
    r.quantize_activations = j["quantize_activations"].get<bool>();
  }
  if (j.contains("source")) r.source = j["source"];
  return r;
}

ServingCheckpointReport write_serving_checkpoint(const InferenceModel& model, const std::string& config_json,
                                                 const std::string& dir, const ServingCheckpointOptions& options) {
  const ModelConfig& config = model.config();
  const InferenceOptions& io = model.options();
  ServingCheckpointReport report;
  report.format = checkpoint_format(io.precision);

  // Every parameter of the model, in model_param_specs order, from the serving weights.
  const std::map<std::string, Served> served = served_tensors(config, model.weights());
  Planner plan(report.format, report);
  for (const ParamSpec& spec : model_param_specs(config)) {
    const auto it = served.find(spec.name);
    QAFT_CHECK_HINT(it != served.end(), ErrorKind::kInternal, "", "the serving weights lack {}", spec.name);
    const Served& s = it->second;
    if (s.values) {
      QAFT_CHECK_HINT(static_cast<int64_t>(s.values->size()) == spec.numel(), ErrorKind::kInternal, "",
                      "{}: {} served values for {} parameters", spec.name, s.values->size(), spec.numel());
      plan.values(spec.name, s.values, spec.shape);
    } else if (s.bias) {
      plan.values(spec.name, &s.linear->bias(), spec.shape);
    } else if (spec.experts > 0) {
      QAFT_CHECK_HINT(s.linear->groups() == spec.experts, ErrorKind::kInternal, "", "{}: {} served experts for {}",
                      spec.name, s.linear->groups(), spec.experts);
      for (int64_t e = 0; e < spec.experts; ++e) plan.linear(spec.hf_name(e), *s.linear, e);
    } else {
      QAFT_CHECK_HINT(s.linear->out() == spec.shape[0] && s.linear->in() == spec.shape[1], ErrorKind::kInternal, "",
                      "{}: served as [{}, {}]", spec.name, s.linear->out(), s.linear->in());
      plan.linear(spec.name, *s.linear, 0);
    }
  }
  if (report.f32_not_bf16 > 0)
    QAFT_LOG(kInfo, "{} norm/router/embedding/head tensor(s) (e.g. {}) hold values that are not exactly BF16: written as F32 "
             "so that the export serves bit for bit what the deployment served", report.f32_not_bf16, plan.first_f32());

  // The shards, one materialized at a time, then the index (last: it names only written shards).
  const auto shards = plan_shards(plan.tensors(), options.max_shard_bytes == 0 ? UINT64_MAX : options.max_shard_bytes);
  SafetensorsIndex index;
  index.total_size = report.tensor_bytes;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = ShardedWriter::shard_name(i, shards.size());
    std::vector<std::vector<uint8_t>> bytes;
    bytes.reserve(shards[i].size());
    SafetensorsWriter writer;
    writer.set_metadata("format", "pt");
    for (const Planned* t : shards[i]) {
      bytes.push_back(t->bytes());
      QAFT_CHECK_HINT(bytes.back().size() == t->nbytes, ErrorKind::kInternal, "", "{}: {} bytes made for {}", t->name,
                      bytes.back().size(), t->nbytes);
      writer.add(t->name, t->dtype, t->shape, bytes.back().data(), bytes.back().size());
      index.weight_map[t->name] = file;
    }
    writer.write(dir + "/" + file);
    report.files.push_back(file);
  }
  write_safetensors_index(dir + "/" + kSafetensorsIndexName, index);
  report.files.push_back(kSafetensorsIndexName);

  // config.json: the source's, with the format's quantization_config and the serving record.
  nlohmann::json cfg = parse_config(config_json, "config.json");
  set_checkpoint_format(cfg, report.format, io.scale_format);
  if (cfg.contains("num_nextn_predict_layers")) cfg["num_nextn_predict_layers"] = 0;  // no MTP module written
  if (!cfg.contains("architectures"))  // what servers select the implementation by
    if (const char* arch = hf_architecture(config.model_type)) cfg["architectures"] = {arch};
  ServingRecord record;
  record.precision = io.precision;
  record.scale_format = io.scale_format;
  record.quantize_activations = io.quantize_activations;
  record.source = options.source;
  cfg[kServingRecordKey] = record.to_json();
  write_file_atomic(dir + "/config.json", cfg.dump(2) + "\n");
  report.files.push_back("config.json");
  return report;
}

}  // namespace qaft
