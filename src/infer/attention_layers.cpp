// MLA and GQA for the serving engine, with the math of model/mla.cpp and model/gqa.cpp (the
// training forward) and a KV cache:
//   MLA  q = q_b(q_a_norm(q_a(x))) | q_proj(x)  [N, H, Dn + Dr], RoPE (interleaved) on q_pe;
//        kv_a(x) = [latent Rkv | k_pe Dr], RoPE on k_pe, latent ← kv_a_layernorm(latent) (and, in
//        W8A8, its 1×128 E4M3 quantization, which is what kv_b sees in training); [latent | k_pe]
//        is appended to the cache.
//        naive:    K/V of every cached token = kv_b(latent) per head (+ the shared k_pe);
//        absorbed: score = (q_nope·W_k[h])·latent + q_pe·k_pe, out_h = W_v[h]·Σ p·latent, with
//                  W_k[h] [Dn, Rkv], W_v[h] [Dv, Rkv] the rows of kv_b's served weight (DeepSeek's
//                  attn_impl="absorb"); mathematically the naive result.
//   GQA  q/k/v projections, per-head RMSNorm of q and k (qwen3), half-split RoPE, K and V appended
//        to the cache.
#include "infer/cached_attention.h"
#include "infer/serving_layers.h"
#include "kernels/ops.h"

#include <cstring>

namespace qaft {

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

bool absorbed(MlaAttention mode, const StepPart& p) {
  return mode == MlaAttention::kAbsorbed || (mode == MlaAttention::kAuto && p.n == 1);
}

// Naive MLA for the given parts: up-projects every cached latent of those requests (one batched
// kv_b GEMM over all of them), forms per-head K = [k_nope | k_pe] and V, and attends.
void mla_naive(const ServingMla& w, const ModelConfig& c, const ServingNumerics& numerics, int64_t layer,
               const std::vector<const StepPart*>& parts, const float* Q, float* O) {
  const int64_t H = c.num_heads, Dn = c.qk_nope_head_dim, Dr = c.qk_rope_head_dim, Dv = c.v_head_dim;
  const int64_t Dqk = Dn + Dr, Rkv = c.kv_lora_rank, A = Rkv + Dr;
  int64_t total = 0;
  std::vector<int64_t> first;  // [parts] first row of each request's cached tokens in `lat`
  for (const StepPart* p : parts) {
    first.push_back(total);
    total += p->past + p->n;
  }
  std::vector<float> lat(sz(total * Rkv)), kv(sz(total * H * (Dn + Dv)));
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::vector<float>& cache = parts[i]->sequence->layer(layer).mla;
    const int64_t T = parts[i]->past + parts[i]->n;
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(&lat[sz((first[i] + t) * Rkv)], &cache[sz(t * A)], sizeof(float) * sz(Rkv));
  }
  w.kv_b.forward(lat.data(), total, kv.data(), numerics);

  std::vector<float> K(sz(total * H * Dqk)), V(sz(total * H * Dv));
  std::vector<AttentionJob> jobs;
  for (size_t i = 0; i < parts.size(); ++i) {
    const StepPart& p = *parts[i];
    const std::vector<float>& cache = p.sequence->layer(layer).mla;
    const int64_t T = p.past + p.n, r0 = first[i];
#pragma omp parallel for if (T * H > 256)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const float* src = &kv[sz(((r0 + t) * H + h) * (Dn + Dv))];
        float* k = &K[sz(((r0 + t) * H + h) * Dqk)];
        std::memcpy(k, src, sizeof(float) * sz(Dn));
        std::memcpy(k + Dn, &cache[sz(t * A + Rkv)], sizeof(float) * sz(Dr));
        std::memcpy(&V[sz(((r0 + t) * H + h) * Dv)], src + Dn, sizeof(float) * sz(Dv));
      }
    jobs.push_back({Q + p.row0 * H * Dqk, H * Dqk, p.n, p.past, &K[sz(r0 * H * Dqk)], H * Dqk, &V[sz(r0 * H * Dv)],
                    H * Dv, O + p.row0 * H * Dv, H * Dv});
  }
  cached_attention(jobs, H, H, Dqk, Dv, static_cast<float>(c.softmax_scale()));
}

