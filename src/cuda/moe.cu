// MoE routing and permutation on the device, the steps of model/moe.cpp as separate ops:
//   route            one thread per token runs dn::route_token (the host-tested copy of moe_route)
//   route backward   one thread per token, moe_backward's formulas
//   permute          keys (expert << 32 | pair index) sorted = moe_forward's stable counting sort;
//                    offsets, row_of, token_of_row and the gathered rows xp from the sorted keys
//   combine          y = shared term + Σ_k w·yp[row] in k order (uncontracted: bit-identical)
//   combine backward dyp = w·dy (exact), dw = dy·yp (a block sum: order differs from the CPU)
//   unpermute bwd    dx = Σ_k dxp[row] in k order (bit-identical)
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;

#define QAFT_GRID_STRIDE(i, n)                                                                   \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n);         \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ dn::RouterParams params(const launch::RouterArgs& a) {
  return {a.experts, a.top_k, a.n_group, a.topk_group, a.sigmoid, a.grouped, a.group_by_top2_sum,
          a.norm_topk_prob, a.routed_scaling_factor};
}

__global__ void route_kernel(const float* __restrict__ logits, const float* __restrict__ bias, int64_t N,
                             launch::RouterArgs a, float* __restrict__ scores, int32_t* __restrict__ topk,
                             float* __restrict__ w) {
  const dn::RouterParams p = params(a);
  float choice[dn::kMaxExperts];
  QAFT_GRID_STRIDE(n, N) {
    dn::route_token(logits + n * p.experts, bias, p, scores + n * p.experts, choice, topk + n * p.top_k,
                    w + n * p.top_k);
  }
}

__global__ void route_backward_kernel(const float* __restrict__ dw, const float* __restrict__ scores,
                                      const int32_t* __restrict__ topk, int64_t N, launch::RouterArgs a,
                                      float* __restrict__ dlogits) {
  const int E = a.experts, K = a.top_k;
  const float alpha = a.routed_scaling_factor;
  QAFT_GRID_STRIDE(n, N) {
    const float* sc = scores + n * E;
    const int32_t* tk = topk + n * K;
    const float* dwn = dw + n * K;
    float sum = 0.0f, dot = 0.0f;
    for (int k = 0; k < K; ++k) sum += sc[tk[k]];
    for (int k = 0; k < K; ++k) dot += dwn[k] * sc[tk[k]];
    // ds[e]: nonzero only for the chosen experts.
    auto ds = [&](int e) {
      for (int k = 0; k < K; ++k)
        if (tk[k] == e) return a.norm_topk_prob ? alpha * (dwn[k] - dot / sum) / sum : alpha * dwn[k];
      return 0.0f;
    };
    float* dl = dlogits + n * E;
    if (a.sigmoid) {
      for (int e = 0; e < E; ++e) dl[e] = ds(e) * sc[e] * (1.0f - sc[e]);
    } else {
      float inner = 0.0f;
      for (int e = 0; e < E; ++e) inner += ds(e) * sc[e];
      for (int e = 0; e < E; ++e) dl[e] = sc[e] * (ds(e) - inner);
    }
  }
}

__global__ void pair_keys_kernel(const int32_t* __restrict__ topk, int64_t R, uint64_t* __restrict__ keys) {
  QAFT_GRID_STRIDE(i, R) {
    keys[i] = (static_cast<uint64_t>(static_cast<uint32_t>(topk[i])) << 32) | static_cast<uint64_t>(i);
  }
}

__global__ void permute_index_kernel(const uint64_t* __restrict__ keys, int64_t R, int64_t K, int64_t E,
                                     int64_t* __restrict__ offsets, int64_t* __restrict__ row_of,
                                     int64_t* __restrict__ token_of_row) {
  QAFT_GRID_STRIDE(r, R) {
    const int64_t i = static_cast<int64_t>(keys[r] & 0xFFFFFFFFu), e = static_cast<int64_t>(keys[r] >> 32);
    row_of[i] = r;
    token_of_row[r] = i / K;
    // offsets[e'] = first row of expert e': set by the row where the expert id steps past e'.
    const int64_t prev = r == 0 ? -1 : static_cast<int64_t>(keys[r - 1] >> 32);
    for (int64_t x = prev + 1; x <= e; ++x) offsets[x] = r;
    if (r == R - 1)
      for (int64_t x = e + 1; x <= E; ++x) offsets[x] = R;
  }
}

__global__ void gather_rows_kernel(const uint64_t* __restrict__ keys, int64_t R, int64_t K, const float* __restrict__ x,
                                   int64_t C, float* __restrict__ xp) {
  QAFT_GRID_STRIDE(id, R * C) {
    const int64_t r = id / C, j = id % C;
    const int64_t token = static_cast<int64_t>(keys[r] & 0xFFFFFFFFu) / K;
    xp[id] = x[token * C + j];
  }
}

__global__ void combine_forward_kernel(const float* __restrict__ yp, const int64_t* __restrict__ row_of,
                                       const float* __restrict__ w, int64_t N, int64_t K, int64_t C,
                                       const float* __restrict__ shared, const float* __restrict__ gate_logit,
                                       float* __restrict__ y) {
  QAFT_GRID_STRIDE(id, N * C) {
    const int64_t n = id / C, j = id % C;
    float out = 0.0f;
    if (shared) {
      const float gate = gate_logit ? 1.0f / (1.0f + expf(-gate_logit[n])) : 1.0f;
      out = dn::mul_rn(gate, shared[id]);
    }
    for (int64_t k = 0; k < K; ++k)
      out = dn::add_rn(out, dn::mul_rn(w[n * K + k], yp[row_of[n * K + k] * C + j]));
    y[id] = out;
  }
}

