// Causal GQA/MLA attention, forward and backward, with the CPU op's contract (kernels/ops.h):
// online softmax over key tiles, log-sum-exp saved, scores recomputed in the backward. A
// straightforward tiled design (correctness first, see docs/cuda.md for what a fast one needs):
//   forward  CTA = 8 queries of one (b, h), one warp per query; K/V tiles of 32 keys in shared
//            memory; lane j scores key j, the warp keeps the running max/sum and the output row
//            (lane e holds elements e, e+32, ... of Dv: Dv <= 256).
//   backward three kernels, no atomics (deterministic):
//            D = rowsum(dO ⊙ O)                       one warp per (b, t, h)
//            dQ, as the forward, one warp per query     dq = scale · Σ_j dS_ij · K_j
//            dK/dV, one warp per key, looping over the heads sharing its kv head and the query
//            tiles at or after it                        dv = Σ_i P_ij dO_i, dk = scale · Σ_i dS_ij Q_i
// Shared-memory rows read one row per lane are padded to an odd stride (no bank conflicts).
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kTile = 32;      // keys (forward, dQ) or queries (dK/dV) per shared-memory tile
constexpr int kRows = 8;       // warps per CTA: queries (forward, dQ) or keys (dK/dV)
constexpr int kThreads = kRows * kWarp;
constexpr int kPerLane = launch::kAttnMaxHeadDim / kWarp;  // register elements per lane

struct Shape {
  int64_t B, T, H, Hkv, Dqk, Dv;
  float scale;
  __device__ int64_t group() const { return H / Hkv; }
};

__device__ __forceinline__ float dot_row(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// Loads rows [t0, t0 + kTile) of a [B, T, heads, D] tensor (head `head`) into dst [kTile, ld], zero
// past the end of the sequence.
__device__ __forceinline__ void load_tile(const float* __restrict__ src, int64_t b, int64_t t0, int64_t T, int64_t heads,
                                          int64_t head, int64_t D, float* dst, int64_t ld) {
  for (int64_t idx = threadIdx.x; idx < kTile * D; idx += blockDim.x) {
    const int64_t j = idx / D, d = idx % D, t = t0 + j;
    dst[j * ld + d] = t < T ? src[((b * T + t) * heads + head) * D + d] : 0.0f;
  }
}

__global__ void attn_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                    const float* __restrict__ v, const int32_t* __restrict__ seg, Shape s,
                                    float* __restrict__ out, float* __restrict__ lse) {
  extern __shared__ float smem[];
  const int64_t ldk = s.Dqk + 1;
  float* Ks = smem;                 // [kTile, Dqk + 1]
  float* Vs = Ks + kTile * ldk;     // [kTile, Dv]
  float* Qs = Vs + kTile * s.Dv;    // [kRows, Dqk]
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / s.group();
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRows, t = t0 + warp;
  const bool active = t < s.T;
  float* qrow = Qs + warp * s.Dqk;
  if (active)
    for (int64_t d = lane; d < s.Dqk; d += kWarp) qrow[d] = q[((b * s.T + t) * s.H + h) * s.Dqk + d];
  const int32_t segq = (seg && active) ? seg[b * s.T + t] : 0;
  const int64_t t_last = (t0 + kRows - 1 < s.T - 1) ? t0 + kRows - 1 : s.T - 1;
  float m = -dn::infinity(), l = 0.0f, acc[kPerLane];
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) acc[r] = 0.0f;
  for (int64_t k0 = 0; k0 <= t_last; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed; qrow is written
    load_tile(k, b, k0, s.T, s.Hkv, kh, s.Dqk, Ks, ldk);
    load_tile(v, b, k0, s.T, s.Hkv, kh, s.Dv, Vs, s.Dv);
    __syncthreads();
    if (!active || k0 > t) continue;  // warp-uniform
    const int64_t key = k0 + lane;
    const bool visible = key <= t && (seg == nullptr || seg[b * s.T + key] == segq);
    const float sc = visible ? dot_row(qrow, Ks + lane * ldk, s.Dqk) * s.scale : -dn::infinity();
    const float m_new = fmaxf(m, warp_max(sc));
    const float keep = m == -dn::infinity() ? 0.0f : expf(m - m_new);
    const float p = visible ? expf(sc - m_new) : 0.0f;  // exp(−inf) = 0 without forming −inf − −inf
    l = l * keep + warp_sum(p);
#pragma unroll
    for (int r = 0; r < kPerLane; ++r) acc[r] *= keep;
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xFFFFFFFFu, p, j);
#pragma unroll
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t e = lane + kWarp * r;
        if (e < s.Dv) acc[r] += pj * Vs[j * s.Dv + e];
      }
    }
    m = m_new;
  }
  if (!active) return;
  const float inv = 1.0f / l;
  float* dst = out + ((b * s.T + t) * s.H + h) * s.Dv;
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t e = lane + kWarp * r;
    if (e < s.Dv) dst[e] = acc[r] * inv;
  }
  if (lane == 0) lse[(b * s.H + h) * s.T + t] = m + logf(l);
}

