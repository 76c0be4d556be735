// The public layer ops of cuda/ops.h (norms, RoPE, attention, SwiGLU, embedding, LM-head
// cross-entropy, MoE routing/permutation): argument checks as the CPU ops, scratch memory, launches.
// NOTE: values inside device arrays (token ids, targets, expert ids) are not validated here — that
// would need a copy to the host; compute-sanitizer reports an out-of-range index as an invalid access.
#include "core/error.h"
#include "cuda/device_numerics.h"
#include "cuda/launch.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

#include <algorithm>

namespace qaft::cuda {

void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t C, int64_t ld, float eps, float* y,
                     float* rstd) {
  require_cuda("cuda::rmsnorm_forward");
  QAFT_CHECK(rows >= 0 && C > 0 && ld >= C, "rmsnorm_forward: rows={} C={} ld={}", rows, C, ld);
  launch::rmsnorm_forward(x, w, rows, C, ld, eps, y, rstd, current_stream());
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t rows, int64_t C,
                      int64_t ld, float* dx, float* dw) {
  require_cuda("cuda::rmsnorm_backward");
  QAFT_CHECK(rows >= 0 && C > 0 && ld >= C, "rmsnorm_backward: rows={} C={} ld={}", rows, C, ld);
  if (dx) launch::rmsnorm_backward_dx(dy, x, w, rstd, rows, C, ld, dx, current_stream());
  if (dw && rows > 0) {
    auto* partials = static_cast<float*>(
        scratch(Scratch::kReduce, sizeof(float) * static_cast<size_t>(launch::rmsnorm_dw_chunks(rows) * C)));
    launch::rmsnorm_backward_dw(dy, x, rstd, rows, C, ld, partials, dw, current_stream());
  }
}

void rope_apply(float* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset, int64_t rot_dim,
                const int32_t* positions, const double* inv_freq, RopeLayout layout, bool inverse) {
  require_cuda("cuda::rope_apply");
  QAFT_CHECK(N >= 0 && heads >= 0 && offset >= 0, "rope_apply: N={} heads={} offset={}", N, heads, offset);
  QAFT_CHECK(rot_dim > 0 && rot_dim % 2 == 0, "rope_apply: rot_dim={} must be even and positive", rot_dim);
  launch::rope_apply(x, N, heads, ld, hs, offset, rot_dim, positions, inv_freq, layout == RopeLayout::kHalfSplit,
                     inverse, current_stream());
}

namespace {
void check_attention(int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, const char* fn) {
  QAFT_CHECK(B >= 0 && Tn >= 0 && Dqk > 0 && Dv > 0, "{}: B={} T={} Dqk={} Dv={}", fn, B, Tn, Dqk, Dv);
  QAFT_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "{}: H={} must be a positive multiple of Hkv={}", fn, H, Hkv);
  QAFT_CHECK_HINT(Dqk <= launch::kAttnMaxHeadDim && Dv <= launch::kAttnMaxHeadDim, ErrorKind::kUnsupported,
                  "head dims up to 256 cover DeepSeek-V3 (192/128), llama and qwen",
                  "{}: head dims Dqk={} Dv={} exceed the CUDA kernel's limit {}", fn, Dqk, Dv,
                  launch::kAttnMaxHeadDim);
}
}  // namespace

void attention_forward(const float* q, const float* k, const float* v, const int32_t* segment, int64_t B, int64_t Tn,
                       int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale, float* out, float* lse) {
  require_cuda("cuda::attention_forward");
  check_attention(B, Tn, H, Hkv, Dqk, Dv, "attention_forward");
  launch::attention_forward(q, k, v, segment, B, Tn, H, Hkv, Dqk, Dv, scale, out, lse, current_stream());
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                        int64_t Dqk, int64_t Dv, float scale, float* dq, float* dk, float* dv) {
  require_cuda("cuda::attention_backward");
  check_attention(B, Tn, H, Hkv, Dqk, Dv, "attention_backward");
  if (B == 0 || Tn == 0) return;
  auto* D = static_cast<float*>(scratch(Scratch::kAttention, sizeof(float) * static_cast<size_t>(B * H * Tn)));
  launch::attention_backward(dout, q, k, v, out, lse, segment, B, Tn, H, Hkv, Dqk, Dv, scale, dq, dk, dv, D,
                             current_stream());
}

void swiglu_forward(const float* g, const float* u, int64_t n, float* h) {
  require_cuda("cuda::swiglu_forward");
  QAFT_CHECK(n >= 0, "swiglu_forward: n={}", n);
  if (n > 0) launch::swiglu_forward(g, u, n, h, current_stream());
}

void swiglu_backward(const float* dh, const float* g, const float* u, int64_t n, float* dg, float* du) {
  require_cuda("cuda::swiglu_backward");
  QAFT_CHECK(n >= 0, "swiglu_backward: n={}", n);
  if (n > 0) launch::swiglu_backward(dh, g, u, n, dg, du, current_stream());
}

