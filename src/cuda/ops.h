// The CUDA op table: the ops of kernels/ops.h (same names, same parameter lists, fp32 only), the
// quantization ops of numerics/scale_recipe.h and nf4.h, the MoE routing/permutation steps of
// model/moe.cpp as separate ops, AdamW, and the GEMMs of the FP8 recipe (cuBLASLt block-scaled,
// BF16, grouped expert GEMMs). Conventions are those of kernels/ops.h; in addition:
//   - every pointer is a DEVICE pointer (cudaMalloc'd, e.g. DeviceBuffer) unless marked "host";
//   - ops are enqueued on current_stream() and return without waiting, except those that return a
//     value computed on the device (lm_head_ce_forward, quantize's stats, clip_grad_norm), which
//     synchronize the stream;
//   - every op first calls require_cuda(): without a usable device it throws qaft::Error
//     (kUnsupported) naming the reason; argument errors throw kInvalidArgument as the CPU ops do;
//   - results are deterministic (no floating-point atomics; every reduction has a fixed order);
//   - tests/cuda/cuda_parity_test.cpp runs each op here and its CPU counterpart on the same inputs
//     (the tolerances are stated there and in docs/cuda.md).
#pragma once

#include "kernels/ops.h"          // Trans, RopeLayout
#include "model/config.h"         // ModelConfig (router fields), RouterScoring, TopkMethod
#include "numerics/scale_recipe.h"
#include "optim/adamw.h"          // AdamWConfig, MomentPrecision

#include <cstdint>

namespace qaft::cuda {

// ---- GEMMs (cuBLASLt; see cuda/gemm.cpp) --------------------------------------------------------

// fp32: C[M, N] = alpha · op(A) · op(B) + beta · C, exactly the CPU gemm's contract (row-major,
// beta = 0 never reads C). CUBLAS_COMPUTE_32F (no TF32).
void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

enum class GemmOut : uint8_t { kF32, kBF16 };  // element type of a GEMM's output D

// BF16 inputs (uint16 bit patterns), fp32 accumulation, fp32 or bf16 output C [M, N] (ldc).
void gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, void* C, int64_t ldc, GemmOut out);

enum class Fp8GemmBackend : uint8_t {
  kAuto,      // cuBLASLt where supported (device, library, shape), else the own kernel
  kCublasLt,  // cuBLASLt VEC128_32F × BLK128x128_32F; throws kUnsupported where it cannot run
  kOwn,       // the simple tiled kernel of grouped_gemm.cu (dequantize-on-load, fp32 FMA)
};

// The FP8 linear of DeepSeek-V3 ("NT"): D[M, N] = (A ⊙ σa) · (W ⊙ σw)ᵀ with
//   a        [M, K]  E4M3 codes of the activations (row-major, dense)
//   a_scales [M, cdiv(K, 128)]  fp32 1×128 scales (the layout quantize() writes for kTile1x128)
//   w        [N, K]  E4M3 codes of the weight [out, in]
//   w_scales [cdiv(N, 128), cdiv(K, 128)]  fp32 128×128 scales (weight_scale_inv)
//   d        [M, N]  output with row stride ldd, fp32 or bf16
// The cuBLASLt path reorders the scales into the layouts cuBLASLt expects (see gemm.cpp) and needs
// M % 4 == 0, N % 16 == 0, K % 16 == 0, a Hopper device and cuBLAS ≥ 12.9.
void fp8_gemm_1x128_128x128_nt(int64_t M, int64_t N, int64_t K, const uint8_t* a, const float* a_scales,
                               const uint8_t* w, const float* w_scales, void* d, int64_t ldd, GemmOut out,
                               Fp8GemmBackend backend = Fp8GemmBackend::kAuto);

// Grouped GEMM over the permuted MoE layout, the CPU grouped_gemm's contract: offsets [groups + 1]
// is a DEVICE array (int64). One launch over all (group, row tile, column tile) work items (a
// persistent grid that reads the group sizes on the device: no host synchronization). The
// installed cuBLAS (13.1) has no grouped matmul with per-group row counts in device memory, so
// this is the own tiled kernel of grouped_gemm.cu.
void grouped_gemm(Trans tb, int64_t groups, const int64_t* offsets, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* W, int64_t w_stride, float beta, float* C,
                  int64_t ldc);
