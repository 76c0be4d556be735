#include "model/moe.h"

#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace qaft {

template <typename T>
MoeRef<T> bind_moe(const WeightBinding<T>& wb, const std::string& prefix, const ModelConfig& c) {
  const ParamStore<T>& p = *wb.params;
  ParamStore<T>* g = wb.grads;
  MoeRef<T> m;
  m.router = p.get(prefix + ".gate.weight");
  m.bias = p.find(prefix + ".gate.e_score_correction_bias");
  m.gate = bind_expert_linear(wb, prefix + ".experts.gate_proj");
  m.up = bind_expert_linear(wb, prefix + ".experts.up_proj");
  m.down = bind_expert_linear(wb, prefix + ".experts.down_proj");
  if (g) m.drouter = g->get(prefix + ".gate.weight");
  if (c.shared_intermediate_size > 0) {
    m.has_shared = true;
    const std::string sp = prefix + (c.family == ModelFamily::kQwen2Moe ? ".shared_expert" : ".shared_experts");
    m.shared = bind_mlp(wb, sp);
    m.shared_gate = p.find(prefix + ".shared_expert_gate.weight");
    if (g && m.shared_gate) m.dshared_gate = g->get(prefix + ".shared_expert_gate.weight");
  }
  return m;
}

template <typename T>
void moe_route(const MoeRef<T>& m, const ModelConfig& c, const T* x, int64_t N, MoeSaved<T>& s) {
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, C = c.hidden_size;
  const int64_t G = c.n_group, per_group = E / G;
  s.scores.resize(static_cast<size_t>(N * E));
  s.topk.resize(static_cast<size_t>(N * K));
  s.w.resize(static_cast<size_t>(N * K));
  gemm<T>(Trans::kNo, Trans::kYes, N, E, C, T(1), x, C, m.router, C, T(0), s.scores.data(), E);
  const bool grouped = G > 1 && c.topk_method != TopkMethod::kGreedy;
#pragma omp parallel for if (N * E > 4096)
  for (int64_t n = 0; n < N; ++n) {
    T* sc = &s.scores[static_cast<size_t>(n * E)];
    if (c.scoring == RouterScoring::kSigmoid) {
      for (int64_t e = 0; e < E; ++e) sc[e] = T(1) / (T(1) + std::exp(-sc[e]));
    } else {
      T mx = *std::max_element(sc, sc + E), sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (sc[e] = std::exp(sc[e] - mx));
      for (int64_t e = 0; e < E; ++e) sc[e] /= sum;
    }
    std::vector<T> choice(sc, sc + E);
    if (m.bias)
      for (int64_t e = 0; e < E; ++e) choice[static_cast<size_t>(e)] += m.bias[e];
    if (grouped) {
      std::vector<T> gscore(static_cast<size_t>(G));
      for (int64_t gi = 0; gi < G; ++gi) {
        T* b = choice.data() + gi * per_group;
        if (c.topk_method == TopkMethod::kNoauxTc) {  // sum of the two largest
          T a1 = -std::numeric_limits<T>::infinity(), a2 = a1;
          for (int64_t j = 0; j < per_group; ++j) {
            if (b[j] > a1) a2 = a1, a1 = b[j];
            else if (b[j] > a2) a2 = b[j];
          }
          gscore[static_cast<size_t>(gi)] = per_group > 1 ? a1 + a2 : a1;
        } else {
          gscore[static_cast<size_t>(gi)] = *std::max_element(b, b + per_group);
        }
      }
      std::vector<int64_t> order(static_cast<size_t>(G));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return gscore[static_cast<size_t>(a)] > gscore[static_cast<size_t>(b)];
      });
      for (int64_t r = c.topk_group; r < G; ++r)
        for (int64_t j = 0; j < per_group; ++j)
          choice[static_cast<size_t>(order[static_cast<size_t>(r)] * per_group + j)] = -std::numeric_limits<T>::infinity();
    }
    std::vector<int64_t> idx(static_cast<size_t>(E));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int64_t a, int64_t b) {
      const T ca = choice[static_cast<size_t>(a)], cb = choice[static_cast<size_t>(b)];
      return ca > cb || (ca == cb && a < b);
    });
    T sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += sc[idx[static_cast<size_t>(k)]];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = idx[static_cast<size_t>(k)];
      s.topk[static_cast<size_t>(n * K + k)] = static_cast<int32_t>(e);
      T w = sc[e];
      if (c.norm_topk_prob) w /= sum;
      s.w[static_cast<size_t>(n * K + k)] = w * static_cast<T>(c.routed_scaling_factor);
    }
  }
}