void embedding_forward(const int32_t* ids, int64_t N, const float* table, int64_t V, int64_t C, float* out) {
  require_cuda("cuda::embedding_forward");
  QAFT_CHECK(N >= 0 && V > 0 && C > 0, "embedding_forward: N={} V={} C={}", N, V, C);
  launch::embedding_forward(ids, N, table, C, out, current_stream());
}

void embedding_backward(const int32_t* ids, int64_t N, const float* dout, int64_t V, int64_t C, float* dtable) {
  require_cuda("cuda::embedding_backward");
  QAFT_CHECK(N >= 0 && V > 0 && C > 0, "embedding_backward: N={} V={} C={}", N, V, C);
  QAFT_CHECK(N < (int64_t{1} << 32), "embedding_backward: N={} tokens exceed the 32-bit sort key", N);
  if (N == 0) return;
  auto* keys = static_cast<uint64_t*>(
      scratch(Scratch::kSort, sizeof(uint64_t) * static_cast<size_t>(launch::sort_capacity(N))));
  launch::embedding_backward(ids, N, dout, C, dtable, keys, current_stream());
}

namespace {

void check_ce(int64_t N, int64_t C, int64_t V, int64_t chunk, const char* fn) {
  QAFT_CHECK(N >= 0 && C > 0 && V > 0, "{}: N={} C={} V={}", fn, N, C, V);
  QAFT_CHECK(chunk > 0, "{}: chunk={} must be positive", fn, chunk);
}

// Scratch of the cross-entropy: logits chunk [N, chunk], then m, s, tl [N] and the loss (double).
struct CeScratch {
  float *logits, *m, *s, *tl;
  double* loss;
};
CeScratch ce_scratch(int64_t N, int64_t chunk) {
  const size_t float_bytes = sizeof(float) * static_cast<size_t>(N * chunk + 3 * N);
  const size_t loss_at = (float_bytes + 7) / 8 * 8;
  char* base = static_cast<char*>(scratch(Scratch::kCrossEntropy, loss_at + sizeof(double)));
  CeScratch c;
  c.logits = reinterpret_cast<float*>(base);
  c.m = c.logits + N * chunk;
  c.s = c.m + N;
  c.tl = c.s + N;
  c.loss = reinterpret_cast<double*>(base + loss_at);
  return c;
}

}  // namespace

double lm_head_ce_forward(const float* h, const float* W, const int32_t* targets, const float* weights, int64_t N,
                          int64_t C, int64_t V, int64_t chunk, float* lse) {
  require_cuda("cuda::lm_head_ce_forward");
  check_ce(N, C, V, chunk, "lm_head_ce_forward");
  if (N == 0) return 0.0;
  chunk = std::min(chunk, V);
  const CeScratch c = ce_scratch(N, chunk);
  const cudaStream_t s = current_stream();
  launch::ce_init(N, c.m, c.s, c.tl, s);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t vc = std::min(chunk, V - v0);
    gemm(Trans::kNo, Trans::kYes, N, vc, C, 1.0f, h, C, W + v0 * C, C, 0.0f, c.logits, vc);
    launch::ce_chunk_forward(c.logits, N, vc, v0, targets, c.m, c.s, c.tl, s);
  }
  launch::ce_finalize(c.m, c.s, c.tl, targets, weights, N, lse, c.loss, s);
  double loss = 0.0;
  QAFT_CUDA_CHECK(cudaMemcpyAsync(&loss, c.loss, sizeof loss, cudaMemcpyDeviceToHost, s));
  QAFT_CUDA_CHECK(cudaStreamSynchronize(s));
  return loss;
}

void lm_head_ce_backward(const float* h, const float* W, const int32_t* targets, const float* weights,
                         const float* lse, int64_t N, int64_t C, int64_t V, int64_t chunk, float grad_scale, float* dh,
                         float* dW) {
  require_cuda("cuda::lm_head_ce_backward");
  check_ce(N, C, V, chunk, "lm_head_ce_backward");
  if (N == 0) return;
  chunk = std::min(chunk, V);
  const CeScratch c = ce_scratch(N, chunk);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t vc = std::min(chunk, V - v0);
    const float* Wc = W + v0 * C;
    gemm(Trans::kNo, Trans::kYes, N, vc, C, 1.0f, h, C, Wc, C, 0.0f, c.logits, vc);
    launch::ce_chunk_backward(c.logits, N, vc, v0, targets, weights, lse, grad_scale, current_stream());
    // dh (=|+=) dlogits · W_chunk;  dW_chunk += dlogitsᵀ · h.
    gemm(Trans::kNo, Trans::kNo, N, C, vc, 1.0f, c.logits, vc, Wc, C, v0 == 0 ? 0.0f : 1.0f, dh, C);
    if (dW) gemm(Trans::kYes, Trans::kNo, vc, C, N, 1.0f, c.logits, vc, h, C, 1.0f, dW + v0 * C, C);
  }
}

