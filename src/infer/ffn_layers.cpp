// Dense SwiGLU MLP and Mixture-of-Experts for the serving engine, with the math of model/mlp.cpp and
// model/moe.cpp: the router is the training code's moe_route (same scores, groups, top-k, weights);
// tokens are permuted into one buffer grouped by expert (a stable counting sort), every expert GEMM
// runs as one grouped pass over it, and the combine adds Σ_k w_k·expert_k(x) to the (gated) shared
// experts in the training order.
#include "infer/serving_layers.h"
#include "kernels/ops.h"
#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qaft {

namespace {
inline size_t sz(int64_t n) { return static_cast<size_t>(n); }
}  // namespace

void mlp_step(const ServingMlp& w, const ServingNumerics& numerics, const float* x, int64_t N, float* y) {
  const int64_t I = w.gate.out();
  std::vector<float> g(sz(N * I)), u(sz(N * I));
  w.gate.forward(x, N, g.data(), numerics);
  w.up.forward(x, N, u.data(), numerics);
  swiglu_forward(g.data(), u.data(), N * I, g.data());
  w.down.forward(g.data(), N, y, numerics);
}

void moe_step(const ServingMoe& w, const ModelConfig& c, const ServingNumerics& numerics, const float* x, int64_t N,
              float* y) {
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, C = c.hidden_size, I = c.moe_intermediate_size;
  const int64_t R = N * K;  // rows of the permuted buffer

  MoeRef<float> router;
  router.router = w.router.data();
  router.bias = w.bias.empty() ? nullptr : w.bias.data();
  MoeSaved<float> s;
  moe_route(router, c, x, N, s);

  // Permute: (token, k) pairs sorted by expert, stable.
  std::vector<int64_t> offsets(sz(E + 1), 0), row_of(sz(R)), token_of_row(sz(R));
  for (int64_t i = 0; i < R; ++i) ++offsets[sz(s.topk[sz(i)] + 1)];
  for (int64_t e = 0; e < E; ++e) offsets[sz(e + 1)] += offsets[sz(e)];
  std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < R; ++i) {
    const int64_t row = fill[sz(s.topk[sz(i)])]++;
    row_of[sz(i)] = row;
    token_of_row[sz(row)] = i / K;
  }
  std::vector<float> xp(sz(R * C)), g(sz(R * I)), u(sz(R * I)), yp(sz(R * C));
  for (int64_t r = 0; r < R; ++r) std::memcpy(&xp[sz(r * C)], x + token_of_row[sz(r)] * C, sizeof(float) * sz(C));

  w.gate.grouped_forward(offsets.data(), xp.data(), g.data(), numerics);
  w.up.grouped_forward(offsets.data(), xp.data(), u.data(), numerics);
  swiglu_forward(g.data(), u.data(), R * I, g.data());
  w.down.grouped_forward(offsets.data(), g.data(), yp.data(), numerics);

  std::vector<float> shared_out, gate_logit;
  if (w.has_shared) {
    shared_out.resize(sz(N * C));
    mlp_step(w.shared, numerics, x, N, shared_out.data());
    if (!w.shared_gate.empty()) {
      gate_logit.resize(sz(N));
      gemm<float>(Trans::kNo, Trans::kYes, N, 1, C, 1.0f, x, C, w.shared_gate.data(), C, 0.0f, gate_logit.data(), 1);
    }
  }
#pragma omp parallel for if (N * C > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    float* out = y + n * C;
    if (w.has_shared) {
      const float gate = gate_logit.empty() ? 1.0f : 1.0f / (1.0f + std::exp(-gate_logit[sz(n)]));
      for (int64_t j = 0; j < C; ++j) out[j] = gate * shared_out[sz(n * C + j)];
    } else {
      std::fill(out, out + C, 0.0f);
    }
    for (int64_t k = 0; k < K; ++k) {
      const float wk = s.w[sz(n * K + k)];
      const float* yr = &yp[sz(row_of[sz(n * K + k)] * C)];
      for (int64_t j = 0; j < C; ++j) out[j] += wk * yr[j];
    }
  }
}

}  // namespace qaft
