// DeepSeek multi-head latent attention, forward and backward, following the official
// deepseek-ai/DeepSeek-V3 inference/model.py ("naive" form: k and v materialised per head).
//   q    = q_b(q_a_norm(q_a(x)))  or q_proj(x)          [N, H, Dn + Dr]
//   kv_a = kv_a_proj_with_mqa(x) = [latent Rkv | k_pe Dr]   one k_pe per token, shared by heads
//   kv   = kv_b(kv_norm(latent))                         [N, H, Dn + Dv] → k_nope, v
//   RoPE (interleaved pairs, YaRN frequencies) on q_pe and k_pe
//   k    = [k_nope | k_pe]; out = o_proj(attention(q, k, v) with scale Dqk^-0.5 · mscale²)
#include "kernels/ops.h"
#include "model/attention.h"

#include <cstring>

namespace qaft {

template <typename T>
MlaRef<T> bind_mla(const WeightBinding<T>& wb, const std::string& prefix) {
  const ParamStore<T>& p = *wb.params;
  ParamStore<T>* g = wb.grads;
  MlaRef<T> m;
  m.q_lora = p.find(prefix + ".q_a_layernorm.weight") != nullptr;
  if (m.q_lora) {
    m.q_a = bind_linear(wb, prefix + ".q_a_proj");
    m.q_b = bind_linear(wb, prefix + ".q_b_proj");
    m.q_a_norm = p.get(prefix + ".q_a_layernorm.weight");
    if (g) m.dq_a_norm = g->get(prefix + ".q_a_layernorm.weight");
  } else {
    m.q = bind_linear(wb, prefix + ".q_proj");
  }
  m.kv_a = bind_linear(wb, prefix + ".kv_a_proj_with_mqa");
  m.kv_b = bind_linear(wb, prefix + ".kv_b_proj");
  m.o = bind_linear(wb, prefix + ".o_proj");
  m.kv_norm = p.get(prefix + ".kv_a_layernorm.weight");
  if (g) m.dkv_norm = g->get(prefix + ".kv_a_layernorm.weight");
  return m;
}

template <typename T>
void mla_forward(const MlaRef<T>& m, const ModelConfig& c, const T* x, const SequenceInfo& seq,
                 const std::vector<double>& inv_freq, T* y, MlaSaved<T>& s) {
  const int64_t N = seq.B * seq.T, H = c.num_heads, Dn = c.qk_nope_head_dim, Dr = c.qk_rope_head_dim;
  const int64_t Dqk = Dn + Dr, Dv = c.v_head_dim, Rkv = c.kv_lora_rank, Rq = c.q_lora_rank;
  const T eps = static_cast<T>(c.rms_norm_eps);
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };

  s.Q.resize(sz(N * H * Dqk));
  if (m.q_lora) {
    s.qa.resize(sz(N * Rq));
    s.qa_n.resize(sz(N * Rq));
    s.qa_rstd.resize(sz(N));
    linear_forward(m.q_a, x, N, s.qa.data());
    rmsnorm_forward(s.qa.data(), m.q_a_norm, N, Rq, Rq, eps, s.qa_n.data(), s.qa_rstd.data());
    linear_forward(m.q_b, s.qa_n.data(), N, s.Q.data());
  } else {
    linear_forward(m.q, x, N, s.Q.data());
  }
  rope_apply(s.Q.data(), N, H, H * Dqk, Dqk, Dn, Dr, seq.positions, inv_freq.data(), RopeLayout::kInterleaved, false);

  const int64_t A = Rkv + Dr;
  s.kv_a.resize(sz(N * A));
  linear_forward(m.kv_a, x, N, s.kv_a.data());
  rope_apply(s.kv_a.data(), N, int64_t{1}, A, int64_t{0}, Rkv, Dr, seq.positions, inv_freq.data(),
             RopeLayout::kInterleaved, false);
  s.lat.resize(sz(N * Rkv));
  s.lat_n.resize(sz(N * Rkv));
  s.lat_rstd.resize(sz(N));
  for (int64_t n = 0; n < N; ++n) std::memcpy(&s.lat[sz(n * Rkv)], &s.kv_a[sz(n * A)], sizeof(T) * sz(Rkv));
  rmsnorm_forward(s.lat.data(), m.kv_norm, N, Rkv, Rkv, eps, s.lat_n.data(), s.lat_rstd.data());