// dW_g[N, K] += dY[rows_g]ᵀ · X[rows_g] (the CPU grouped_gemm_weight_grad).
void grouped_gemm_weight_grad(int64_t groups, const int64_t* offsets, int64_t N, int64_t K, const float* dY,
                              int64_t ldy, const float* X, int64_t ldx, float* dW, int64_t w_stride);
// FP8 grouped expert GEMM: for each group g, C[rows_g, :N] = alpha · (A ⊙ σa)[rows_g] · (W_g ⊙ σw_g)ᵀ
// + beta · C, with A [rows_total, K] E4M3 (lda), a_scales [rows_total, cdiv(K, 128)],
// W_g = w + g · w_stride [N, K] E4M3, σw_g = w_scales + g · ws_stride [cdiv(N, 128), cdiv(K, 128)].
void grouped_gemm_fp8_1x128_128x128_nt(int64_t groups, const int64_t* offsets, int64_t N, int64_t K,
                                       float alpha, const uint8_t* a, int64_t lda, const float* a_scales,
                                       const uint8_t* w, int64_t w_stride, const float* w_scales,
                                       int64_t ws_stride, float beta, float* C, int64_t ldc);

// ---- Layers (kernels/ops.h) ---------------------------------------------------------------------

void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t C, int64_t ld, float eps, float* y,
                     float* rstd);
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t rows,
                      int64_t C, int64_t ld, float* dx, float* dw);
// positions [N] int32 and inv_freq [rot_dim/2] float64 are device arrays.
void rope_apply(float* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset, int64_t rot_dim,
                const int32_t* positions, const double* inv_freq, RopeLayout layout, bool inverse);
// Dqk, Dv <= 256.
void attention_forward(const float* q, const float* k, const float* v, const int32_t* segment, int64_t B,
                       int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale, float* out,
                       float* lse);
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                        int64_t Dqk, int64_t Dv, float scale, float* dq, float* dk, float* dv);
void swiglu_forward(const float* g, const float* u, int64_t n, float* h);
void swiglu_backward(const float* dh, const float* g, const float* u, int64_t n, float* dg, float* du);
// ids must be in [0, V) (unchecked on the device: an id outside reads/writes out of bounds;
// compute-sanitizer reports it).
void embedding_forward(const int32_t* ids, int64_t N, const float* table, int64_t V, int64_t C, float* out);
// Deterministic: ids are sorted on the device and each id's rows summed in token order, so the
// result is bit-identical to the CPU op.
void embedding_backward(const int32_t* ids, int64_t N, const float* dout, int64_t V, int64_t C, float* dtable);
// Returns Σ loss_n · weight_n (synchronizes). Logits chunks via gemm().
double lm_head_ce_forward(const float* h, const float* W, const int32_t* targets, const float* weights, int64_t N,
                          int64_t C, int64_t V, int64_t chunk, float* lse);
void lm_head_ce_backward(const float* h, const float* W, const int32_t* targets, const float* weights,
                         const float* lse, int64_t N, int64_t C, int64_t V, int64_t chunk, float grad_scale,
                         float* dh, float* dW);
void lm_head_logits(const float* h, const float* W, int64_t N, int64_t C, int64_t V, float* logits);

// ---- MoE routing and permutation (the steps of model/moe.cpp) -----------------------------------

// Router from logits [N, E] (= x · Wgᵀ, computed by gemm): scores [N, E], topk [N, K] int32,
// w [N, K], following c.scoring, c.topk_method, c.n_group, c.topk_group, c.norm_topk_prob,
// c.routed_scaling_factor; bias [E] (e_score_correction_bias) or nullptr. One thread per token
// runs dn::route_token (E <= 512, n_group <= 64).
void moe_route(const float* logits, const float* bias, int64_t N, const ModelConfig& c, float* scores,
               int32_t* topk, float* w);
