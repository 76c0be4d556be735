// CPU reference of the MoE router given its logits: the per-token body of model/moe.cpp's
// moe_route (commit aaed9c5), kept verbatim — the same float operations and std:: algorithms — so
// that the CUDA tests need not link the model library (qaft_model + qaft_io are ~40% of the CI cuda
// stage's build time). NOTE: keep in sync with moe_route; a change there must be copied here.
#pragma once

#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace qaft::test {

// logits [N, E] (= x · Wgᵀ); bias [E] or nullptr. Fills scores [N, E], topk [N, K], w [N, K].
inline void reference_route(const float* logits, const float* bias, int64_t N, const ModelConfig& c,
                            std::vector<float>& scores, std::vector<int32_t>& topk, std::vector<float>& w) {
  using T = float;
  const int64_t E = c.num_experts, K = c.num_experts_per_tok;
  const int64_t G = c.n_group, per_group = E / G;
  scores.assign(logits, logits + N * E);
  topk.resize(static_cast<size_t>(N * K));
  w.resize(static_cast<size_t>(N * K));
  const bool grouped = G > 1 && c.topk_method != TopkMethod::kGreedy;
  for (int64_t n = 0; n < N; ++n) {
    T* sc = &scores[static_cast<size_t>(n * E)];
    if (c.scoring == RouterScoring::kSigmoid) {
      for (int64_t e = 0; e < E; ++e) sc[e] = T(1) / (T(1) + std::exp(-sc[e]));
    } else {
      T mx = *std::max_element(sc, sc + E), sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (sc[e] = std::exp(sc[e] - mx));
      for (int64_t e = 0; e < E; ++e) sc[e] /= sum;
    }
    std::vector<T> choice(sc, sc + E);
    if (bias)
      for (int64_t e = 0; e < E; ++e) choice[static_cast<size_t>(e)] += bias[e];
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
      topk[static_cast<size_t>(n * K + k)] = static_cast<int32_t>(e);
      T wk = sc[e];
      if (c.norm_topk_prob) wk /= sum;
      w[static_cast<size_t>(n * K + k)] = wk * static_cast<T>(c.routed_scaling_factor);
    }
  }
}

}  // namespace qaft::test
