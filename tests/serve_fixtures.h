// Shared pieces of the server tests: a tiny DeepSeek-V3 model whose vocabulary is the tiny chat
// tokenizer's (256 bytes + <|im_start|> + <|im_end|>, ChatML template), served in FP8, and the
// reference answers of generate() on a separate engine built from the same weights.
#pragma once

#include "data/chat_template.h"
#include "infer/engine.h"
#include "infer/sampler.h"
#include "infer_fixtures.h"
#include "serve/deployment.h"
#include "tiny_chat_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

namespace qaft::test {

inline constexpr int64_t kServeContext = 2048;  // max_position_embeddings of the test model
inline constexpr int32_t kServeEos = 257;       // <|im_end|>

// The config.json text of the test model.
inline std::string serve_config_json() {
  return R"({"model_type": "deepseek_v3", "vocab_size": 258, "hidden_size": 32, "intermediate_size": 48,
        "moe_intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 3, "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc",
        "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
        "v_head_dim": 6, "rms_norm_eps": 1e-6, "max_position_embeddings": 2048, "rope_theta": 10000,
        "tie_word_embeddings": false})";
}

inline ModelConfig serve_config() { return model_config_from_json(serve_config_json(), "serve-tiny"); }

inline const ParamStore<float>& serve_params() {
  static const ParamStore<float> p = random_params(serve_config(), 21, 0.2);
  return p;
}

inline InferenceModel serve_model(Precision precision = Precision::kFp8) {
  InferenceOptions o;
  o.precision = precision;
  return InferenceModel(serve_config(), serve_params(), nullptr, o);
}

inline std::unique_ptr<Deployment> serve_deployment(const std::string& name = "tiny-chat") {
  return std::make_unique<Deployment>(name, tiny_chat_tokenizer(), serve_model());
}

// generate() on an engine of its own: what the server must answer.
class ServeReference {
 public:
  ServeReference() : tokenizer_(tiny_chat_tokenizer()), model_(serve_model()) {
    tpl_ = std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer(tokenizer_, "tiny-chat"));
  }
  ServeReference(const ServeReference&) = delete;
  ServeReference& operator=(const ServeReference&) = delete;

  const Tokenizer& tokenizer() const { return tokenizer_; }

  std::vector<int32_t> chat_prompt(const std::vector<ChatMessage>& messages) const {
    ChatRenderOptions o;
    o.add_generation_prompt = true;
    return tpl_->render(messages, o).ids;
  }

  // The server's sampling for a request: its params plus the EOS stop id (unless ignore_eos).
  static SamplingParams params(int64_t max_tokens, double temperature = 0, uint64_t seed = 0,
                               std::vector<std::string> stop = {}, bool ignore_eos = false) {
    SamplingParams p;
    p.max_tokens = max_tokens;
    p.temperature = temperature;
    p.seed = seed;
    p.stop = std::move(stop);
    if (!ignore_eos) p.stop_token_ids = {kServeEos};
    return p;
  }

  Generation generate_ids(const std::vector<int32_t>& prompt, const SamplingParams& p) {
    return qaft::generate(model_, tokenizer_, prompt, p);
  }
  Generation chat(const std::string& user, const SamplingParams& p) {
    return generate_ids(chat_prompt({{"user", user}}), p);
  }
  Generation complete(const std::string& prompt, const SamplingParams& p) {
    return generate_ids(tokenizer_.encode(prompt, true), p);
  }

 private:
  Tokenizer tokenizer_;
  InferenceModel model_;
  std::unique_ptr<ChatTemplate> tpl_;  // refers to tokenizer_
};

// completion_tokens the server reports for a generation: the tokens sampled, a stop token included.
inline int64_t served_completion_tokens(const Generation& g, bool stop_sequences) {
  const bool stopped_by_token = g.finish_reason == "stop" && !stop_sequences;
  return static_cast<int64_t>(g.tokens.size()) + (stopped_by_token ? 1 : 0);
}

}  // namespace qaft::test
