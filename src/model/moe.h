// Mixture-of-Experts FFN: router → permutation of tokens into one buffer grouped by expert →
// grouped expert GEMMs (SwiGLU) → weighted combine, plus shared experts.
//
// Routing (formats.md §1.4, §2.1–2.3; the official DeepSeek code where HF differs):
//   scores s = sigmoid(x·Wgᵀ) (DeepSeek-V3) or softmax(x·Wgᵀ) (V2, Qwen MoE)
//   choice = s + e_score_correction_bias (noaux_tc) or s
//   groups (n_group > 1): group score = sum of the top-2 choices (noaux_tc) or max (V2's
//     group_limited_greedy); all but the best topk_group groups are masked with −inf
//   idx = top-K of choice; w = s[idx]; if norm_topk_prob: w /= Σw; w *= routed_scaling_factor
//   y = Σ_k w_k · Expert_idx_k(x) + shared(x)   (qwen2_moe: + sigmoid(x·g) · shared(x))
// Gradients reach the router weight through w (the discrete choice has none); the correction
// bias is a buffer moved by the load-balancing rule, not by gradients.
#pragma once

#include "model/mlp.h"

#include <vector>

namespace qaft {

template <typename T>
struct MoeRef {
  const T* router = nullptr;       // [E, C]
  T* drouter = nullptr;
  const T* bias = nullptr;         // [E] e_score_correction_bias, or nullptr
  LinearRef<T> gate, up, down;     // stacked routed experts [E, I, C], [E, I, C], [E, C, I]
  bool has_shared = false;
  MlpRef<T> shared;                // shared expert(s) as one MLP
  const T* shared_gate = nullptr;  // [1, C] qwen2_moe shared_expert_gate, or nullptr
  T* dshared_gate = nullptr;
};

template <typename T>
MoeRef<T> bind_moe(const WeightBinding<T>& wb, const std::string& prefix, const ModelConfig& config);

template <typename T>
struct MoeSaved {
  std::vector<T> scores;               // [N, E] router scores (sigmoid or softmax)
  std::vector<int32_t> topk;           // [N, K] chosen experts
  std::vector<T> w;                    // [N, K] combine weights
  std::vector<int64_t> offsets;        // [E + 1] rows of each expert in the permuted buffer
  std::vector<int64_t> row_of;         // [N·K] permuted row of (token, k)
  std::vector<int64_t> token_of_row;   // [N·K]
  std::vector<T> xp, g, u, h, yp;      // [N·K, C], [N·K, I] ×3, [N·K, C]
  MlpSaved<T> shared;
  std::vector<T> shared_out;           // [N, C] shared MLP output (before its gate)
  std::vector<T> shared_gate_logit;    // [N] qwen2_moe
};

// Routing alone (also used for inference and the balancing statistics): fills scores, topk, w.
template <typename T>
void moe_route(const MoeRef<T>& m, const ModelConfig& c, const T* x, int64_t N, MoeSaved<T>& s);

// y [N, C] overwritten.
template <typename T>
void moe_forward(const MoeRef<T>& m, const ModelConfig& c, const T* x, int64_t N, T* y, MoeSaved<T>& s);
// dx [N, C] overwritten.
template <typename T>
void moe_backward(const MoeRef<T>& m, const ModelConfig& c, const T* dy, const T* x, int64_t N,
                  const MoeSaved<T>& s, T* dx);

}  // namespace qaft