template <typename T>
void moe_forward(const MoeRef<T>& m, const ModelConfig& c, const T* x, int64_t N, T* y, MoeSaved<T>& s) {
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, C = c.hidden_size, I = c.moe_intermediate_size;
  const int64_t R = N * K;  // rows of the permuted buffer
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  moe_route(m, c, x, N, s);

  // Permute: a stable counting sort of (token, k) pairs by expert.
  s.offsets.assign(sz(E + 1), 0);
  for (int64_t i = 0; i < R; ++i) ++s.offsets[sz(s.topk[sz(i)] + 1)];
  for (int64_t e = 0; e < E; ++e) s.offsets[sz(e + 1)] += s.offsets[sz(e)];
  s.row_of.resize(sz(R));
  s.token_of_row.resize(sz(R));
  std::vector<int64_t> fill(s.offsets.begin(), s.offsets.end() - 1);
  for (int64_t i = 0; i < R; ++i) {
    const int64_t row = fill[sz(s.topk[sz(i)])]++;
    s.row_of[sz(i)] = row;
    s.token_of_row[sz(row)] = i / K;
  }
  s.xp.resize(sz(R * C));
#pragma omp parallel for if (R * C > (1 << 15))
  for (int64_t r = 0; r < R; ++r) std::memcpy(&s.xp[sz(r * C)], x + s.token_of_row[sz(r)] * C, sizeof(T) * sz(C));

  // Grouped expert SwiGLU over the permuted buffer.
  s.g.resize(sz(R * I));
  s.u.resize(sz(R * I));
  s.h.resize(sz(R * I));
  s.yp.resize(sz(R * C));
  grouped_linear_forward(m.gate, s.offsets.data(), s.xp.data(), s.g.data());
  grouped_linear_forward(m.up, s.offsets.data(), s.xp.data(), s.u.data());
  swiglu_forward(s.g.data(), s.u.data(), R * I, s.h.data());
  grouped_linear_forward(m.down, s.offsets.data(), s.h.data(), s.yp.data());

  // Combine (+ shared experts).
  if (m.has_shared) {
    s.shared_out.resize(sz(N * C));
    mlp_forward(m.shared, x, N, s.shared_out.data(), s.shared);
    if (m.shared_gate) {
      s.shared_gate_logit.resize(sz(N));
      gemm<T>(Trans::kNo, Trans::kYes, N, 1, C, T(1), x, C, m.shared_gate, C, T(0), s.shared_gate_logit.data(), 1);
    }
  }
#pragma omp parallel for if (N * C > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    T* out = y + n * C;
    if (m.has_shared) {
      const T gate = m.shared_gate ? T(1) / (T(1) + std::exp(-s.shared_gate_logit[sz(n)])) : T(1);
      for (int64_t j = 0; j < C; ++j) out[j] = gate * s.shared_out[sz(n * C + j)];
    } else {
      std::fill(out, out + C, T(0));
    }
    for (int64_t k = 0; k < K; ++k) {
      const T w = s.w[sz(n * K + k)];
      const T* yr = &s.yp[sz(s.row_of[sz(n * K + k)] * C)];
      for (int64_t j = 0; j < C; ++j) out[j] += w * yr[j];
    }
  }
}

template <typename T>
void moe_backward(const MoeRef<T>& m, const ModelConfig& c, const T* dy, const T* x, int64_t N,
                  const MoeSaved<T>& s, T* dx) {
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, C = c.hidden_size, I = c.moe_intermediate_size;
  const int64_t R = N * K;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };

  // Combine backward: the expert outputs get w·dy; the weights get dy·y_expert.
  std::vector<T> dyp(sz(R * C)), dw(sz(R));
#pragma omp parallel for if (R * C > (1 << 15))
  for (int64_t i = 0; i < R; ++i) {
    const int64_t n = i / K, row = s.row_of[sz(i)];
    const T w = s.w[sz(i)];
    const T* g = dy + n * C;
    const T* yr = &s.yp[sz(row * C)];
    T* d = &dyp[sz(row * C)];
    T dot = 0;
    for (int64_t j = 0; j < C; ++j) {
      d[j] = w * g[j];
      dot += g[j] * yr[j];
    }
    dw[sz(i)] = dot;
  }

  // Grouped expert backward.
  std::vector<T> dh(sz(R * I)), dg(sz(R * I)), du(sz(R * I)), dxp(sz(R * C));
  grouped_linear_backward(m.down, s.offsets.data(), dyp.data(), s.h.data(), dh.data(), false);
  swiglu_backward(dh.data(), s.g.data(), s.u.data(), R * I, dg.data(), du.data());
  grouped_linear_backward(m.gate, s.offsets.data(), dg.data(), s.xp.data(), dxp.data(), false);
  grouped_linear_backward(m.up, s.offsets.data(), du.data(), s.xp.data(), dxp.data(), true);

  // Un-permute into dx, in token order (deterministic).
