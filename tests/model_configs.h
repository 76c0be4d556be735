// Tiny configs of every supported family, as config.json text, for model tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace qaft::test {

// {name, config.json}
inline std::vector<std::pair<std::string, std::string>> tiny_model_configs() {
  return {
      {"deepseek_v3", R"({"model_type": "deepseek_v3", "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
        "moe_intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 3, "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc",
        "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
        "v_head_dim": 6, "rms_norm_eps": 1e-6, "max_position_embeddings": 256, "rope_theta": 10000,
        "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 64, "beta_fast": 32,
        "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}})"},
      {"deepseek_v2_lite", R"({"model_type": "deepseek_v2", "vocab_size": 89, "hidden_size": 32, "intermediate_size": 40,
        "moe_intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 2, "n_routed_experts": 6,
        "n_shared_experts": 2, "num_experts_per_tok": 2, "topk_method": "greedy", "scoring_func": "softmax",
        "norm_topk_prob": false, "routed_scaling_factor": 1.0, "first_k_dense_replace": 1, "q_lora_rank": null,
        "kv_lora_rank": 12, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8,
        "max_position_embeddings": 128, "rope_scaling": {"type": "yarn", "factor": 40,
        "original_max_position_embeddings": 32, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707,
        "mscale_all_dim": 0.707}})"},
      {"llama", R"({"model_type": "llama", "vocab_size": 101, "hidden_size": 32, "intermediate_size": 56,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 512, "rope_theta": 500000, "rope_scaling": {"rope_type": "llama3",
        "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64}})"},
      {"qwen2", R"({"model_type": "qwen2", "vocab_size": 83, "hidden_size": 24, "intermediate_size": 40,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": true,
        "max_position_embeddings": 128})"},
      {"qwen3_moe", R"({"model_type": "qwen3_moe", "vocab_size": 79, "hidden_size": 32, "intermediate_size": 48,
        "moe_intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 12, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": true,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "max_position_embeddings": 128})"},
      {"qwen2_moe", R"({"model_type": "qwen2_moe", "vocab_size": 71, "hidden_size": 24, "intermediate_size": 32,
        "moe_intermediate_size": 8, "shared_expert_intermediate_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "num_experts": 6, "num_experts_per_tok": 2,
        "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": [0], "max_position_embeddings": 128})"},
  };
}

}  // namespace qaft::test
