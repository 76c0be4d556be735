// The serving model's layers over one engine step: the N new tokens of every request in the step,
// concatenated (request after request) into one [N, C] buffer. Linears and the FFN run on all N
// rows at once (batched across requests); the attention core runs per request over its KV cache.
#pragma once

#include "infer/kv_cache.h"
#include "infer/serving_weights.h"
#include "model/config.h"

#include <vector>

namespace qaft {

// How MLA attends (the results agree up to fp32 rounding).
enum class MlaAttention : uint8_t {
  kAuto,      // naive for prefill chunks (n > 1), absorbed for single-token decode steps
  kNaive,     // up-project every cached latent through kv_b to per-head K and V
  kAbsorbed,  // fold kv_b into the query and the output (DeepSeek's attn_impl="absorb")
};

// One request's rows of the step.
struct StepPart {
  Sequence* sequence = nullptr;
  int64_t row0 = 0;  // first row in the step's buffer
  int64_t n = 0;     // new tokens
  int64_t past = 0;  // tokens already cached (the first new token's position)
};

struct StepBatch {
  std::vector<StepPart> parts;
  std::vector<int32_t> positions;  // [N] RoPE position of each row
  int64_t rows() const { return static_cast<int64_t>(positions.size()); }
};

// Attention of layer `layer` on x [N, C] (normed); appends the new tokens' keys and values to each
// request's cache; y [N, C] overwritten.
void mla_step(const ServingMla& w, const ModelConfig& c, const ServingNumerics& numerics, MlaAttention mode,
              const std::vector<double>& inv_freq, int64_t layer, const StepBatch& batch, const float* x, float* y);
void gqa_step(const ServingGqa& w, const ModelConfig& c, const ServingNumerics& numerics,
              const std::vector<double>& inv_freq, int64_t layer, const StepBatch& batch, const float* x, float* y);

// FFN on x [N, C]; y [N, C] overwritten.
void mlp_step(const ServingMlp& w, const ServingNumerics& numerics, const float* x, int64_t N, float* y);
void moe_step(const ServingMoe& w, const ModelConfig& c, const ServingNumerics& numerics, const float* x, int64_t N,
              float* y);

}  // namespace qaft