  std::vector<T> kv(sz(N * H * (Dn + Dv)));
  linear_forward(m.kv_b, s.lat_n.data(), N, kv.data());
  s.K.resize(sz(N * H * Dqk));
  s.V.resize(sz(N * H * Dv));
#pragma omp parallel for if (N * H > 256)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      const T* src = &kv[sz((n * H + h) * (Dn + Dv))];
      T* k = &s.K[sz((n * H + h) * Dqk)];
      std::memcpy(k, src, sizeof(T) * sz(Dn));
      std::memcpy(k + Dn, &s.kv_a[sz(n * A + Rkv)], sizeof(T) * sz(Dr));
      std::memcpy(&s.V[sz((n * H + h) * Dv)], src + Dn, sizeof(T) * sz(Dv));
    }
  s.O.resize(sz(N * H * Dv));
  s.lse.resize(sz(seq.B * H * seq.T));
  attention_forward(s.Q.data(), s.K.data(), s.V.data(), seq.segment, seq.B, seq.T, H, H, Dqk, Dv,
                    static_cast<T>(c.softmax_scale()), s.O.data(), s.lse.data());
  linear_forward(m.o, s.O.data(), N, y);
}

template <typename T>
void mla_backward(const MlaRef<T>& m, const ModelConfig& c, const T* dy, const T* x, const SequenceInfo& seq,
                  const std::vector<double>& inv_freq, const MlaSaved<T>& s, T* dx) {
  const int64_t N = seq.B * seq.T, H = c.num_heads, Dn = c.qk_nope_head_dim, Dr = c.qk_rope_head_dim;
  const int64_t Dqk = Dn + Dr, Dv = c.v_head_dim, Rkv = c.kv_lora_rank, Rq = c.q_lora_rank, A = Rkv + Dr;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };

  std::vector<T> dO(sz(N * H * Dv));
  linear_backward(m.o, dy, s.O.data(), N, dO.data(), false);
  std::vector<T> dQ(sz(N * H * Dqk)), dK(sz(N * H * Dqk)), dV(sz(N * H * Dv));
  attention_backward(dO.data(), s.Q.data(), s.K.data(), s.V.data(), s.O.data(), s.lse.data(), seq.segment, seq.B,
                     seq.T, H, H, Dqk, Dv, static_cast<T>(c.softmax_scale()), dQ.data(), dK.data(), dV.data());

  // Split dK/dV back into the kv_b output and the shared k_pe (summed over heads).
  std::vector<T> dkv(sz(N * H * (Dn + Dv))), dkv_a(sz(N * A), T(0));
#pragma omp parallel for if (N * H > 256)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      T* dst = &dkv[sz((n * H + h) * (Dn + Dv))];
      const T* dk = &dK[sz((n * H + h) * Dqk)];
      std::memcpy(dst, dk, sizeof(T) * sz(Dn));
      std::memcpy(dst + Dn, &dV[sz((n * H + h) * Dv)], sizeof(T) * sz(Dv));
      T* dpe = &dkv_a[sz(n * A + Rkv)];
      for (int64_t d = 0; d < Dr; ++d) dpe[d] += dk[Dn + d];
    }
  rope_apply(dkv_a.data(), N, int64_t{1}, A, int64_t{0}, Rkv, Dr, seq.positions, inv_freq.data(),
             RopeLayout::kInterleaved, true);

  std::vector<T> dlat_n(sz(N * Rkv)), dlat(sz(N * Rkv));
  linear_backward(m.kv_b, dkv.data(), s.lat_n.data(), N, dlat_n.data(), false);
  rmsnorm_backward(dlat_n.data(), s.lat.data(), m.kv_norm, s.lat_rstd.data(), N, Rkv, Rkv, dlat.data(), m.dkv_norm);
  for (int64_t n = 0; n < N; ++n) std::memcpy(&dkv_a[sz(n * A)], &dlat[sz(n * Rkv)], sizeof(T) * sz(Rkv));
  linear_backward(m.kv_a, dkv_a.data(), x, N, dx, false);

  rope_apply(dQ.data(), N, H, H * Dqk, Dqk, Dn, Dr, seq.positions, inv_freq.data(), RopeLayout::kInterleaved, true);
  if (m.q_lora) {
    std::vector<T> dqa_n(sz(N * Rq)), dqa(sz(N * Rq));
    linear_backward(m.q_b, dQ.data(), s.qa_n.data(), N, dqa_n.data(), false);
    rmsnorm_backward(dqa_n.data(), s.qa.data(), m.q_a_norm, s.qa_rstd.data(), N, Rq, Rq, dqa.data(), m.dq_a_norm);
    linear_backward(m.q_a, dqa.data(), x, N, dx, true);
  } else {
    linear_backward(m.q, dQ.data(), x, N, dx, true);
  }
}

#define QAFT_INSTANTIATE(T)                                                                                  \
  template MlaRef<T> bind_mla<T>(const WeightBinding<T>&, const std::string&);                       \
  template void mla_forward<T>(const MlaRef<T>&, const ModelConfig&, const T*, const SequenceInfo&,          \
                               const std::vector<double>&, T*, MlaSaved<T>&);                                \
  template void mla_backward<T>(const MlaRef<T>&, const ModelConfig&, const T*, const T*, const SequenceInfo&, \
                                const std::vector<double>&, const MlaSaved<T>&, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