// Absorbed MLA for the given parts: q_abs[h] = q_nope[h] · W_k[h] (a [Dn] × [Dn, Rkv] product per
// head), attention over the cached [latent | k_pe] rows as one shared kv head, then
// out[h] = W_v[h] · o_latent[h].
void mla_absorbed(const ServingMla& w, const ModelConfig& c, int64_t layer, const std::vector<const StepPart*>& parts,
                  const float* Q, float* O) {
  const int64_t H = c.num_heads, Dn = c.qk_nope_head_dim, Dr = c.qk_rope_head_dim, Dv = c.v_head_dim;
  const int64_t Dqk = Dn + Dr, Rkv = c.kv_lora_rank, A = Rkv + Dr;
  int64_t M = 0;
  for (const StepPart* p : parts) M += p->n;
  std::vector<float> q(sz(M * H * Dqk)), qa(sz(M * H * A)), olat(sz(M * H * Rkv)), o(sz(M * H * Dv));
  int64_t m = 0;
  for (const StepPart* p : parts) {  // gather the parts' query rows
    std::memcpy(&q[sz(m * H * Dqk)], Q + p->row0 * H * Dqk, sizeof(float) * sz(p->n * H * Dqk));
    m += p->n;
  }
  const float* W = w.kv_b_values.data();  // [H, Dn + Dv, Rkv]
  for (int64_t h = 0; h < H; ++h)
    gemm<float>(Trans::kNo, Trans::kNo, M, Rkv, Dn, 1.0f, &q[sz(h * Dqk)], H * Dqk, W + h * (Dn + Dv) * Rkv, Rkv, 0.0f,
                &qa[sz(h * A)], H * A);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(&qa[sz((r * H + h) * A + Rkv)], &q[sz((r * H + h) * Dqk + Dn)], sizeof(float) * sz(Dr));
  std::vector<AttentionJob> jobs;
  m = 0;
  for (const StepPart* p : parts) {
    const float* cache = p->sequence->layer(layer).mla.data();
    jobs.push_back({&qa[sz(m * H * A)], H * A, p->n, p->past, cache, A, cache, A, &olat[sz(m * H * Rkv)], H * Rkv});
    m += p->n;
  }
  cached_attention(jobs, H, 1, A, Rkv, static_cast<float>(c.softmax_scale()));
  for (int64_t h = 0; h < H; ++h)
    gemm<float>(Trans::kNo, Trans::kYes, M, Dv, Rkv, 1.0f, &olat[sz(h * Rkv)], H * Rkv, W + (h * (Dn + Dv) + Dn) * Rkv,
                Rkv, 0.0f, &o[sz(h * Dv)], H * Dv);
  m = 0;
  for (const StepPart* p : parts) {  // scatter back to the step's rows
    std::memcpy(O + p->row0 * H * Dv, &o[sz(m * H * Dv)], sizeof(float) * sz(p->n * H * Dv));
    m += p->n;
  }
}

}  // namespace

