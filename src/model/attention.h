// The two attention layers: DeepSeek MLA (mla_*) and grouped-query attention for llama/qwen
// (gqa_*). Both take x [N, C] (already normed), write y [N, C], and keep what the backward needs.
#pragma once

#include "model/linear.h"

#include <vector>

namespace qaft {

// Where the N = B·T tokens of a batch sit.
struct SequenceInfo {
  int64_t B = 0;                      // sequences
  int64_t T = 0;                      // tokens per sequence
  const int32_t* positions = nullptr; // [B·T] RoPE position of each token
  const int32_t* segment = nullptr;   // [B·T] packed-document id per token, or nullptr
};

// ---- MLA (deepseek-ai/DeepSeek-V3 inference/model.py class MLA; formats.md §1.2) ----
template <typename T>
struct MlaRef {
  bool q_lora = false;            // q_a → q_a_layernorm → q_b path (else plain q_proj)
  LinearRef<T> q_a, q_b, q;       // [Rq, C], [H·Dqk, Rq] | [H·Dqk, C]
  LinearRef<T> kv_a, kv_b, o;     // [Rkv + Dr, C], [H·(Dn + Dv), Rkv], [C, H·Dv]
  const T* q_a_norm = nullptr;    // [Rq]
  T* dq_a_norm = nullptr;
  const T* kv_norm = nullptr;     // [Rkv]
  T* dkv_norm = nullptr;
};

template <typename T>
MlaRef<T> bind_mla(const WeightBinding<T>& wb, const std::string& prefix);

template <typename T>
struct MlaSaved {
  std::vector<T> qa, qa_n, qa_rstd;  // [N, Rq] q latent before / after its norm, [N] rstd
  std::vector<T> Q;                  // [N, H, Dqk] queries after RoPE
  std::vector<T> kv_a;               // [N, Rkv + Dr] (the k_pe part after RoPE)
  std::vector<T> lat, lat_n, lat_rstd;  // [N, Rkv] latent before / after kv_a_layernorm, [N]
  std::vector<T> K, V, O, lse;       // [N, H, Dqk], [N, H, Dv], [N, H, Dv], [B, H, T]
};

template <typename T>
void mla_forward(const MlaRef<T>& m, const ModelConfig& c, const T* x, const SequenceInfo& seq,
                 const std::vector<double>& inv_freq, T* y, MlaSaved<T>& s);
// dx [N, C] overwritten.
template <typename T>
void mla_backward(const MlaRef<T>& m, const ModelConfig& c, const T* dy, const T* x, const SequenceInfo& seq,
                  const std::vector<double>& inv_freq, const MlaSaved<T>& s, T* dx);

// ---- GQA (transformers Llama/Qwen2/Qwen3 attention) ----
template <typename T>
struct GqaRef {
  LinearRef<T> q, k, v, o;        // [H·D, C], [Hkv·D, C], [Hkv·D, C], [C, H·D] (+ biases)
  const T* q_norm = nullptr;      // [D] qwen3 per-head norms, or nullptr
  const T* k_norm = nullptr;
  T* dq_norm = nullptr;
  T* dk_norm = nullptr;
};

template <typename T>
GqaRef<T> bind_gqa(const WeightBinding<T>& wb, const std::string& prefix);

template <typename T>
struct GqaSaved {
  std::vector<T> q_raw, k_raw;       // [N, H·D], [N, Hkv·D] before the qk norms (qwen3)
  std::vector<T> q_rstd, k_rstd;     // [N·H], [N·Hkv]
  std::vector<T> q, k, v;            // after norm and RoPE: [N, H, D], [N, Hkv, D], [N, Hkv, D]
  std::vector<T> O, lse;             // [N, H, D], [B, H, T]
};

template <typename T>
void gqa_forward(const GqaRef<T>& g, const ModelConfig& c, const T* x, const SequenceInfo& seq,
                 const std::vector<double>& inv_freq, T* y, GqaSaved<T>& s);
template <typename T>
void gqa_backward(const GqaRef<T>& g, const ModelConfig& c, const T* dy, const T* x, const SequenceInfo& seq,
                  const std::vector<double>& inv_freq, const GqaSaved<T>& s, T* dx);

}  // namespace qaft
