#include "infer/serving_weights.h"

#include "core/error.h"
#include "kernels/ops.h"
#include "model/linear.h"

#include <fmt/format.h>

#include <chrono>

namespace qaft {

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

std::vector<float> copy_param(const ParamStore<float>& p, const std::string& name) {
  const float* v = p.get(name);
  return std::vector<float>(v, v + p.spec(name).numel());
}

std::vector<float> copy_optional(const ParamStore<float>& p, const std::string& name) {
  return p.find(name) ? copy_param(p, name) : std::vector<float>{};
}

class Builder {
 public:
  Builder(const ModelConfig& config, const ParamStore<float>& params, const FrozenStore* frozen,
          const PeftAdapter* adapter, const ServingNumerics& numerics, MergeReport& report)
      : config_(config), params_(params), numerics_(numerics), report_(report) {
    wb_.params = &params;
    wb_.frozen = frozen && frozen->size() ? frozen : nullptr;
    if (adapter) {
      wb_.lora = &adapter->params;
      wb_.lora_scale = adapter->config.scale();
    }
    // The numerics effective_weight merges and rounds with (see serving_weights.h).
    merge_numerics_.qat.enabled = numerics.precision != Precision::kF32;
    merge_numerics_.qat.weight_scale_format = numerics.scale_format;
    merge_numerics_.qat.quantize_activations = numerics.quantize_activations;
    if (numerics.precision == Precision::kBf16) merge_numerics_.precision = GemmPrecision::kBf16;
    wb_.numerics = numerics.precision == Precision::kF32 ? nullptr : &merge_numerics_;
  }

  ServingWeights build() {
    ServingWeights w;
    w.embed = copy_param(params_, "model.embed_tokens.weight");
    w.head = config_.tie_word_embeddings ? w.embed : copy_param(params_, "lm_head.weight");
    w.final_norm = copy_param(params_, "model.norm.weight");
    for (int64_t l = 0; l < config_.num_layers; ++l) w.layers.push_back(layer(l));
    return w;
  }

 private:
  ServingLayer layer(int64_t l) {
    const std::string p = fmt::format("model.layers.{}", l);
    ServingLayer L;
    L.norm1 = copy_param(params_, p + ".input_layernorm.weight");
    L.norm2 = copy_param(params_, p + ".post_attention_layernorm.weight");
    const std::string a = p + ".self_attn";
    if (config_.attention == AttentionKind::kMla) {
      ServingMla& m = L.mla;
      m.q_lora = params_.find(a + ".q_a_layernorm.weight") != nullptr;
      if (m.q_lora) {
        m.q_a = linear(a + ".q_a_proj");
        m.q_b = linear(a + ".q_b_proj");
        m.q_a_norm = copy_param(params_, a + ".q_a_layernorm.weight");
      } else {
        m.q = linear(a + ".q_proj");
      }
      m.kv_a = linear(a + ".kv_a_proj_with_mqa");
      m.kv_b = linear(a + ".kv_b_proj");
      m.o = linear(a + ".o_proj");
      m.kv_norm = copy_param(params_, a + ".kv_a_layernorm.weight");
      m.kv_b_values = m.kv_b.weight_values(0);
    } else {
      ServingGqa& g = L.gqa;
      g.q = linear(a + ".q_proj");
      g.k = linear(a + ".k_proj");
      g.v = linear(a + ".v_proj");
      g.o = linear(a + ".o_proj");
      g.q_norm = copy_optional(params_, a + ".q_norm.weight");
      g.k_norm = copy_optional(params_, a + ".k_norm.weight");
    }
    L.moe = config_.is_moe_layer(l);
    const std::string f = p + ".mlp";
    if (!L.moe) {
      L.mlp = mlp(f);
      return L;
    }
    ServingMoe& e = L.moe_ffn;
    e.router = copy_param(params_, f + ".gate.weight");
    e.bias = copy_optional(params_, f + ".gate.e_score_correction_bias");
    e.gate = linear(f + ".experts.gate_proj", true);
    e.up = linear(f + ".experts.up_proj", true);
    e.down = linear(f + ".experts.down_proj", true);
    if (config_.shared_intermediate_size > 0) {
      e.has_shared = true;
      e.shared = mlp(f + (config_.family == ModelFamily::kQwen2Moe ? ".shared_expert" : ".shared_experts"));
      e.shared_gate = copy_optional(params_, f + ".shared_expert_gate.weight");
    }
    return L;
  }