// One CTA per (token, k) pair.
__global__ void combine_backward_kernel(const float* __restrict__ dy, const float* __restrict__ yp,
                                        const int64_t* __restrict__ row_of, const float* __restrict__ w, int64_t R,
                                        int64_t K, int64_t C, float* __restrict__ dyp, float* __restrict__ dw) {
  __shared__ float red[kWarp];
  for (int64_t i = blockIdx.x; i < R; i += gridDim.x) {
    const int64_t n = i / K, row = row_of[i];
    const float wi = w[i];
    const float* g = dy + n * C;
    const float* yr = yp + row * C;
    float* d = dyp + row * C;
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      d[j] = dn::mul_rn(wi, g[j]);
      dot += g[j] * yr[j];
    }
    dot = block_sum(dot, red);
    if (threadIdx.x == 0) dw[i] = dot;
  }
}

__global__ void unpermute_backward_kernel(const float* __restrict__ dxp, const int64_t* __restrict__ row_of, int64_t N,
                                          int64_t K, int64_t C, float* __restrict__ dx) {
  QAFT_GRID_STRIDE(id, N * C) {
    const int64_t n = id / C, j = id % C;
    float acc = 0.0f;
    for (int64_t k = 0; k < K; ++k) acc = dn::add_rn(acc, dxp[row_of[n * K + k] * C + j]);
    dx[id] = acc;
  }
}

}  // namespace

namespace launch {

void moe_route(const float* logits, const float* bias, int64_t N, const RouterArgs& a, float* scores, int32_t* topk,
               float* w, cudaStream_t stream) {
  if (N == 0) return;
  constexpr int kRouteThreads = 64;  // each thread keeps E floats of scratch in local memory
  route_kernel<<<grid_for(N, kRouteThreads), kRouteThreads, 0, stream>>>(logits, bias, N, a, scores, topk, w);
  QAFT_CUDA_CHECK_LAUNCH("route_kernel");
}

void moe_route_backward(const float* dw, const float* scores, const int32_t* topk, int64_t N, const RouterArgs& a,
                        float* dlogits, cudaStream_t stream) {
  if (N == 0) return;
  route_backward_kernel<<<grid_for(N, 64), 64, 0, stream>>>(dw, scores, topk, N, a, dlogits);
  QAFT_CUDA_CHECK_LAUNCH("route_backward_kernel");
}

void moe_permute(const int32_t* topk, int64_t N, int64_t K, int64_t E, const float* x, int64_t C, int64_t* offsets,
                 int64_t* row_of, int64_t* token_of_row, float* xp, uint64_t* keys, cudaStream_t stream) {
  const int64_t R = N * K;
  if (R == 0) {
    QAFT_CUDA_CHECK(cudaMemsetAsync(offsets, 0, static_cast<size_t>(E + 1) * sizeof(int64_t), stream));
    return;
  }
  pair_keys_kernel<<<grid_for(R, kThreads), kThreads, 0, stream>>>(topk, R, keys);
  QAFT_CUDA_CHECK_LAUNCH("pair_keys_kernel");
  sort_u64(keys, R, stream);
  permute_index_kernel<<<grid_for(R, kThreads), kThreads, 0, stream>>>(keys, R, K, E, offsets, row_of, token_of_row);
  QAFT_CUDA_CHECK_LAUNCH("permute_index_kernel");
  gather_rows_kernel<<<grid_for(R * C, kThreads), kThreads, 0, stream>>>(keys, R, K, x, C, xp);
  QAFT_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

void moe_combine_forward(const float* yp, const int64_t* row_of, const float* w, int64_t N, int64_t K, int64_t C,
                         const float* shared, const float* shared_gate_logit, float* y, cudaStream_t stream) {
  if (N == 0) return;
  combine_forward_kernel<<<grid_for(N * C, kThreads), kThreads, 0, stream>>>(yp, row_of, w, N, K, C, shared,
                                                                            shared_gate_logit, y);
  QAFT_CUDA_CHECK_LAUNCH("combine_forward_kernel");
}

void moe_combine_backward(const float* dy, const float* yp, const int64_t* row_of, const float* w, int64_t N,
                          int64_t K, int64_t C, float* dyp, float* dw, cudaStream_t stream) {
  const int64_t R = N * K;
  if (R == 0) return;
  combine_backward_kernel<<<static_cast<unsigned>(R < 65535 * 8 ? R : 65535 * 8), kThreads, 0, stream>>>(
      dy, yp, row_of, w, R, K, C, dyp, dw);
  QAFT_CUDA_CHECK_LAUNCH("combine_backward_kernel");
}

void moe_unpermute_backward(const float* dxp, const int64_t* row_of, int64_t N, int64_t K, int64_t C, float* dx,
                            cudaStream_t stream) {
  if (N == 0) return;
  unpermute_backward_kernel<<<grid_for(N * C, kThreads), kThreads, 0, stream>>>(dxp, row_of, N, K, C, dx);
  QAFT_CUDA_CHECK_LAUNCH("unpermute_backward_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