#pragma omp parallel for if (N * C > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    T* d = dx + n * C;
    std::fill(d, d + C, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T* src = &dxp[sz(s.row_of[sz(n * K + k)] * C)];
      for (int64_t j = 0; j < C; ++j) d[j] += src[j];
    }
  }

  // Router backward: dw → d scores (through normalisation and scaling) → d logits.
  std::vector<T> dlogit(sz(N * E), T(0));
  const T alpha = static_cast<T>(c.routed_scaling_factor);
#pragma omp parallel for if (N * E > 4096)
  for (int64_t n = 0; n < N; ++n) {
    const T* sc = &s.scores[sz(n * E)];
    std::vector<T> ds(sz(E), T(0));
    T sum = 0, dot = 0;
    for (int64_t k = 0; k < K; ++k) sum += sc[s.topk[sz(n * K + k)]];
    for (int64_t k = 0; k < K; ++k) dot += dw[sz(n * K + k)] * sc[s.topk[sz(n * K + k)]];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = s.topk[sz(n * K + k)];
      ds[sz(e)] = c.norm_topk_prob ? alpha * (dw[sz(n * K + k)] - dot / sum) / sum : alpha * dw[sz(n * K + k)];
    }
    T* dl = &dlogit[sz(n * E)];
    if (c.scoring == RouterScoring::kSigmoid) {
      for (int64_t e = 0; e < E; ++e) dl[e] = ds[sz(e)] * sc[e] * (T(1) - sc[e]);
    } else {
      T inner = 0;
      for (int64_t e = 0; e < E; ++e) inner += ds[sz(e)] * sc[e];
      for (int64_t e = 0; e < E; ++e) dl[e] = sc[e] * (ds[sz(e)] - inner);
    }
  }
  gemm<T>(Trans::kNo, Trans::kNo, N, C, E, T(1), dlogit.data(), E, m.router, C, T(1), dx, C);
  if (m.drouter) gemm<T>(Trans::kYes, Trans::kNo, E, C, N, T(1), dlogit.data(), E, x, C, T(1), m.drouter, C);

  // Shared experts.
  if (m.has_shared) {
    if (m.shared_gate) {
      std::vector<T> dsh(sz(N * C)), dz(sz(N));
      for (int64_t n = 0; n < N; ++n) {
        const T gate = T(1) / (T(1) + std::exp(-s.shared_gate_logit[sz(n)]));
        T dot = 0;
        for (int64_t j = 0; j < C; ++j) {
          dsh[sz(n * C + j)] = gate * dy[n * C + j];
          dot += dy[n * C + j] * s.shared_out[sz(n * C + j)];
        }
        dz[sz(n)] = dot * gate * (T(1) - gate);
      }
      mlp_backward(m.shared, dsh.data(), x, N, s.shared, dx, true);
      gemm<T>(Trans::kNo, Trans::kNo, N, C, 1, T(1), dz.data(), 1, m.shared_gate, C, T(1), dx, C);
      if (m.dshared_gate) gemm<T>(Trans::kYes, Trans::kNo, 1, C, N, T(1), dz.data(), 1, x, C, T(1), m.dshared_gate, C);
    } else {
      mlp_backward(m.shared, dy, x, N, s.shared, dx, true);
    }
  }
}

#define QAFT_INSTANTIATE(T)                                                                                 \
  template MoeRef<T> bind_moe<T>(const WeightBinding<T>&, const std::string&, const ModelConfig&);      \
  template void moe_route<T>(const MoeRef<T>&, const ModelConfig&, const T*, int64_t, MoeSaved<T>&);         \
  template void moe_forward<T>(const MoeRef<T>&, const ModelConfig&, const T*, int64_t, T*, MoeSaved<T>&);   \
  template void moe_backward<T>(const MoeRef<T>&, const ModelConfig&, const T*, const T*, int64_t,          \
                                const MoeSaved<T>&, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