void mla_step(const ServingMla& w, const ModelConfig& c, const ServingNumerics& numerics, MlaAttention mode,
              const std::vector<double>& inv_freq, int64_t layer, const StepBatch& batch, const float* x, float* y) {
  const int64_t N = batch.rows(), H = c.num_heads, Dn = c.qk_nope_head_dim, Dr = c.qk_rope_head_dim;
  const int64_t Dqk = Dn + Dr, Dv = c.v_head_dim, Rkv = c.kv_lora_rank, Rq = c.q_lora_rank, A = Rkv + Dr;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Queries [N, H, Dqk] with RoPE on the last Dr lanes of every head.
  std::vector<float> Q(sz(N * H * Dqk));
  if (w.q_lora) {
    std::vector<float> qa(sz(N * Rq));
    w.q_a.forward(x, N, qa.data(), numerics);
    rmsnorm_forward(qa.data(), w.q_a_norm.data(), N, Rq, Rq, eps, qa.data(), static_cast<float*>(nullptr));
    w.q_b.forward(qa.data(), N, Q.data(), numerics);
  } else {
    w.q.forward(x, N, Q.data(), numerics);
  }
  rope_apply(Q.data(), N, H, H * Dqk, Dqk, Dn, Dr, batch.positions.data(), inv_freq.data(), RopeLayout::kInterleaved,
             false);

  // The cache rows [N, Rkv + Dr]: normed (and quantized) latent, roped k_pe.
  std::vector<float> kva(sz(N * A)), lat(sz(N * Rkv));
  w.kv_a.forward(x, N, kva.data(), numerics);
  rope_apply(kva.data(), N, int64_t{1}, A, int64_t{0}, Rkv, Dr, batch.positions.data(), inv_freq.data(),
             RopeLayout::kInterleaved, false);
  for (int64_t n = 0; n < N; ++n) std::memcpy(&lat[sz(n * Rkv)], &kva[sz(n * A)], sizeof(float) * sz(Rkv));
  rmsnorm_forward(lat.data(), w.kv_norm.data(), N, Rkv, Rkv, eps, lat.data(), static_cast<float*>(nullptr));
  if (numerics.quantizes_inputs())
    fake_quantize(lat.data(), N, Rkv, ScaleRecipe::deepseek_activation(numerics.scale_format), lat.data());
  for (int64_t n = 0; n < N; ++n) std::memcpy(&kva[sz(n * A)], &lat[sz(n * Rkv)], sizeof(float) * sz(Rkv));
  for (const StepPart& p : batch.parts) {
    std::vector<float>& cache = p.sequence->layer(layer).mla;
    cache.insert(cache.end(), kva.begin() + p.row0 * A, kva.begin() + (p.row0 + p.n) * A);
  }

  std::vector<float> O(sz(N * H * Dv));
  std::vector<const StepPart*> naive_parts, absorbed_parts;
  for (const StepPart& p : batch.parts) (absorbed(mode, p) ? absorbed_parts : naive_parts).push_back(&p);
  if (!naive_parts.empty()) mla_naive(w, c, numerics, layer, naive_parts, Q.data(), O.data());
  if (!absorbed_parts.empty()) mla_absorbed(w, c, layer, absorbed_parts, Q.data(), O.data());
  w.o.forward(O.data(), N, y, numerics);
}

void gqa_step(const ServingGqa& w, const ModelConfig& c, const ServingNumerics& numerics,
              const std::vector<double>& inv_freq, int64_t layer, const StepBatch& batch, const float* x, float* y) {
  const int64_t N = batch.rows(), H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  std::vector<float> q(sz(N * H * D)), k(sz(N * Hkv * D)), v(sz(N * Hkv * D));
  w.q.forward(x, N, q.data(), numerics);
  w.k.forward(x, N, k.data(), numerics);
  w.v.forward(x, N, v.data(), numerics);
  if (!w.q_norm.empty()) {
    const float eps = static_cast<float>(c.rms_norm_eps);
    rmsnorm_forward(q.data(), w.q_norm.data(), N * H, D, D, eps, q.data(), static_cast<float*>(nullptr));
    rmsnorm_forward(k.data(), w.k_norm.data(), N * Hkv, D, D, eps, k.data(), static_cast<float*>(nullptr));
  }
  const int32_t* pos = batch.positions.data();
  rope_apply(q.data(), N, H, H * D, D, int64_t{0}, D, pos, inv_freq.data(), RopeLayout::kHalfSplit, false);
  rope_apply(k.data(), N, Hkv, Hkv * D, D, int64_t{0}, D, pos, inv_freq.data(), RopeLayout::kHalfSplit, false);

  const int64_t row = Hkv * D;
  for (const StepPart& p : batch.parts) {
    LayerKvCache& cache = p.sequence->layer(layer);
    cache.k.insert(cache.k.end(), k.begin() + p.row0 * row, k.begin() + (p.row0 + p.n) * row);
    cache.v.insert(cache.v.end(), v.begin() + p.row0 * row, v.begin() + (p.row0 + p.n) * row);
  }
  std::vector<float> O(sz(N * H * D));
  std::vector<AttentionJob> jobs;
  for (const StepPart& p : batch.parts) {
    const LayerKvCache& cache = p.sequence->layer(layer);
    jobs.push_back({q.data() + p.row0 * H * D, H * D, p.n, p.past, cache.k.data(), row, cache.v.data(), row,
                    O.data() + p.row0 * H * D, H * D});
  }
  cached_attention(jobs, H, Hkv, D, D, static_cast<float>(c.softmax_scale()));
  w.o.forward(O.data(), N, y, numerics);
}

}  // namespace qaft