void lm_head_logits(const float* h, const float* W, int64_t N, int64_t C, int64_t V, float* logits) {
  require_cuda("cuda::lm_head_logits");
  QAFT_CHECK(N >= 0 && C > 0 && V > 0, "lm_head_logits: N={} C={} V={}", N, C, V);
  gemm(Trans::kNo, Trans::kYes, N, V, C, 1.0f, h, C, W, C, 0.0f, logits, V);
}

namespace {

launch::RouterArgs router_args(const ModelConfig& c, const char* fn) {
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, G = c.n_group;
  QAFT_CHECK(E > 0 && K > 0 && K <= E, "{}: num_experts={} num_experts_per_tok={}", fn, E, K);
  QAFT_CHECK(G >= 1 && E % G == 0 && c.topk_group >= 1 && c.topk_group <= G,
             "{}: n_group={} topk_group={} do not divide num_experts={}", fn, G, c.topk_group, E);
  QAFT_CHECK_HINT(E <= dn::kMaxExperts && G <= dn::kMaxGroups, ErrorKind::kUnsupported,
                  "the device router keeps E scores per thread; raise dn::kMaxExperts",
                  "{}: num_experts={} n_group={} exceed the CUDA router's limits ({}, {})", fn, E, G, dn::kMaxExperts,
                  dn::kMaxGroups);
  launch::RouterArgs a{};
  a.experts = static_cast<int32_t>(E);
  a.top_k = static_cast<int32_t>(K);
  a.n_group = static_cast<int32_t>(G);
  a.topk_group = static_cast<int32_t>(c.topk_group);
  a.sigmoid = c.scoring == RouterScoring::kSigmoid;
  a.grouped = G > 1 && c.topk_method != TopkMethod::kGreedy;
  a.group_by_top2_sum = c.topk_method == TopkMethod::kNoauxTc;
  a.norm_topk_prob = c.norm_topk_prob;
  a.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  return a;
}

}  // namespace

void moe_route(const float* logits, const float* bias, int64_t N, const ModelConfig& c, float* scores, int32_t* topk,
               float* w) {
  require_cuda("cuda::moe_route");
  QAFT_CHECK(N >= 0, "moe_route: N={}", N);
  launch::moe_route(logits, bias, N, router_args(c, "moe_route"), scores, topk, w, current_stream());
}

void moe_route_backward(const float* dw, const float* scores, const int32_t* topk, int64_t N, const ModelConfig& c,
                        float* dlogits) {
  require_cuda("cuda::moe_route_backward");
  QAFT_CHECK(N >= 0, "moe_route_backward: N={}", N);
  launch::moe_route_backward(dw, scores, topk, N, router_args(c, "moe_route_backward"), dlogits, current_stream());
}

void moe_permute(const int32_t* topk, int64_t N, int64_t K, int64_t E, const float* x, int64_t C, int64_t* offsets,
                 int64_t* row_of, int64_t* token_of_row, float* xp) {
  require_cuda("cuda::moe_permute");
  QAFT_CHECK(N >= 0 && K > 0 && E > 0 && C > 0, "moe_permute: N={} K={} E={} C={}", N, K, E, C);
  QAFT_CHECK(N * K < (int64_t{1} << 32), "moe_permute: N·K={} exceeds the 32-bit sort key", N * K);
  auto* keys = static_cast<uint64_t*>(
      scratch(Scratch::kSort, sizeof(uint64_t) * static_cast<size_t>(launch::sort_capacity(std::max<int64_t>(N * K, 1)))));
  launch::moe_permute(topk, N, K, E, x, C, offsets, row_of, token_of_row, xp, keys, current_stream());
}

void moe_combine_forward(const float* yp, const int64_t* row_of, const float* w, int64_t N, int64_t K, int64_t C,
                         const float* shared, const float* shared_gate_logit, float* y) {
  require_cuda("cuda::moe_combine_forward");
  QAFT_CHECK(N >= 0 && K > 0 && C > 0, "moe_combine_forward: N={} K={} C={}", N, K, C);
  QAFT_CHECK(shared != nullptr || shared_gate_logit == nullptr, "moe_combine_forward: a shared gate without shared");
  launch::moe_combine_forward(yp, row_of, w, N, K, C, shared, shared_gate_logit, y, current_stream());
}

void moe_combine_backward(const float* dy, const float* yp, const int64_t* row_of, const float* w, int64_t N, int64_t K,
                          int64_t C, float* dyp, float* dw) {
  require_cuda("cuda::moe_combine_backward");
  QAFT_CHECK(N >= 0 && K > 0 && C > 0, "moe_combine_backward: N={} K={} C={}", N, K, C);
  launch::moe_combine_backward(dy, yp, row_of, w, N, K, C, dyp, dw, current_stream());
}

void moe_unpermute_backward(const float* dxp, const int64_t* row_of, int64_t N, int64_t K, int64_t C, float* dx) {
  require_cuda("cuda::moe_unpermute_backward");
  QAFT_CHECK(N >= 0 && K > 0 && C > 0, "moe_unpermute_backward: N={} K={} C={}", N, K, C);
  launch::moe_unpermute_backward(dxp, row_of, N, K, C, dx, current_stream());
}

}  // namespace qaft::cuda