// D[b, h, t] = Σ_e dO·O, one warp per (b, t, h).
__global__ void attn_rowdot_kernel(const float* __restrict__ dout, const float* __restrict__ out, Shape s,
                                   float* __restrict__ D) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = s.B * s.T * s.H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; w < rows; w += warps) {
    const int64_t h = w % s.H, t = (w / s.H) % s.T, b = w / (s.H * s.T);
    const float* a = dout + w * s.Dv;
    const float* o = out + w * s.Dv;
    float acc = 0.0f;
    for (int64_t e = lane; e < s.Dv; e += kWarp) acc += a[e] * o[e];
    acc = warp_sum(acc);
    if (lane == 0) D[(b * s.H + h) * s.T + t] = acc;
  }
}

__global__ void attn_dq_kernel(const float* __restrict__ dout, const float* __restrict__ q,
                               const float* __restrict__ k, const float* __restrict__ v,
                               const float* __restrict__ lse, const float* __restrict__ D,
                               const int32_t* __restrict__ seg, Shape s, float* __restrict__ dq) {
  extern __shared__ float smem[];
  const int64_t ldk = s.Dqk + 1, ldv = s.Dv + 1;
  float* Ks = smem;                  // [kTile, Dqk + 1]
  float* Vs = Ks + kTile * ldk;      // [kTile, Dv + 1]
  float* Qs = Vs + kTile * ldv;      // [kRows, Dqk]
  float* Os = Qs + kRows * s.Dqk;    // [kRows, Dv]: dO rows
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / s.group();
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRows, t = t0 + warp;
  const bool active = t < s.T;
  float* qrow = Qs + warp * s.Dqk;
  float* orow = Os + warp * s.Dv;
  if (active) {
    for (int64_t d = lane; d < s.Dqk; d += kWarp) qrow[d] = q[((b * s.T + t) * s.H + h) * s.Dqk + d];
    for (int64_t e = lane; e < s.Dv; e += kWarp) orow[e] = dout[((b * s.T + t) * s.H + h) * s.Dv + e];
  }
  const int32_t segq = (seg && active) ? seg[b * s.T + t] : 0;
  const float lt = active ? lse[(b * s.H + h) * s.T + t] : 0.0f;
  const float Dt = active ? D[(b * s.H + h) * s.T + t] : 0.0f;
  const int64_t t_last = (t0 + kRows - 1 < s.T - 1) ? t0 + kRows - 1 : s.T - 1;
  float acc[kPerLane];
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) acc[r] = 0.0f;
  for (int64_t k0 = 0; k0 <= t_last; k0 += kTile) {
    __syncthreads();
    load_tile(k, b, k0, s.T, s.Hkv, kh, s.Dqk, Ks, ldk);
    load_tile(v, b, k0, s.T, s.Hkv, kh, s.Dv, Vs, ldv);
    __syncthreads();
    if (!active || k0 > t) continue;
    const int64_t key = k0 + lane;
    const bool visible = key <= t && (seg == nullptr || seg[b * s.T + key] == segq);
    float ds = 0.0f;
    if (visible) {
      const float p = expf(dot_row(qrow, Ks + lane * ldk, s.Dqk) * s.scale - lt);
      ds = p * (dot_row(orow, Vs + lane * ldv, s.Dv) - Dt);
    }
    for (int j = 0; j < kTile; ++j) {
      const float dsj = __shfl_sync(0xFFFFFFFFu, ds, j);
#pragma unroll
      for (int r = 0; r < kPerLane; ++r) {
        const int64_t d = lane + kWarp * r;
        if (d < s.Dqk) acc[r] += dsj * Ks[j * ldk + d];
      }
    }
  }
  if (!active) return;
  float* dst = dq + ((b * s.T + t) * s.H + h) * s.Dqk;
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t d = lane + kWarp * r;
    if (d < s.Dqk) dst[d] = acc[r] * s.scale;
  }
}

