// The op table: every compute primitive the model layers call, with its shapes. CPU
// implementations live in src/kernels/cpu/; a CUDA backend implements the same signatures.
//
// Dimension letters used in every kernel and layer:
//   B batch, T sequence length, N = B·T tokens, C hidden size, V vocabulary, L layers,
//   H attention heads, Hkv key/value heads, D head dim (Dqk for q·k, Dv for values),
//   E routed experts, K top-k experts per token, I expert (intermediate) width, r LoRA rank.
//
// Conventions:
//   - Row-major everywhere; a linear layer's weight is W [out, in] (HF layout) and computes
//     y = x · Wᵀ. The GEMM below follows BLAS: C = alpha · op(A) · op(B) + beta · C.
//   - Every op is a template on the scalar type T ∈ {float, double}: float is the engine's compute
//     type; double exists so that every backward can be checked against central finite differences
//     in float64 (tests/unit/*_grad_test.cpp).
//   - Backward functions ACCUMULATE (+=) into parameter gradients (dw, db) and OVERWRITE input
//     gradients (dx) unless stated otherwise.
//   - Functions parallelize internally with OpenMP; callers do not.
#pragma once

#include <cstdint>
#include <span>

namespace qaft {

enum class Trans : uint8_t { kNo, kYes };

// C[M, N] = alpha · op(A) · op(B) + beta · C, op(X) = X or Xᵀ.
// op(A) is [M, K] (A stored [M, K] with lda ≥ K, or [K, M] with lda ≥ M when transposed);
// op(B) is [K, N] (B stored [K, N] with ldb ≥ N, or [N, K] with ldb ≥ K when transposed — the
// "NT" case of a linear layer: y = x · Wᵀ is gemm(kNo, kYes, N, out, in, 1, x, in, W, in, 0, y, out)).
// float: oneDNN matmul (ISA capped below AMX, see cpu/onednn.cpp); double: a blocked reference.
template <typename T>
void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Grouped GEMM over a buffer of rows grouped by expert (the permuted MoE layout):
// for each group g with rows [offsets[g], offsets[g+1]):
//   C[rows, :N] = alpha · op(A[rows, :]) · op(W_g) + beta · C[rows, :N]
// where W_g = W + g · w_stride, op(W_g) is [K, N] (tb = kYes: W_g stored [N, K], a weight
// [out=N, in=K]; tb = kNo: stored [K, N]). A [rows_total, K] with lda; C [rows_total, N] with ldc.
// One parallel pass over all (group, row tile, column tile) work items — never a loop of
// separate per-group GEMM calls. offsets has groups + 1 entries, offsets[0] = 0.
template <typename T>
void grouped_gemm(Trans tb, int64_t groups, const int64_t* offsets, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, const T* W, int64_t w_stride, T beta, T* C, int64_t ldc);

// Weight gradient of a grouped linear: for each group g, dW_g[N, K] += dYᵀ[rows] · X[rows]
// (dY [rows_total, N] with ldy, X [rows_total, K] with ldx, dW_g = dW + g · w_stride).
template <typename T>
void grouped_gemm_weight_grad(int64_t groups, const int64_t* offsets, int64_t N, int64_t K,
                              const T* dY, int64_t ldy, const T* X, int64_t ldx, T* dW,
                              int64_t w_stride);

// RMSNorm over the last dimension: y = w ⊙ x · rstd, rstd = 1/sqrt(mean(x²) + eps).
// x, y [rows, C] (row stride ld for x and y); w [C]; rstd [rows] saved for backward.
template <typename T>
void rmsnorm_forward(const T* x, const T* w, int64_t rows, int64_t C, int64_t ld, T eps, T* y,
                     T* rstd);
// dx [rows, C] (overwritten, stride ld), dw [C] (accumulated; may be nullptr for a frozen norm).
template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, int64_t rows, int64_t C,
                      int64_t ld, T* dx, T* dw);

// Rotary position embedding applied in place to x viewed [N, heads, D] with row stride ld
// (elements between consecutive tokens) and head stride hs; rotates the first `rot_dim` lanes
// starting at lane `offset` of each head. inv_freq [rot_dim/2] in float64 (YaRN/llama3 already
// applied by the config). positions [N] (token position within its sequence).
// Layout kInterleaved: pairs (x[2i], x[2i+1]) (DeepSeek official, complex multiplication);
// kHalfSplit: pairs (x[i], x[i + rot_dim/2]) (HF rotate_half, llama/qwen).
// inverse = true rotates by −angle: the backward of the forward (rotation is orthogonal).
enum class RopeLayout : uint8_t { kInterleaved, kHalfSplit };
template <typename T>
void rope_apply(T* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset,
                int64_t rot_dim, const int32_t* positions, const double* inv_freq, RopeLayout layout,
                bool inverse);

