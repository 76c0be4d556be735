// Grouped-query attention as in transformers' Llama / Qwen2 / Qwen3: q/k/v projections (bias for
// qwen2), per-head RMSNorm of q and k before RoPE (qwen3), half-split RoPE (rotate_half) with
// llama3 / linear scaling folded into the frequencies, causal attention with H / Hkv query heads
// per kv head, o_proj.
#include "kernels/ops.h"
#include "model/attention.h"

namespace qaft {

template <typename T>
GqaRef<T> bind_gqa(const WeightBinding<T>& wb, const std::string& prefix) {
  const ParamStore<T>& p = *wb.params;
  ParamStore<T>* g = wb.grads;
  GqaRef<T> r;
  r.q = bind_linear(wb, prefix + ".q_proj");
  r.k = bind_linear(wb, prefix + ".k_proj");
  r.v = bind_linear(wb, prefix + ".v_proj");
  r.o = bind_linear(wb, prefix + ".o_proj");
  r.q_norm = p.find(prefix + ".q_norm.weight");
  r.k_norm = p.find(prefix + ".k_norm.weight");
  if (g && r.q_norm) {
    r.dq_norm = g->get(prefix + ".q_norm.weight");
    r.dk_norm = g->get(prefix + ".k_norm.weight");
  }
  return r;
}

template <typename T>
void gqa_forward(const GqaRef<T>& g, const ModelConfig& c, const T* x, const SequenceInfo& seq,
                 const std::vector<double>& inv_freq, T* y, GqaSaved<T>& s) {
  const int64_t N = seq.B * seq.T, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  s.q.resize(sz(N * H * D));
  s.k.resize(sz(N * Hkv * D));
  s.v.resize(sz(N * Hkv * D));
  if (g.q_norm) {
    s.q_raw.resize(s.q.size());
    s.k_raw.resize(s.k.size());
    s.q_rstd.resize(sz(N * H));
    s.k_rstd.resize(sz(N * Hkv));
    linear_forward(g.q, x, N, s.q_raw.data());
    linear_forward(g.k, x, N, s.k_raw.data());
    const T eps = static_cast<T>(c.rms_norm_eps);
    rmsnorm_forward(s.q_raw.data(), g.q_norm, N * H, D, D, eps, s.q.data(), s.q_rstd.data());
    rmsnorm_forward(s.k_raw.data(), g.k_norm, N * Hkv, D, D, eps, s.k.data(), s.k_rstd.data());
  } else {
    linear_forward(g.q, x, N, s.q.data());
    linear_forward(g.k, x, N, s.k.data());
  }
  linear_forward(g.v, x, N, s.v.data());
  rope_apply(s.q.data(), N, H, H * D, D, int64_t{0}, D, seq.positions, inv_freq.data(), RopeLayout::kHalfSplit, false);
  rope_apply(s.k.data(), N, Hkv, Hkv * D, D, int64_t{0}, D, seq.positions, inv_freq.data(), RopeLayout::kHalfSplit, false);
  s.O.resize(sz(N * H * D));
  s.lse.resize(sz(seq.B * H * seq.T));
  attention_forward(s.q.data(), s.k.data(), s.v.data(), seq.segment, seq.B, seq.T, H, Hkv, D, D,
                    static_cast<T>(c.softmax_scale()), s.O.data(), s.lse.data());
  linear_forward(g.o, s.O.data(), N, y);
}

template <typename T>
void gqa_backward(const GqaRef<T>& g, const ModelConfig& c, const T* dy, const T* x, const SequenceInfo& seq,
                  const std::vector<double>& inv_freq, const GqaSaved<T>& s, T* dx) {
  const int64_t N = seq.B * seq.T, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  std::vector<T> dO(sz(N * H * D)), dq(sz(N * H * D)), dk(sz(N * Hkv * D)), dv(sz(N * Hkv * D));
  linear_backward(g.o, dy, s.O.data(), N, dO.data(), false);
  attention_backward(dO.data(), s.q.data(), s.k.data(), s.v.data(), s.O.data(), s.lse.data(), seq.segment, seq.B,
                     seq.T, H, Hkv, D, D, static_cast<T>(c.softmax_scale()), dq.data(), dk.data(), dv.data());
  rope_apply(dq.data(), N, H, H * D, D, int64_t{0}, D, seq.positions, inv_freq.data(), RopeLayout::kHalfSplit, true);
  rope_apply(dk.data(), N, Hkv, Hkv * D, D, int64_t{0}, D, seq.positions, inv_freq.data(), RopeLayout::kHalfSplit, true);
  linear_backward(g.v, dv.data(), x, N, dx, false);
  if (g.q_norm) {
    std::vector<T> dq_raw(dq.size()), dk_raw(dk.size());
    rmsnorm_backward(dq.data(), s.q_raw.data(), g.q_norm, s.q_rstd.data(), N * H, D, D, dq_raw.data(), g.dq_norm);
    rmsnorm_backward(dk.data(), s.k_raw.data(), g.k_norm, s.k_rstd.data(), N * Hkv, D, D, dk_raw.data(), g.dk_norm);
    linear_backward(g.q, dq_raw.data(), x, N, dx, true);
    linear_backward(g.k, dk_raw.data(), x, N, dx, true);
  } else {
    linear_backward(g.q, dq.data(), x, N, dx, true);
    linear_backward(g.k, dk.data(), x, N, dx, true);
  }
}

#define QAFT_INSTANTIATE(T)                                                                                  \
  template GqaRef<T> bind_gqa<T>(const WeightBinding<T>&, const std::string&);                       \
  template void gqa_forward<T>(const GqaRef<T>&, const ModelConfig&, const T*, const SequenceInfo&,          \
                               const std::vector<double>&, T*, GqaSaved<T>&);                                \
  template void gqa_backward<T>(const GqaRef<T>&, const ModelConfig&, const T*, const T*, const SequenceInfo&, \
                                const std::vector<double>&, const GqaSaved<T>&, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