  ServingMlp mlp(const std::string& prefix) {
    return {linear(prefix + ".gate_proj"), linear(prefix + ".up_proj"), linear(prefix + ".down_proj")};
  }

  // One serving linear from "<name>" (stacked experts) or "<name>.weight", merging its adapter.
  InferLinear linear(const std::string& name, bool stacked = false) {
    const LinearRef<float> l = stacked ? bind_expert_linear(wb_, name) : bind_linear(wb_, name);
    InferLinear out(numerics_.precision, l.groups, l.out, l.in);
    const int64_t G = std::max<int64_t>(l.groups, 1), per_group = l.out * l.in;
    const bool keep_fp8 = numerics_.precision == Precision::kFp8 && l.frozen && l.frozen->format == BaseFormat::kFp8 &&
                          !l.has_lora();
    std::vector<float> w(keep_fp8 ? 0 : sz(per_group));  // one group's merged weight at a time
    for (int64_t g = 0; g < G; ++g) {
      if (keep_fp8) {
        const int64_t scales = cdiv(l.out, kScaleBlock) * cdiv(l.in, kScaleBlock);
        out.set_weight(g, BlockWeight::from_e4m3(l.frozen->fp8_codes.data() + g * per_group,
                                                 l.frozen->fp8_scales.data() + g * scales, l.out, l.in,
                                                 numerics_.scale_format));
        ++report_.kept_fp8;
      } else {
        effective_weight(l, g, w.data());
        if (numerics_.precision == Precision::kF32 && l.has_lora())  // M = W0 + s·B·A, as effective_weight forms it
          gemm<float>(Trans::kNo, Trans::kNo, l.out, l.in, l.rank, l.lora_scale, l.lora_b + g * l.out * l.rank, l.rank,
                      l.lora_a + g * l.rank * l.in, l.in, 1.0f, w.data(), l.in);
        out.set_weight(g, w.data(), numerics_.scale_format);
      }
      ++report_.linears;
      report_.merged += l.has_lora();
    }
    if (l.b) out.set_bias(l.b);
    return out;
  }

  static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

  const ModelConfig& config_;
  const ParamStore<float>& params_;
  ServingNumerics numerics_;
  MergeReport& report_;
  LinearNumerics merge_numerics_;
  WeightBinding<float> wb_;
};

}  // namespace

int64_t ServingWeights::bytes() const {
  int64_t n = static_cast<int64_t>(sizeof(float) * (embed.size() + head.size() + final_norm.size()));
  auto vec = [&](const std::vector<float>& v) { n += static_cast<int64_t>(sizeof(float) * v.size()); };
  auto mlp = [&](const ServingMlp& m) { n += m.gate.bytes() + m.up.bytes() + m.down.bytes(); };
  for (const ServingLayer& L : layers) {
    vec(L.norm1), vec(L.norm2);
    const ServingMla& m = L.mla;
    n += m.q_a.bytes() + m.q_b.bytes() + m.q.bytes() + m.kv_a.bytes() + m.kv_b.bytes() + m.o.bytes();
    vec(m.q_a_norm), vec(m.kv_norm), vec(m.kv_b_values);
    const ServingGqa& g = L.gqa;
    n += g.q.bytes() + g.k.bytes() + g.v.bytes() + g.o.bytes();
    vec(g.q_norm), vec(g.k_norm);
    mlp(L.mlp);
    const ServingMoe& e = L.moe_ffn;
    vec(e.router), vec(e.bias), vec(e.shared_gate);
    n += e.gate.bytes() + e.up.bytes() + e.down.bytes();
    mlp(e.shared);
  }
  return n;
}

ServingWeights build_serving_weights(const ModelConfig& config, const ParamStore<float>& params,
                                     const FrozenStore* frozen, const PeftAdapter* adapter,
                                     const ServingNumerics& numerics, MergeReport& report) {
  report = MergeReport{};
  const auto t0 = std::chrono::steady_clock::now();
  ServingWeights w = Builder(config, params, frozen, adapter, numerics, report).build();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.weight_bytes = w.bytes();
  return w;
}

}  // namespace qaft
