// Shared pieces of the inference-engine tests: random models and adapters, token streams, and the
// comparison figures (relative error, KL, top-1).
#pragma once

#include "adapters/peft_io.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/weights.h"
#include "model_configs.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace qaft::test {

inline ModelConfig tiny_config(const std::string& family) {
  for (auto& [name, json] : tiny_model_configs())
    if (name == family) return model_config_from_json(json, name);
  throw std::runtime_error("no config " + family);
}

// A DeepSeek-V3-shaped model (its config.json text) large enough for several 128-blocks per weight
// and partial ones (q_b 4·48 = 192 rows, kv_a 144 rows, kv_b 4·80 = 320 rows, inputs of 192 and 320).
inline std::string parity_config_json() {
  return R"({"model_type": "deepseek_v3", "vocab_size": 300, "hidden_size": 256, "intermediate_size": 320,
        "moe_intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc",
        "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "q_lora_rank": 192, "kv_lora_rank": 128, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
        "v_head_dim": 48, "rms_norm_eps": 1e-6, "max_position_embeddings": 256, "rope_theta": 10000,
        "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 64, "beta_fast": 32,
        "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}})";
}
inline ModelConfig parity_config() { return model_config_from_json(parity_config_json(), "parity"); }

inline ParamStore<float> random_params(const ModelConfig& c, uint64_t seed, double stddev) {
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, seed, stddev, /*random_router_bias=*/true);
  return p;
}

inline ParamStore<double> to_double(const ParamStore<float>& f) {
  ParamStore<double> d(f.specs());
  for (int64_t i = 0; i < f.size(); ++i) d.data()[i] = f.data()[i];
  return d;
}

// An adapter on every linear with random A and B (nonzero B, unlike PEFT's initialisation).
inline PeftAdapter random_adapter(const ModelConfig& c, int64_t rank, double alpha, uint64_t seed, float a_std,
                                  float b_std) {
  PeftAdapter a;
  a.config.rank = rank;
  a.config.alpha = alpha;
  a.targets = resolve_lora_targets(c, a.config);
  a.params = ParamStore<float>(lora_param_specs(a.targets));
  uint64_t stream = 0;
  for (const ParamSpec& s : a.params.specs()) {
    const bool is_a = s.name.find("lora_A") != std::string::npos;
    CounterRng(seed, stream++).fill_normal(a.params.get(s.name), s.numel(), 0.0f, is_a ? a_std : b_std);
  }
  return a;
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  CounterRng rng(seed, 99);
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i)) % vocab);
  return t;
}

// max |a − b| / max |b| over two logit arrays.
template <typename A, typename B>
double relative_max_error(const std::vector<A>& a, const std::vector<B>& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    m = std::max(m, std::fabs(static_cast<double>(b[i])));
  }
  return m > 0 ? d / m : d;
}

// Per-token comparison of two logit matrices [n, V]: KL(p_ref ‖ p_test) in nats and top-1 agreement.
struct LogitParity {
  int64_t tokens = 0;
  int64_t top1_agree = 0;
  std::vector<double> kl;  // [n]
  double mean_kl() const {
    double s = 0;
    for (double k : kl) s += k;
    return kl.empty() ? 0 : s / static_cast<double>(kl.size());
  }
  double max_kl() const { return kl.empty() ? 0 : *std::max_element(kl.begin(), kl.end()); }
  double quantile_kl(double q) const {
    if (kl.empty()) return 0;
    std::vector<double> s = kl;
    std::sort(s.begin(), s.end());
    return s[static_cast<size_t>(std::min<double>(static_cast<double>(s.size()) - 1, std::ceil(q * static_cast<double>(s.size())) - 1))];
  }
  double top1() const { return tokens ? static_cast<double>(top1_agree) / static_cast<double>(tokens) : 1.0; }
};

inline void add_parity(const float* ref, const float* test, int64_t n, int64_t V, LogitParity& out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* r = ref + t * V;
    const float* q = test + t * V;
    double mr = -INFINITY, mq = -INFINITY;
    int64_t ar = 0, aq = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (r[v] > mr) mr = r[v], ar = v;
      if (q[v] > mq) mq = q[v], aq = v;
    }
    double zr = 0, zq = 0;
    for (int64_t v = 0; v < V; ++v) zr += std::exp(r[v] - mr), zq += std::exp(q[v] - mq);
    const double lzr = std::log(zr) + mr, lzq = std::log(zq) + mq;
    double kl = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double lp = r[v] - lzr, lq = q[v] - lzq;
      kl += std::exp(lp) * (lp - lq);
    }
    out.kl.push_back(std::max(kl, 0.0));
    out.top1_agree += ar == aq;
    ++out.tokens;
  }
}

}  // namespace qaft::test
