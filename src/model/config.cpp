#include "model/config.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

namespace qaft {
namespace {

using nlohmann::json;

// Typed access to config.json keys with errors that name the file and the key.
struct Reader {
  const json& j;
  const std::string& source;

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }

  template <typename T>
  T get(const char* key, T fallback) const {
    if (!has(key)) return fallback;
    try {
      return j[key].get<T>();
    } catch (const json::exception&) {
      QAFT_FAIL(ErrorKind::kInvalidFile, "fix the value in config.json", "{}: key \"{}\" has the wrong type ({})",
                source, key, j[key].dump());
    }
  }
  template <typename T>
  T require(const char* key) const {
    QAFT_CHECK_HINT(has(key), ErrorKind::kInvalidFile, "a Hugging Face config.json of this family has it",
                    "{}: required key \"{}\" is missing", source, key);
    return get<T>(key, T{});
  }
  [[noreturn]] void unsupported(const char* key, const std::string& value) const {
    QAFT_FAIL(ErrorKind::kUnsupported, "see docs/model.md for the supported features",
              "{}: \"{}\": {} is not supported by qaft", source, key, value);
  }
};

ModelFamily family_from_type(const std::string& t, const Reader& r) {
  if (t == "deepseek_v3") return ModelFamily::kDeepseekV3;
  if (t == "deepseek_v2") return ModelFamily::kDeepseekV2;
  if (t == "llama") return ModelFamily::kLlama;
  if (t == "qwen2") return ModelFamily::kQwen2;
  if (t == "qwen2_moe") return ModelFamily::kQwen2Moe;
  if (t == "qwen3") return ModelFamily::kQwen3;
  if (t == "qwen3_moe") return ModelFamily::kQwen3Moe;
  r.unsupported("model_type", "\"" + t + "\" (supported: deepseek_v3, deepseek_v2, llama, qwen2, qwen2_moe, qwen3, qwen3_moe)");
}

void read_rope(ModelConfig& c, const Reader& r) {
  c.rope_theta = r.get<double>("rope_theta", 10000.0);
  const char* key = r.has("rope_scaling") ? "rope_scaling" : (r.has("rope_parameters") ? "rope_parameters" : nullptr);
  if (!key) return;
  const json& s = r.j[key];
  QAFT_CHECK_HINT(s.is_object(), ErrorKind::kInvalidFile, "", "{}: \"{}\" must be an object", r.source, key);
  Reader sr{s, r.source};
  std::string type = sr.get<std::string>("type", sr.get<std::string>("rope_type", "default"));
  if (s.contains("rope_theta")) c.rope_theta = sr.get<double>("rope_theta", c.rope_theta);
  if (type == "default") return;
  c.rope_factor = sr.get<double>("factor", 1.0);
  c.rope_original_max_position = sr.get<int64_t>("original_max_position_embeddings", c.max_position_embeddings);
  if (type == "yarn") {
    c.rope_scaling = RopeScaling::kYarn;
    c.yarn_beta_fast = sr.get<double>("beta_fast", 32.0);
    c.yarn_beta_slow = sr.get<double>("beta_slow", 1.0);
    c.yarn_mscale = sr.get<double>("mscale", 1.0);
    c.yarn_mscale_all_dim = sr.get<double>("mscale_all_dim", 0.0);
  } else if (type == "llama3") {
    c.rope_scaling = RopeScaling::kLlama3;
    c.llama3_low_freq_factor = sr.get<double>("low_freq_factor", 1.0);
    c.llama3_high_freq_factor = sr.get<double>("high_freq_factor", 4.0);
  } else if (type == "linear") {
    c.rope_scaling = RopeScaling::kLinear;
  } else {
    r.unsupported("rope_scaling.type", "\"" + type + "\" (supported: default, yarn, llama3, linear)");
  }
  QAFT_CHECK_HINT(c.rope_factor > 0, ErrorKind::kInvalidFile, "", "{}: rope_scaling.factor must be > 0", r.source);
}

void read_moe(ModelConfig& c, const Reader& r) {
  const bool deepseek = c.family == ModelFamily::kDeepseekV3 || c.family == ModelFamily::kDeepseekV2;
  const bool qwen_moe = c.family == ModelFamily::kQwen2Moe || c.family == ModelFamily::kQwen3Moe;
  if (deepseek) {
    c.num_experts = r.get<int64_t>("n_routed_experts", 0);
    c.shared_intermediate_size = r.get<int64_t>("n_shared_experts", 0) * r.get<int64_t>("moe_intermediate_size", 0);
    c.first_k_dense_replace = r.get<int64_t>("first_k_dense_replace", 0);
    c.moe_layer_freq = r.get<int64_t>("moe_layer_freq", 1);
    c.n_group = r.get<int64_t>("n_group", 1);
    c.topk_group = r.get<int64_t>("topk_group", 1);
    c.routed_scaling_factor = r.get<double>("routed_scaling_factor", 1.0);
    const std::string scoring = r.get<std::string>("scoring_func", "softmax");
    if (scoring == "sigmoid") c.scoring = RouterScoring::kSigmoid;
    else if (scoring == "softmax") c.scoring = RouterScoring::kSoftmax;
    else r.unsupported("scoring_func", "\"" + scoring + "\"");
    const std::string method = r.get<std::string>(
        "topk_method", c.family == ModelFamily::kDeepseekV3 ? "noaux_tc" : "greedy");
    if (method == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
    else if (method == "greedy") c.topk_method = TopkMethod::kGreedy;
    else if (method == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
    else r.unsupported("topk_method", "\"" + method + "\"");
    c.norm_topk_prob = r.get<bool>("norm_topk_prob", c.family == ModelFamily::kDeepseekV3);
    c.num_nextn_predict_layers = r.get<int64_t>("num_nextn_predict_layers", 0);
  } else if (qwen_moe) {
    c.num_experts = r.get<int64_t>("num_experts", 0);
    c.decoder_sparse_step = r.get<int64_t>("decoder_sparse_step", 1);
    c.mlp_only_layers = r.get<std::vector<int64_t>>("mlp_only_layers", {});
    c.norm_topk_prob = r.get<bool>("norm_topk_prob", c.family == ModelFamily::kQwen3Moe);
    c.scoring = RouterScoring::kSoftmax;
    c.topk_method = TopkMethod::kGreedy;
    if (c.family == ModelFamily::kQwen2Moe) {
      c.shared_intermediate_size = r.get<int64_t>("shared_expert_intermediate_size", 0);
      c.shared_expert_gate = c.shared_intermediate_size > 0;
    }
  }
  if (c.num_experts == 0) return;
  c.num_experts_per_tok = r.require<int64_t>("num_experts_per_tok");
  c.moe_intermediate_size = r.require<int64_t>("moe_intermediate_size");
  if (deepseek) c.shared_intermediate_size = r.get<int64_t>("n_shared_experts", 0) * c.moe_intermediate_size;
}

void read_quantization(ModelConfig& c, const Reader& r) {
  if (!r.has("quantization_config")) return;
  Reader q{r.j["quantization_config"], r.source};
  const std::string method = q.get<std::string>("quant_method", "");
  if (method != "fp8")
    r.unsupported("quantization_config.quant_method", "\"" + method + "\" (only DeepSeek block FP8 \"fp8\")");
  const std::string fmt = q.get<std::string>("fmt", "e4m3");
  if (fmt != "e4m3") r.unsupported("quantization_config.fmt", "\"" + fmt + "\"");
  const auto block = q.get<std::vector<int64_t>>("weight_block_size", {128, 128});
  if (block != std::vector<int64_t>{128, 128})
    r.unsupported("quantization_config.weight_block_size", r.j["quantization_config"]["weight_block_size"].dump());
  c.fp8_checkpoint = true;
  c.fp8_scale_ue8m0 = q.get<std::string>("scale_fmt", "float") == "ue8m0";
}

void validate(const ModelConfig& c, const std::string& src) {
  auto positive = [&](int64_t v, const char* key) {
    QAFT_CHECK_HINT(v > 0, ErrorKind::kInvalidFile, "fix config.json", "{}: \"{}\" must be > 0, got {}", src, key, v);
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_layers, "num_hidden_layers");
  positive(c.num_heads, "num_attention_heads");
  if (c.attention == AttentionKind::kGqa) {
    positive(c.num_kv_heads, "num_key_value_heads");
    positive(c.head_dim, "head_dim");
    QAFT_CHECK_HINT(c.num_heads % c.num_kv_heads == 0, ErrorKind::kInvalidFile, "fix config.json",
                    "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", src, c.num_heads,
                    c.num_kv_heads);
    QAFT_CHECK_HINT(c.head_dim % 2 == 0, ErrorKind::kInvalidFile, "", "{}: head_dim {} must be even for RoPE", src, c.head_dim);
  } else {
    positive(c.kv_lora_rank, "kv_lora_rank");
    positive(c.qk_rope_head_dim, "qk_rope_head_dim");
    positive(c.v_head_dim, "v_head_dim");
    QAFT_CHECK_HINT(c.qk_nope_head_dim >= 0 && c.qk_rope_head_dim % 2 == 0, ErrorKind::kInvalidFile, "",
                    "{}: qk_rope_head_dim {} must be even", src, c.qk_rope_head_dim);
  }
  bool any_dense = false;
  for (int64_t l = 0; l < c.num_layers; ++l) any_dense |= !c.is_moe_layer(l);
  if (any_dense) positive(c.intermediate_size, "intermediate_size");
  if (c.num_experts > 0) {
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    QAFT_CHECK_HINT(c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.num_experts, ErrorKind::kInvalidFile,
                    "fix config.json", "{}: num_experts_per_tok {} must be in [1, {}]", src, c.num_experts_per_tok,
                    c.num_experts);
    QAFT_CHECK_HINT(c.n_group >= 1 && c.num_experts % c.n_group == 0, ErrorKind::kInvalidFile, "fix config.json",
                    "{}: n_group {} does not divide the {} routed experts", src, c.n_group, c.num_experts);
    QAFT_CHECK_HINT(c.topk_group >= 1 && c.topk_group <= c.n_group, ErrorKind::kInvalidFile, "fix config.json",
                    "{}: topk_group {} must be in [1, n_group = {}]", src, c.topk_group, c.n_group);
    QAFT_CHECK_HINT(c.topk_group * (c.num_experts / c.n_group) >= c.num_experts_per_tok, ErrorKind::kInvalidFile,
                    "fix config.json", "{}: topk_group {} groups of {} experts cannot hold {} experts per token",
                    src, c.topk_group, c.num_experts / c.n_group, c.num_experts_per_tok);
    QAFT_CHECK_HINT(c.moe_layer_freq >= 1 && c.decoder_sparse_step >= 1, ErrorKind::kInvalidFile, "",
                    "{}: moe_layer_freq / decoder_sparse_step must be >= 1", src);
  }
  QAFT_CHECK_HINT(c.rms_norm_eps > 0, ErrorKind::kInvalidFile, "", "{}: rms_norm_eps must be > 0", src);
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (num_experts == 0) return false;
  if (family == ModelFamily::kDeepseekV3 || family == ModelFamily::kDeepseekV2)
    return layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

std::vector<double> ModelConfig::rope_inv_freq() const {
  const int64_t d = rope_dim();
  std::vector<double> f(static_cast<size_t>(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) f[static_cast<size_t>(i)] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(d));
  const double two_pi = 2.0 * std::numbers::pi;
  if (rope_scaling == RopeScaling::kLinear) {
    for (double& x : f) x /= rope_factor;
  } else if (rope_scaling == RopeScaling::kYarn && max_position_embeddings > rope_original_max_position) {
    // DeepSeek official precompute_freqs_cis: blend original and interpolated frequencies over the
    // correction range of dimensions [low, high].
    auto correction_dim = [&](double rotations) {
      return static_cast<double>(d) * std::log(static_cast<double>(rope_original_max_position) / (rotations * two_pi)) /
             (2.0 * std::log(rope_theta));
    };
    double low = std::max(std::floor(correction_dim(yarn_beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(yarn_beta_slow)), static_cast<double>(d - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < d / 2; ++i) {
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const double smooth = 1.0 - ramp;
      double& x = f[static_cast<size_t>(i)];
      x = x / rope_factor * (1.0 - smooth) + x * smooth;
    }
  } else if (rope_scaling == RopeScaling::kLlama3) {
    const double old_len = static_cast<double>(rope_original_max_position);
    const double low_wavelen = old_len / llama3_low_freq_factor;
    const double high_wavelen = old_len / llama3_high_freq_factor;
    for (double& x : f) {
      const double wavelen = two_pi / x;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        x /= rope_factor;
      } else {
        const double smooth = (old_len / wavelen - llama3_low_freq_factor) / (llama3_high_freq_factor - llama3_low_freq_factor);
        x = (1.0 - smooth) * x / rope_factor + smooth * x;
      }
    }
  }
  return f;
}

double ModelConfig::softmax_scale() const {
  if (attention == AttentionKind::kGqa) return 1.0 / std::sqrt(static_cast<double>(head_dim));
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_scaling == RopeScaling::kYarn && max_position_embeddings > rope_original_max_position && rope_factor > 1.0) {
    const double m = yarn_mscale_all_dim > 0 ? yarn_mscale_all_dim : yarn_mscale;
    const double mscale = 0.1 * m * std::log(rope_factor) + 1.0;
    scale *= mscale * mscale;
  }
  return scale;
}

std::string ModelConfig::family_name() const { return model_type; }

ModelConfig model_config_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    QAFT_FAIL(ErrorKind::kInvalidFile, "config.json must be valid JSON", "{}: {}", source, e.what());
  }
  QAFT_CHECK_HINT(j.is_object(), ErrorKind::kInvalidFile, "", "{}: the top level must be a JSON object", source);
  Reader r{j, source};
  ModelConfig c;
  c.model_type = r.require<std::string>("model_type");
  c.family = family_from_type(c.model_type, r);
  const std::string act = r.get<std::string>("hidden_act", "silu");
  if (act != "silu") r.unsupported("hidden_act", "\"" + act + "\" (only silu / SwiGLU)");
  if (r.get<bool>("use_sliding_window", false)) r.unsupported("use_sliding_window", "true");

  c.vocab_size = r.require<int64_t>("vocab_size");
  c.hidden_size = r.require<int64_t>("hidden_size");
  c.num_layers = r.require<int64_t>("num_hidden_layers");
  c.intermediate_size = r.get<int64_t>("intermediate_size", 0);
  c.max_position_embeddings = r.get<int64_t>("max_position_embeddings", 4096);
  c.rms_norm_eps = r.get<double>("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.get<bool>("tie_word_embeddings", false);
  c.bos_token_id = r.get<int64_t>("bos_token_id", -1);
  if (r.has("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_array() && !e.empty()) c.eos_token_id = e[0].get<int64_t>();
    else if (e.is_number_integer()) c.eos_token_id = e.get<int64_t>();
  }
  c.num_heads = r.require<int64_t>("num_attention_heads");

  const bool deepseek = c.family == ModelFamily::kDeepseekV3 || c.family == ModelFamily::kDeepseekV2;
  if (deepseek) {
    c.attention = AttentionKind::kMla;
    c.num_kv_heads = c.num_heads;
    c.q_lora_rank = r.get<int64_t>("q_lora_rank", 0);
    c.kv_lora_rank = r.require<int64_t>("kv_lora_rank");
    c.qk_nope_head_dim = r.require<int64_t>("qk_nope_head_dim");
    c.qk_rope_head_dim = r.require<int64_t>("qk_rope_head_dim");
    c.v_head_dim = r.require<int64_t>("v_head_dim");
    if (r.get<bool>("attention_bias", false)) r.unsupported("attention_bias", "true for MLA");
  } else {
    c.attention = AttentionKind::kGqa;
    c.num_kv_heads = r.get<int64_t>("num_key_value_heads", c.num_heads);
    c.head_dim = r.get<int64_t>("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    if (!r.has("head_dim"))
      QAFT_CHECK_HINT(c.num_heads > 0 && c.hidden_size % c.num_heads == 0, ErrorKind::kInvalidFile, "fix config.json",
                      "{}: hidden_size {} is not a multiple of num_attention_heads {}", source, c.hidden_size, c.num_heads);
    const bool attention_bias = r.get<bool>("attention_bias", false);
    if (c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen2Moe) {
      c.qkv_bias = true;  // Qwen2 always has q/k/v bias, no o bias
    } else {
      c.qkv_bias = attention_bias;
      c.o_bias = attention_bias && c.family == ModelFamily::kLlama;
    }
    c.qk_norm = c.family == ModelFamily::kQwen3 || c.family == ModelFamily::kQwen3Moe;
  }
  read_rope(c, r);
  read_moe(c, r);
  read_quantization(c, r);
  validate(c, source);
  return c;
}

ModelConfig model_config_load(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "pass a Hugging Face model directory that contains config.json",
                  "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return model_config_from_json(ss.str(), path);
}

}  // namespace qaft
