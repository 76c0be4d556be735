// Kernel launchers of the .cu files (internal to qaft_cuda). Plain C++ declarations, so that the
// public API in ops_*.cpp and gemm.cpp — argument checks, error messages, scratch memory — is
// compiled by the host compiler with the project's warnings, and the .cu files hold only kernels.
// Launchers enqueue on `stream`, check the launch and return; they assume checked arguments.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qaft::cuda::launch {

// ---- quantize.cu --------------------------------------------------------------------------------
// Row tiles (1 × tile, tile ∈ {32, 128}): one warp per tile, fused amax + encode. codes / scales /
// fake_out may each be null; fake_out (dense [rows, cols]) receives dequantize(quantize(x)).
void quantize_rowtile(const float* x, int64_t rows, int64_t cols, int64_t ld, int tile, float amax_floor,
                      bool pow2, bool e5m2, uint8_t* codes, float* scales, float* fake_out, int32_t* nonfinite,
                      cudaStream_t stream);
// Any block shape br × bc (128×128, per-channel, per-tensor): amax per block (amax_bits
// [sr·sc] scratch, zeroed here), scales, then an elementwise encode. scales is required.
void quantize_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld, int64_t br, int64_t bc,
                     float amax_floor, bool pow2, bool e5m2, uint8_t* codes, float* scales, float* fake_out,
                     uint32_t* amax_bits, int32_t* nonfinite, cudaStream_t stream);
void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                bool e5m2, float* out, cudaStream_t stream);

// ---- nf4.cu -------------------------------------------------------------------------------------
void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax, cudaStream_t stream);
void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, const float* quant_map,
                    float* out_f32, uint16_t* out_bf16, cudaStream_t stream);
void nf4_double_dequantize_absmax(const uint8_t* codes, const float* absmax2, float offset, int64_t nblocks,
                                  int nested_blocksize, const float* nested_map, float* out, cudaStream_t stream);

// ---- elementwise.cu -----------------------------------------------------------------------------
void swiglu_forward(const float* g, const float* u, int64_t n, float* h, cudaStream_t stream);
void swiglu_backward(const float* dh, const float* g, const float* u, int64_t n, float* dg, float* du,
                     cudaStream_t stream);
struct AdamWArgs {
  float decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
};
void adamw_f32(const AdamWArgs& a, float* p, const float* g, float* m, float* v, const uint8_t* decay_mask,
               int64_t n, cudaStream_t stream);
void adamw_bf16(const AdamWArgs& a, float* p, const float* g, uint16_t* m, uint16_t* v, const uint8_t* decay_mask,
                int64_t n, cudaStream_t stream);
// Σ g² in float64 into *out (device), fixed order: partials [kNormPartials] scratch.
inline constexpr int kNormPartials = 1024;
void sum_squares(const float* g, int64_t n, double* partials, double* out, cudaStream_t stream);
void scale_f32(float* x, int64_t n, float factor, cudaStream_t stream);

// ---- norm_rope.cu -------------------------------------------------------------------------------
void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t C, int64_t ld, float eps, float* y,
                     float* rstd, cudaStream_t stream);
void rmsnorm_backward_dx(const float* dy, const float* x, const float* w, const float* rstd, int64_t rows,
                         int64_t C, int64_t ld, float* dx, cudaStream_t stream);
// dw += Σ_rows dy ⊙ x · rstd; partials: [rmsnorm_dw_chunks(rows) · C] scratch.
int64_t rmsnorm_dw_chunks(int64_t rows);
void rmsnorm_backward_dw(const float* dy, const float* x, const float* rstd, int64_t rows, int64_t C, int64_t ld,
                         float* partials, float* dw, cudaStream_t stream);
void rope_apply(float* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset, int64_t rot_dim,
                const int32_t* positions, const double* inv_freq, bool half_split, bool inverse,
                cudaStream_t stream);

// ---- sort.cu / embedding.cu / moe.cu -------------------------------------------------------------
// Sorts n uint64 keys ascending in place in `keys` (capacity sort_capacity(n), padded here).
int64_t sort_capacity(int64_t n);
void sort_u64(uint64_t* keys, int64_t n, cudaStream_t stream);
void embedding_forward(const int32_t* ids, int64_t N, const float* table, int64_t C, float* out,
                       cudaStream_t stream);
// keys: sort_capacity(N) scratch.
void embedding_backward(const int32_t* ids, int64_t N, const float* dout, int64_t C, float* dtable, uint64_t* keys,
                        cudaStream_t stream);
struct RouterArgs {
  int32_t experts, top_k, n_group, topk_group;
  bool sigmoid, grouped, group_by_top2_sum, norm_topk_prob;
  float routed_scaling_factor;
};
void moe_route(const float* logits, const float* bias, int64_t N, const RouterArgs& a, float* scores,
               int32_t* topk, float* w, cudaStream_t stream);
