// ModelConfig — one struct with feature flags for every supported architecture (no class tree),
// read from a Hugging Face `config.json` (formats.md §1, §2).
//
// Families: deepseek_v3, deepseek_v2 (incl. V2-Lite), llama (3.x), qwen2, qwen2_moe, qwen3,
// qwen3_moe. Unknown keys are ignored; a feature qaft does not support is an error naming the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qaft {

enum class ModelFamily : uint8_t { kDeepseekV3, kDeepseekV2, kLlama, kQwen2, kQwen2Moe, kQwen3, kQwen3Moe };
enum class AttentionKind : uint8_t {
  kMla,  // DeepSeek multi-head latent attention
  kGqa,  // grouped-query attention (llama/qwen), MHA when kv heads = heads
};
enum class RopeScaling : uint8_t { kNone, kYarn, kLlama3, kLinear };
enum class RouterScoring : uint8_t { kSoftmax, kSigmoid };
enum class TopkMethod : uint8_t {
  kGreedy,              // plain top-k on the scores
  kGroupLimitedGreedy,  // DeepSeek-V2: keep topk_group groups by max score, then top-k
  kNoauxTc,             // DeepSeek-V3: scores + correction bias, groups by sum of top-2, top-k
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kDeepseekV3;
  std::string model_type;          // as in config.json
  AttentionKind attention = AttentionKind::kMla;

  // Sizes.
  int64_t vocab_size = 0;          // V
  int64_t hidden_size = 0;         // C
  int64_t num_layers = 0;          // L (MTP layers beyond it are not part of the model)
  int64_t intermediate_size = 0;   // dense MLP width
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;  // lm_head shares the embedding table
  int64_t bos_token_id = -1;       // -1 = not set
  int64_t eos_token_id = -1;       // first of the list if config.json has several

  // Attention (common).
  int64_t num_heads = 0;           // H
  int64_t num_kv_heads = 0;        // Hkv (GQA); = H for MLA
  int64_t head_dim = 0;            // GQA head dim D
  bool qkv_bias = false;           // bias on q/k/v projections (qwen2, llama attention_bias)
  bool o_bias = false;             // bias on o_proj (llama attention_bias)
  bool qk_norm = false;            // per-head RMSNorm on q and k before RoPE (qwen3)

  // MLA (DeepSeek).
  int64_t q_lora_rank = 0;         // 0 = plain q_proj (V2-Lite)
  int64_t kv_lora_rank = 0;        // compressed KV latent width
  int64_t qk_nope_head_dim = 0;    // non-rotary part of q/k per head
  int64_t qk_rope_head_dim = 0;    // rotary part (one shared k_pe per token)
  int64_t v_head_dim = 0;          // value head dim

  // RoPE.
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::kNone;
  double rope_factor = 1.0;
  int64_t rope_original_max_position = 0;  // original_max_position_embeddings
  double yarn_beta_fast = 32.0;
  double yarn_beta_slow = 1.0;
  double yarn_mscale = 1.0;
  double yarn_mscale_all_dim = 0.0;
  double llama3_low_freq_factor = 1.0;
  double llama3_high_freq_factor = 4.0;

  // MoE (num_experts = 0: dense model).
  int64_t num_experts = 0;          // E routed experts
  int64_t num_experts_per_tok = 0;  // K
  int64_t moe_intermediate_size = 0;  // I
  int64_t shared_intermediate_size = 0;  // shared expert width (0 = none)
  bool shared_expert_gate = false;  // qwen2_moe: out += sigmoid(x·g)·shared(x)
  RouterScoring scoring = RouterScoring::kSoftmax;
  TopkMethod topk_method = TopkMethod::kGreedy;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;  // deepseek: layers < this are dense
  int64_t moe_layer_freq = 1;         // deepseek: MoE every this many layers
  int64_t decoder_sparse_step = 1;    // qwen moe: MoE iff (layer+1) % step == 0
  std::vector<int64_t> mlp_only_layers;  // qwen moe: forced dense layers
  int64_t num_nextn_predict_layers = 0;  // DeepSeek MTP layers stored after the main layers

  // FP8 checkpoint (quantization_config): weights stored E4M3 with 128×128 weight_scale_inv.
  bool fp8_checkpoint = false;
  bool fp8_scale_ue8m0 = false;     // quantization_config.scale_fmt == "ue8m0"

  // Derived.
  bool is_moe_layer(int64_t layer) const;
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }  // MLA q·k dim
  int64_t rope_dim() const { return attention == AttentionKind::kMla ? qk_rope_head_dim : head_dim; }
  bool rope_interleaved() const { return attention == AttentionKind::kMla; }
  // Rotary inverse frequencies [rope_dim/2] with YaRN / llama3 scaling applied.
  std::vector<double> rope_inv_freq() const;
  // Multiplier of q·k before the softmax (MLA: qk_head_dim^-0.5 · mscale² under YaRN).
  double softmax_scale() const;
  std::string family_name() const;
};

// Parses config.json text; `source` names the file in errors.
ModelConfig model_config_from_json(const std::string& json_text, const std::string& source);
// Reads DIR/config.json.
ModelConfig model_config_load(const std::string& model_dir);

}  // namespace qaft