// Router backward: dlogits [N, E] (overwritten) from dw [N, K] (gradient of the combine weights).
void moe_route_backward(const float* dw, const float* scores, const int32_t* topk, int64_t N, const ModelConfig& c,
                        float* dlogits);
// Stable permutation of the (token, k) pairs by expert (moe_forward's counting sort): offsets [E + 1],
// row_of [N·K], token_of_row [N·K] (int64, as MoeSaved) and xp [N·K, C] = x[token_of_row].
void moe_permute(const int32_t* topk, int64_t N, int64_t K, int64_t E, const float* x, int64_t C,
                 int64_t* offsets, int64_t* row_of, int64_t* token_of_row, float* xp);
// y [N, C] = shared_term + Σ_k w[n, k] · yp[row_of[n·K + k]] (k in order), where shared_term is
// 0 (shared == nullptr), shared[n] or sigmoid(shared_gate_logit[n]) · shared[n].
void moe_combine_forward(const float* yp, const int64_t* row_of, const float* w, int64_t N, int64_t K, int64_t C,
                         const float* shared, const float* shared_gate_logit, float* y);
// dyp [N·K, C] (overwritten) = w · dy at each permuted row; dw [N, K] = dy · yp_row.
void moe_combine_backward(const float* dy, const float* yp, const int64_t* row_of, const float* w, int64_t N,
                          int64_t K, int64_t C, float* dyp, float* dw);
// dx [N, C] (overwritten) = Σ_k dxp[row_of[n·K + k]] in k order.
void moe_unpermute_backward(const float* dxp, const int64_t* row_of, int64_t N, int64_t K, int64_t C, float* dx);

// ---- Quantization (numerics/scale_recipe.h, nf4.h) ----------------------------------------------

// Bit-identical to the CPU quantize/dequantize/fake_quantize for every granularity, both scale
// formats, E4M3 and E5M2, NaN-poisoned blocks and partial edge blocks. quantize and fake_quantize
// synchronize to return the stats; quantize_async does not (nonfinite_count: device int32 counter
// that is ADDED to, or nullptr).
QuantizeStats quantize(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe,
                       uint8_t* codes, float* scales);
void quantize_async(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe,
                    uint8_t* codes, float* scales, int32_t* nonfinite_count);
void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, const ScaleRecipe& recipe,
                float* out);
QuantizeStats fake_quantize(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe, float* out);
void fake_quantize_backward(const float* grad_out, int64_t n, float* grad_x);

// NF4 (bitsandbytes layout): packed [ceil(n/2)], absmax [cdiv(n, blocksize)], quant_map [16] and
// nested_map [256] are device arrays. Bit-identical to the CPU functions.
void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax);
void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, float* out,
                    const float* quant_map);
void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, uint16_t* out,
                         const float* quant_map);
// Double quantization: out[j] = nested_map[codes[j]] · absmax2[j / nested_blocksize] + offset
// for j < nblocks (codes [nblocks] uint8, absmax2 [cdiv(nblocks, nested_blocksize)]).
void nf4_double_dequantize_absmax(const uint8_t* codes, const float* absmax2, float offset, int64_t nblocks,
                                  int nested_blocksize, const float* nested_map, float* out);

// ---- Optimizer (optim/adamw.h) ------------------------------------------------------------------

// One AdamW update at 1-based step `step` (the value AdamW::steps() has after its increment), over
// params/grads [n]; m, v are fp32 [n] (kF32) or bf16 bit patterns [n] (kBF16); decay_mask [n]
// uint8 or nullptr (= decay all). Bit-identical to AdamW::step.
void adamw_step(const AdamWConfig& config, int64_t step, double lr, float* params, const float* grads, void* m,
                void* v, const uint8_t* decay_mask, int64_t n);
// Global L2 norm (float64 accumulation, fixed order); scales grads by max_norm / (norm + 1e-6) when
// norm > max_norm > 0, as the CPU clip_grad_norm. Synchronizes.
double clip_grad_norm(float* grads, int64_t n, double max_norm);

}  // namespace qaft::cuda