void moe_route_backward(const float* dw, const float* scores, const int32_t* topk, int64_t N, const RouterArgs& a,
                        float* dlogits, cudaStream_t stream);
// keys: sort_capacity(N·K) scratch.
void moe_permute(const int32_t* topk, int64_t N, int64_t K, int64_t E, const float* x, int64_t C, int64_t* offsets,
                 int64_t* row_of, int64_t* token_of_row, float* xp, uint64_t* keys, cudaStream_t stream);
void moe_combine_forward(const float* yp, const int64_t* row_of, const float* w, int64_t N, int64_t K, int64_t C,
                         const float* shared, const float* shared_gate_logit, float* y, cudaStream_t stream);
void moe_combine_backward(const float* dy, const float* yp, const int64_t* row_of, const float* w, int64_t N,
                          int64_t K, int64_t C, float* dyp, float* dw, cudaStream_t stream);
void moe_unpermute_backward(const float* dxp, const int64_t* row_of, int64_t N, int64_t K, int64_t C, float* dx,
                            cudaStream_t stream);

// ---- cross_entropy.cu ---------------------------------------------------------------------------
// Online log-sum-exp over vocabulary chunks: state m, s [N] (init by ce_init), target logit tl [N].
void ce_init(int64_t N, float* m, float* s, float* tl, cudaStream_t stream);
void ce_chunk_forward(const float* logits, int64_t N, int64_t vc, int64_t v0, const int32_t* targets, float* m,
                      float* s, float* tl, cudaStream_t stream);
// lse[n] = m + log s; *loss (device double) = Σ (lse − tl)·weight over valid targets.
void ce_finalize(const float* m, const float* s, const float* tl, const int32_t* targets, const float* weights,
                 int64_t N, float* lse, double* loss, cudaStream_t stream);
// dlogits (in place over the chunk's logits) = g·exp(logit − lse) − g·[target], g = grad_scale·weight.
void ce_chunk_backward(float* logits, int64_t N, int64_t vc, int64_t v0, const int32_t* targets,
                       const float* weights, const float* lse, float grad_scale, cudaStream_t stream);

// ---- attention.cu -------------------------------------------------------------------------------
inline constexpr int kAttnMaxHeadDim = 256;
void attention_forward(const float* q, const float* k, const float* v, const int32_t* segment, int64_t B,
                       int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale, float* out,
                       float* lse, cudaStream_t stream);
// D: [B, H, T] scratch.
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                        int64_t Dqk, int64_t Dv, float scale, float* dq, float* dk, float* dv, float* D,
                        cudaStream_t stream);

// ---- gemm_kernels.cu ----------------------------------------------------------------------------
// Tile prefix of the groups (prefix [groups + 1] int32 scratch) for the persistent grouped kernels.
void grouped_tile_prefix(const int64_t* offsets, int64_t groups, int32_t* prefix, cudaStream_t stream);
void grouped_gemm_f32(bool w_trans, int64_t groups, const int64_t* offsets, const int32_t* prefix, int64_t N,
                      int64_t K, float alpha, const float* A, int64_t lda, const float* W, int64_t w_stride,
                      float beta, float* C, int64_t ldc, int sm_count, cudaStream_t stream);
void grouped_gemm_weight_grad_f32(int64_t groups, const int64_t* offsets, int64_t N, int64_t K, const float* dY,
                                  int64_t ldy, const float* X, int64_t ldx, float* dW, int64_t w_stride,
                                  cudaStream_t stream);
// offsets == nullptr: one dense group of dense_rows rows (the own FP8 GEMM backend); C is fp32
// (beta allowed) or bf16 (beta must be 0).
void grouped_gemm_fp8(int64_t groups, const int64_t* offsets, const int32_t* prefix, int64_t dense_rows, int64_t N,
                      int64_t K, float alpha, const uint8_t* a, int64_t lda, const float* a_scales, const uint8_t* w,
                      int64_t w_stride, const float* w_scales, int64_t ws_stride, float beta, void* C, int64_t ldc,
                      bool out_bf16, int sm_count, cudaStream_t stream);
// cuBLASLt scale layouts: act [M, kb] row-major -> [kb, M] (M contiguous);
// weight [nb, kb] row-major -> [nb, kb_ld] with kb_ld = round_up(kb, 4), zero padded.
void relayout_act_scales(const float* src, int64_t M, int64_t kb, float* dst, cudaStream_t stream);
void relayout_weight_scales(const float* src, int64_t nb, int64_t kb, int64_t kb_ld, float* dst,
                            cudaStream_t stream);

}  // namespace qaft::cuda::launch