__global__ void attn_dkdv_kernel(const float* __restrict__ dout, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v,
                                 const float* __restrict__ lse, const float* __restrict__ D,
                                 const int32_t* __restrict__ seg, Shape s, float* __restrict__ dk,
                                 float* __restrict__ dv) {
  extern __shared__ float smem[];
  const int64_t ldq = s.Dqk + 1, ldo = s.Dv + 1;
  float* Qs = smem;                   // [kTile, Dqk + 1]
  float* Os = Qs + kTile * ldq;       // [kTile, Dv + 1]: dO rows
  float* Ls = Os + kTile * ldo;       // [kTile] lse
  float* Ds = Ls + kTile;             // [kTile] D
  float* Kr = Ds + kTile;             // [kRows, Dqk]
  float* Vr = Kr + kRows * s.Dqk;     // [kRows, Dv]
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t b = blockIdx.z, kh = blockIdx.y, G = s.group();
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kRows, j = j0 + warp;
  const bool active = j < s.T;
  float* krow = Kr + warp * s.Dqk;
  float* vrow = Vr + warp * s.Dv;
  if (active) {
    for (int64_t d = lane; d < s.Dqk; d += kWarp) krow[d] = k[((b * s.T + j) * s.Hkv + kh) * s.Dqk + d];
    for (int64_t e = lane; e < s.Dv; e += kWarp) vrow[e] = v[((b * s.T + j) * s.Hkv + kh) * s.Dv + e];
  }
  const int32_t segk = (seg && active) ? seg[b * s.T + j] : 0;
  float gk[kPerLane], gv[kPerLane];
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) gk[r] = gv[r] = 0.0f;
  const int64_t q_start = j0 / kTile * kTile;  // queries before the CTA's first key see none of its keys
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = kh * G + g;
    for (int64_t q0 = q_start; q0 < s.T; q0 += kTile) {
      __syncthreads();
      load_tile(q, b, q0, s.T, s.H, h, s.Dqk, Qs, ldq);
      load_tile(dout, b, q0, s.T, s.H, h, s.Dv, Os, ldo);
      if (threadIdx.x < kTile) {
        const int64_t t = q0 + threadIdx.x;
        Ls[threadIdx.x] = t < s.T ? lse[(b * s.H + h) * s.T + t] : 0.0f;
        Ds[threadIdx.x] = t < s.T ? D[(b * s.H + h) * s.T + t] : 0.0f;
      }
      __syncthreads();
      if (!active) continue;
      const int64_t qi = q0 + lane;
      const bool visible = qi < s.T && qi >= j && (seg == nullptr || seg[b * s.T + qi] == segk);
      float p = 0.0f, ds = 0.0f;
      if (visible) {
        p = expf(dot_row(Qs + lane * ldq, krow, s.Dqk) * s.scale - Ls[lane]);
        ds = p * (dot_row(Os + lane * ldo, vrow, s.Dv) - Ds[lane]);
      }
      for (int i = 0; i < kTile; ++i) {
        const float pi = __shfl_sync(0xFFFFFFFFu, p, i);
        const float dsi = __shfl_sync(0xFFFFFFFFu, ds, i);
#pragma unroll
        for (int r = 0; r < kPerLane; ++r) {
          const int64_t d = lane + kWarp * r;
          if (d < s.Dv) gv[r] += pi * Os[i * ldo + d];
          if (d < s.Dqk) gk[r] += dsi * Qs[i * ldq + d];
        }
      }
    }
  }
  if (!active) return;
  float* dkr = dk + ((b * s.T + j) * s.Hkv + kh) * s.Dqk;
  float* dvr = dv + ((b * s.T + j) * s.Hkv + kh) * s.Dv;
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t d = lane + kWarp * r;
    if (d < s.Dqk) dkr[d] = gk[r] * s.scale;
    if (d < s.Dv) dvr[d] = gv[r];
  }
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    QAFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace

namespace launch {

void attention_forward(const float* q, const float* k, const float* v, const int32_t* segment, int64_t B, int64_t Tn,
                       int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale, float* out, float* lse,
                       cudaStream_t stream) {
  if (B == 0 || Tn == 0) return;
  const Shape s{B, Tn, H, Hkv, Dqk, Dv, scale};
  const size_t smem = sizeof(float) * static_cast<size_t>(kTile * (Dqk + 1) + kTile * Dv + kRows * Dqk);
  allow_smem(attn_forward_kernel, smem);
  const dim3 grid(static_cast<unsigned>(cdiv(Tn, kRows)), static_cast<unsigned>(H), static_cast<unsigned>(B));
  attn_forward_kernel<<<grid, kThreads, smem, stream>>>(q, k, v, segment, s, out, lse);
  QAFT_CUDA_CHECK_LAUNCH("attn_forward_kernel");
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                        int64_t Dqk, int64_t Dv, float scale, float* dq, float* dk, float* dv, float* D,
                        cudaStream_t stream) {
  if (B == 0 || Tn == 0) return;
  const Shape s{B, Tn, H, Hkv, Dqk, Dv, scale};
  attn_rowdot_kernel<<<grid_for(B * Tn * H * kWarp, kThreads), kThreads, 0, stream>>>(dout, out, s, D);
  QAFT_CUDA_CHECK_LAUNCH("attn_rowdot_kernel");

  const size_t smem_dq =
      sizeof(float) * static_cast<size_t>(kTile * (Dqk + 1) + kTile * (Dv + 1) + kRows * Dqk + kRows * Dv);
  allow_smem(attn_dq_kernel, smem_dq);
  const dim3 grid_q(static_cast<unsigned>(cdiv(Tn, kRows)), static_cast<unsigned>(H), static_cast<unsigned>(B));
  attn_dq_kernel<<<grid_q, kThreads, smem_dq, stream>>>(dout, q, k, v, lse, D, segment, s, dq);
  QAFT_CUDA_CHECK_LAUNCH("attn_dq_kernel");

  const size_t smem_kv = sizeof(float) * static_cast<size_t>(kTile * (Dqk + 1) + kTile * (Dv + 1) + 2 * kTile +
                                                              kRows * Dqk + kRows * Dv);
  allow_smem(attn_dkdv_kernel, smem_kv);
  const dim3 grid_k(static_cast<unsigned>(cdiv(Tn, kRows)), static_cast<unsigned>(Hkv), static_cast<unsigned>(B));
  attn_dkdv_kernel<<<grid_k, kThreads, smem_kv, stream>>>(dout, q, k, v, lse, D, segment, s, dk, dv);
  QAFT_CUDA_CHECK_LAUNCH("attn_dkdv_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
