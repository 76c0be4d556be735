// Token-level agreement of two models' next-token distributions over the same positions: the
// parity report between the training-time evaluation (the QAT forward) and a serving engine.
//   KL(p ∥ q) = Σ_v p_v (log p_v − log q_v) with p = softmax(reference logits), q = softmax(served),
//   in float64; top-1 agreement = share of positions where both argmaxes are equal.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace qaft {

// Accumulates per-token divergences; summarize() gives mean, p99, max and top-1 agreement.
class TokenDivergence {
 public:
  // p_logits, q_logits [n, V] row-major.
  void add(const float* p_logits, const float* q_logits, int64_t n, int64_t V);
  int64_t tokens() const { return static_cast<int64_t>(kl_.size()); }
  double kl_mean() const;
  double kl_quantile(double q) const;  // e.g. 0.99
  double kl_max() const;
  double top1_agreement() const;       // in [0, 1]
  nlohmann::json to_json() const;

 private:
  std::vector<double> kl_;   // per token
  int64_t agree_ = 0;        // positions with equal argmax
};

// KL(softmax(p) ∥ softmax(q)) of one position, float64.
double kl_divergence(const float* p_logits, const float* q_logits, int64_t V);

}  // namespace qaft
