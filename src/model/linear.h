// A linear layer y = x · Wᵀ + b (W [out, in], HF layout) bound to its parameter and gradient
// storage — or a stack of G such weights applied to a buffer of rows grouped by expert (the
// routed experts of an MoE layer) — with forward and backward. Every projection of the model goes
// through here, and so does everything a fine-tuning or FP8 run changes about a projection:
//
//   base weight   W0: the compute-type parameter `w`, or a frozen BF16/FP8/NF4 tensor that is
//                 dequantized one weight (one expert) at a time and dropped after use;
//   LoRA          y += s·(drop(x)·Aᵀ)·Bᵀ, A [r, in], B [out, r] (stacked [G, r, in], [G, out, r]);
//   LoRA-QAT      (formats.md §7.3) y = Q_a(x) · Q_w(W0 + s·B·A)ᵀ: the merged weight, built per
//                 expert (never all experts at once), fake-quantized to E4M3 in 128×128 blocks, the
//                 input to E4M3 1×128 tiles; straight-through backward with detached scales.
//                 The forward multiplies the codes as the FP8 server does (kernels/cpu/block_gemm.h:
//                 per-128-K-block partial dots × both scales), so that evaluation during training
//                 and the server compute the same numbers, not merely the same products.
//                 Linears without an adapter get the same treatment of their base weight, because
//                 the FP8 server quantizes every linear — except a base already stored in FP8,
//                 whose stored codes are exactly what the server uses;
//   FP8 training  (DeepSeek-V3 mixed precision) every operand of the three GEMMs is E4M3:
//                 forward Q(x)[1×128]·Q(W)[128×128]ᵀ, input gradient Q(dy)[1×128]·Q(W),
//                 weight gradient Q(dy)[128×1]ᵀ·Q(x)[128×1] (tiles along the token dimension,
//                 the reduction dimension of that GEMM). The products are accumulated in FP32: on
//                 a CPU, that is what DeepSeek's promotion to FP32 every 128 elements achieves on
//                 tensor cores, so only the operand rounding is simulated (docs/training.md).
//                 kBf16 rounds the same operands to BF16 instead: the baseline of the loss gap.
//
// Convention: backward overwrites dx (or adds when accumulate_dx; skipped when dx is nullptr) and
// accumulates dW, db, dA, dB. Nothing but x is kept between forward and backward: the backward
// recomputes the quantized input, x·Aᵀ and the merged weights.
#pragma once

#include "model/weights.h"
#include "numerics/scale_recipe.h"

#include <string>

namespace qaft {

struct FrozenTensor;
class FrozenStore;

// LoRA quantization-aware training.
struct QatConfig {
  bool enabled = false;                                  // fake-quantize the (merged) weights
  ScaleFormat weight_scale_format = ScaleFormat::kFp32;  // 128×128 block scales: the target server's
  bool quantize_activations = true;                      // 1×128 tiles on every linear's input (W8A8)
};

// Operand precision of the GEMMs of full training.
enum class GemmPrecision : uint8_t {
  kExact,  // the compute type (fp32 / fp64)
  kFp8,    // DeepSeek-V3: E4M3 operands with 1×128 / 128×128 scales, FP32 accumulation
  kBf16,   // the same recipe with BF16 operands
};

// How every linear of a model computes. One instance per model, shared by its layers.
struct LinearNumerics {
  QatConfig qat;
  GemmPrecision precision = GemmPrecision::kExact;
  ScaleFormat fp8_scale_format = ScaleFormat::kFp32;  // scales of FP8 training
  double lora_dropout = 0;      // probability of dropping an adapter input (not with QAT)
  uint64_t dropout_seed = 0;    // changes per micro-batch; the mask is a hash of (seed, module, row, col)
  bool train_mode = false;      // dropout only while training (evaluation sees no dropout)
};

template <typename T>
struct LinearRef {
  const T* w = nullptr;                  // [G?, out, in] base weight, or nullptr when `frozen`
  const FrozenTensor* frozen = nullptr;  // base weight in its storage format, or nullptr
  const T* b = nullptr;                  // [out] or nullptr (plain linears only)
  T* dw = nullptr;                       // [G?, out, in] gradient (accumulated); nullptr = frozen
  T* db = nullptr;                       // [out]
  int64_t out = 0;
  int64_t in = 0;
  int64_t groups = 0;                    // 0: one weight; G > 0: stacked expert weights
  // LoRA (lora_a == nullptr: none).
  const T* lora_a = nullptr;             // [G?, r, in]
  const T* lora_b = nullptr;             // [G?, out, r]
  T* dlora_a = nullptr;                  // gradients (accumulated), nullptr when not trained
  T* dlora_b = nullptr;
  int64_t rank = 0;                      // r
  T lora_scale = T(0);                   // s
  uint64_t id = 0;                       // hash of the module name: the dropout stream
  const LinearNumerics* numerics = nullptr;  // nullptr = exact, no QAT

  bool has_lora() const { return lora_a != nullptr; }
};

// Where a model's weights live; the bind_* functions of every layer take it.
template <typename T>
struct WeightBinding {
  const ParamStore<T>* params = nullptr;     // compute-type parameters (all that are not frozen)
  ParamStore<T>* grads = nullptr;            // their gradients, or nullptr (frozen / inference)
  const FrozenStore* frozen = nullptr;       // base linears stored BF16/FP8/NF4, or nullptr
  const ParamStore<T>* lora = nullptr;       // adapter parameters (adapters/lora_targets.h names)
  ParamStore<T>* lora_grads = nullptr;       // their gradients
  double lora_scale = 0;                     // s
  const LinearNumerics* numerics = nullptr;
};

// Binds "<prefix>.weight" (and "<prefix>.bias", "<prefix>.lora_A.weight", "<prefix>.lora_B.weight"
// when present).
template <typename T>
LinearRef<T> bind_linear(const WeightBinding<T>& wb, const std::string& prefix);
template <typename T>
LinearRef<T> bind_linear(const ParamStore<T>& params, ParamStore<T>* grads, const std::string& prefix);
// Binds a stacked expert weight "<name>" [E, out, in] (and "<name>.lora_A" / "<name>.lora_B").
template <typename T>
LinearRef<T> bind_expert_linear(const WeightBinding<T>& wb, const std::string& name);

// y [N, out] = x [N, in] · Wᵀ + b (overwritten). l.groups must be 0.
template <typename T>
void linear_forward(const LinearRef<T>& l, const T* x, int64_t N, T* y);
template <typename T>
void linear_backward(const LinearRef<T>& l, const T* dy, const T* x, int64_t N, T* dx, bool accumulate_dx);

// Grouped: rows [offsets[g], offsets[g+1]) of x [rows, in] go through weight g; y [rows, out].
// offsets has l.groups + 1 entries, offsets[0] = 0.
template <typename T>
void grouped_linear_forward(const LinearRef<T>& l, const int64_t* offsets, const T* x, T* y);
template <typename T>
void grouped_linear_backward(const LinearRef<T>& l, const int64_t* offsets, const T* dy, const T* x, T* dx,
                             bool accumulate_dx);

// The weight group g computes with in the forward pass: W0 (+ s·B·A), quantized as the numerics
// say. out [out, in]. (Used by the forward, the tests, and the export of merged weights.)
template <typename T>
void effective_weight(const LinearRef<T>& l, int64_t group, T* out);

// LoRA scale s as PEFT computes it: alpha / r, or alpha / sqrt(r) with rsLoRA.
double lora_scale(double alpha, int64_t rank, bool rslora);

}  // namespace qaft
