// A linear layer with a LoRA adapter and optional FP8 quantization-aware training (formats.md §7.3):
//
//   plain:  y = x·W0ᵀ + s·(x·Aᵀ)·Bᵀ                 (never forms the merged weight)
//   QAT:    M = W0 + s·B·A;  y = Q_a(x) · Q_w(M)ᵀ
//           Q_w: fake-quantization of M to E4M3 in 128×128 blocks (fp32 or UE8M0 scales — pick the
//                target server's); Q_a: 1×128 per-token tiles (optional)
// Backward is the straight-through estimator with detached scales: the quantizers are identities,
// so with G = dyᵀ·Q_a(x):  dA = s·Bᵀ·G = s·(dy·B)ᵀ·Q_a(x),  dB = s·G·Aᵀ = s·dyᵀ·(Q_a(x)·Aᵀ),
// dx = dy·Q_w(M) (QAT) or dy·W0 + s·(dy·B)·A (plain). W0 is frozen (no gradient).
// s = alpha / r, or alpha / sqrt(r) with rsLoRA (PEFT's convention).
#pragma once

#include "numerics/scale_recipe.h"

#include <cstdint>
#include <vector>

namespace qaft {

struct QatConfig {
  bool enabled = false;                                      // fake-quantize the merged weight
  ScaleFormat weight_scale_format = ScaleFormat::kFp32;      // 128×128 block scales
  bool quantize_activations = true;                          // 1×128 tiles on the input (W8A8)
};

template <typename T>
struct LoraLinearRef {
  const T* w0 = nullptr;  // [out, in] frozen base weight (dequantized view)
  const T* a = nullptr;   // [r, in]
  const T* b = nullptr;   // [out, r]
  T* da = nullptr;        // [r, in] gradient (accumulated)
  T* db = nullptr;        // [out, r] gradient (accumulated)
  int64_t out = 0;
  int64_t in = 0;
  int64_t rank = 0;       // r
  T scale = T(1);         // s
};

// LoRA scale s as PEFT computes it.
double lora_scale(double alpha, int64_t rank, bool rslora);

template <typename T>
struct LoraSaved {
  std::vector<T> xq;      // [N, in] the input the GEMM saw (Q_a(x) under QAT, else x)
  std::vector<T> xa;      // [N, r] xq·Aᵀ
  std::vector<T> merged;  // [out, in] Q_w(M) under QAT (else empty)
};

// The merged weight M = W0 + s·B·A, fake-quantized when qat.enabled. out_w [out, in].
template <typename T>
void lora_merged_weight(const LoraLinearRef<T>& l, const QatConfig& qat, T* out_w);

// y [N, out] (overwritten).
template <typename T>
void lora_linear_forward(const LoraLinearRef<T>& l, const QatConfig& qat, const T* x, int64_t N, T* y,
                         LoraSaved<T>& saved);
// dx [N, in] overwritten (skipped when nullptr); da, db accumulated.
template <typename T>
void lora_linear_backward(const LoraLinearRef<T>& l, const QatConfig& qat, const T* dy, int64_t N,
                          const LoraSaved<T>& saved, T* dx);

}  // namespace qaft
