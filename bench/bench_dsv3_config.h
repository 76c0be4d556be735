// The bench-sized DeepSeek-V3 configuration that bench_model, bench_train, bench_infer and
// bench_serve share: hidden 1024, MLA (q_lora 384, kv_lora 256), 64 routed experts top-6 in 8
// groups (top 4), 2 shared, the first layer dense. As (config.json key, JSON value) pairs, so that
// bench_model can hand the same keys to make_tiny_model.py as --set overrides.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qaft::bench {

inline std::vector<std::pair<std::string, std::string>> bench_dsv3_keys(int64_t vocab, int64_t layers) {
  return {
      {"vocab_size", std::to_string(vocab)},
      {"hidden_size", "1024"},
      {"num_hidden_layers", std::to_string(layers)},
      {"intermediate_size", "2816"},
      {"moe_intermediate_size", "256"},
      {"num_attention_heads", "16"},
      {"num_key_value_heads", "16"},
      {"n_routed_experts", "64"},
      {"num_experts_per_tok", "6"},
      {"n_shared_experts", "2"},
      {"n_group", "8"},
      {"topk_group", "4"},
      {"topk_method", "\"noaux_tc\""},
      {"scoring_func", "\"sigmoid\""},
      {"norm_topk_prob", "true"},
      {"routed_scaling_factor", "2.5"},
      {"first_k_dense_replace", "1"},
      {"moe_layer_freq", "1"},
      {"q_lora_rank", "384"},
      {"kv_lora_rank", "256"},
      {"qk_nope_head_dim", "64"},
      {"qk_rope_head_dim", "32"},
      {"v_head_dim", "64"},
      {"max_position_embeddings", "4096"},
      {"rope_theta", "10000.0"},
      {"rope_scaling", "null"},
      {"rms_norm_eps", "1e-06"},
      {"tie_word_embeddings", "false"},
      {"hidden_act", "\"silu\""},
      {"num_nextn_predict_layers", "0"},
  };
}

inline std::string bench_dsv3_config_json(int64_t vocab, int64_t layers) {
  std::string j = "{\"model_type\": \"deepseek_v3\"";
  for (const auto& [k, v] : bench_dsv3_keys(vocab, layers)) j += fmt::format(", \"{}\": {}", k, v);
  return j + "}";
}

}  // namespace qaft::bench
