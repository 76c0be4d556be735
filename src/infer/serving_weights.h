// The serving model's weights, and the live merge that builds them from a base model and an
// optional LoRA adapter.
//
// Live merge, per linear (and per routed expert, one at a time — never every expert's fp32 weight
// at once), with the arithmetic of the training forward (model/linear.h effective_weight):
//   kFp8:  M = W0 + s·B·A, fake-quantized to E4M3 128×128 exactly as the QAT forward does (by calling
//          effective_weight with QAT numerics on a LinearRef bound to the base and the adapter), then
//          quantized into codes + scales. Q(M) is a fixed point of that quantization: the block amax
//          of Q(M) is fl(448·σ), fl(fl(448·σ)/448) = σ for every σ = fl(amax/448) (checked
//          exhaustively over fp32 mantissas), and each value re-encodes to its own code — so the
//          served codes·scales are the values the QAT forward computed with, bit for bit (tested).
//          With UE8M0 scales the values are equally reproduced (a block may come back with σ/2 and
//          doubled codes: the same numbers). An FP8-stored base linear without adapter keeps the
//          checkpoint's codes and scales as they are (what the QAT forward uses for it too).
//   kBf16: BF16(M) (effective_weight with BF16 rounding).
//   kF32:  M in fp32 (W0, plus s·B·A computed with effective_weight's GEMM call).
// Embedding, LM head, norms, router and biases are copied as fp32. The result owns everything: the
// base model and the adapter may be dropped afterwards.
#pragma once

#include "adapters/peft_io.h"
#include "infer/infer_linear.h"
#include "model/frozen_weights.h"

#include <vector>

namespace qaft {

struct ServingMla {
  bool q_lora = false;
  InferLinear q_a, q_b, q;             // [Rq, C], [H·Dqk, Rq] | [H·Dqk, C]
  InferLinear kv_a, kv_b, o;           // [Rkv + Dr, C], [H·(Dn + Dv), Rkv], [C, H·Dv]
  std::vector<float> q_a_norm;         // [Rq]
  std::vector<float> kv_norm;          // [Rkv]
  std::vector<float> kv_b_values;      // [H·(Dn + Dv), Rkv] kv_b's served values, for absorbed attention
};

struct ServingGqa {
  InferLinear q, k, v, o;              // [H·D, C], [Hkv·D, C] ×2, [C, H·D] (+ biases)
  std::vector<float> q_norm, k_norm;   // [D] (qwen3) or empty
};

struct ServingMlp {
  InferLinear gate, up, down;          // [I, C], [I, C], [C, I]
};

struct ServingMoe {
  std::vector<float> router;           // [E, C]
  std::vector<float> bias;             // [E] e_score_correction_bias, or empty
  InferLinear gate, up, down;          // stacked [E, I, C], [E, I, C], [E, C, I]
  bool has_shared = false;
  ServingMlp shared;
  std::vector<float> shared_gate;      // [C] qwen2_moe, or empty
};

struct ServingLayer {
  std::vector<float> norm1, norm2;     // [C] input / post-attention RMSNorm
  bool moe = false;
  ServingMla mla;
  ServingGqa gqa;
  ServingMlp mlp;
  ServingMoe moe_ffn;
};

struct ServingWeights {
  std::vector<float> embed;            // [V, C]
  std::vector<float> head;             // [V, C] (a copy of embed when tied)
  std::vector<float> final_norm;       // [C]
  std::vector<ServingLayer> layers;
  int64_t bytes() const;
};

// What the live merge did.
struct MergeReport {
  double seconds = 0;            // wall time of building every serving weight
  int64_t linears = 0;           // serving weights built (each routed expert counts)
  int64_t merged = 0;            // of which carried a LoRA adapter (M = W0 + s·B·A)
  int64_t kept_fp8 = 0;          // of which reused an FP8 base's stored codes as they are
  int64_t weight_bytes = 0;      // bytes of the serving model's weights
};

// Builds the serving weights from a base (its float parameters `params`, and its linears in `frozen`
// when not nullptr) and an optional adapter.
ServingWeights build_serving_weights(const ModelConfig& config, const ParamStore<float>& params,
                                     const FrozenStore* frozen, const PeftAdapter* adapter,
                                     const ServingNumerics& numerics, MergeReport& report);

}  // namespace qaft