// Causal multi-head attention with grouped KV heads, tiled with an online softmax so that no
// T×T score matrix per head is ever stored (FlashAttention-2 scheme; backward recomputes scores
// tile by tile from the saved log-sum-exp).
//   q  [B, T, H,   Dqk]   (contiguous)
//   k  [B, T, Hkv, Dqk]
//   v  [B, T, Hkv, Dv]
//   out[B, T, H,   Dv]
//   lse[B, H, T]          log-sum-exp of the scaled scores per query (saved for backward)
//   segment [B, T] int32  optional (nullptr = one sequence per row): a query attends only to keys
//                         of the same segment id (packed documents), besides causality.
// head h uses kv head h / (H / Hkv). scale multiplies q·k before the softmax.
template <typename T>
void attention_forward(const T* q, const T* k, const T* v, const int32_t* segment, int64_t B,
                       int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, T* out,
                       T* lse);
// The key tile of attention_forward: keys are processed in tiles [0, 64), [64, 128), … of their
// row, and a query's result depends on where those boundaries fall (the online softmax rescales
// per tile). Documents packed into one row give the logits of each document alone when each
// starts at a multiple of this.
inline constexpr int64_t kAttentionKeyTile = 64;

// One sequence of attention_forward_rows: the queries at positions [q_begin, Tn) attend to the keys
// and values of positions [0, Tn) (a serving engine's prefill chunk or decode step over its KV
// cache). Row strides per position: query row i (position q_begin + i), head h at q + i·ldq + h·Dqk;
// key / value of position t, kv head j at k + t·ldk + j·Dqk / v + t·ldv + j·Dv; output at
// out + i·ldo + h·Dv (overwritten).
struct AttentionRows {
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  int64_t ldk = 0;
  const float* v = nullptr;
  int64_t ldv = 0;
  float* out = nullptr;
  int64_t ldo = 0;
  int64_t Tn = 0;       // positions with keys
  int64_t q_begin = 0;  // position of the first query
};
// attention_forward's arithmetic for some query positions of each sequence: every query's output
// is, bit for bit, what attention_forward computes for it over the whole sequence (the training
// forward), whatever q_begin is. Parallel over (sequence, kv head, query tile); no lse.
void attention_forward_rows(std::span<const AttentionRows> seqs, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv,
                            float scale);

// dq, dk, dv are overwritten.
template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H,
                        int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, T* dq, T* dk, T* dv);

// SwiGLU: h = silu(g) ⊙ u over n elements (g, u, h [n]).
template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* h);
// dg, du overwritten.
template <typename T>
void swiglu_backward(const T* dh, const T* g, const T* u, int64_t n, T* dg, T* du);

// Token embedding: out[n, :] = table[ids[n], :], table [V, C], out [N, C].
template <typename T>
void embedding_forward(const int32_t* ids, int64_t N, const T* table, int64_t V, int64_t C, T* out);
// dtable[ids[n], :] += dout[n, :] (deterministic: no atomics).
template <typename T>
void embedding_backward(const int32_t* ids, int64_t N, const T* dout, int64_t V, int64_t C, T* dtable);

// LM head + cross-entropy, chunked over the vocabulary so that N × V logits are never stored:
// logits = h · Wᵀ (h [N, C], W [V, C]); loss_n = logsumexp(logits_n) − logits_n[target_n] for
// targets[n] ≥ 0 (−100 or any negative = ignored). Returns Σ loss_n · weight_n over valid n and
// writes lse [N] for backward. weights [N] (nullptr = 1). chunk = vocabulary rows per pass.
template <typename T>
double lm_head_ce_forward(const T* h, const T* W, const int32_t* targets, const T* weights,
                          int64_t N, int64_t C, int64_t V, int64_t chunk, T* lse);
// Gradient of (Σ loss_n · weight_n) · grad_scale: dh [N, C] overwritten, dW [V, C] accumulated
// (nullptr: a frozen head).
template <typename T>
void lm_head_ce_backward(const T* h, const T* W, const int32_t* targets, const T* weights,
                         const T* lse, int64_t N, int64_t C, int64_t V, int64_t chunk, T grad_scale,
                         T* dh, T* dW);
// Full logits [N, V] for inference / parity debugging (no loss).
template <typename T>
void lm_head_logits(const T* h, const T* W, int64_t N, int64_t C, int64_t V, T* logits);

}  // namespace qaft
