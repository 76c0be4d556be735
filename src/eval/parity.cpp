#include "eval/parity.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qaft {

namespace {

int64_t argmax(const float* x, int64_t V) { return std::max_element(x, x + V) - x; }

double log_sum_exp(const float* x, int64_t V, double mx) {
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(x[v]) - mx);
  return mx + std::log(s);
}

}  // namespace

double kl_divergence(const float* p, const float* q, int64_t V) {
  const double lp = log_sum_exp(p, V, p[argmax(p, V)]), lq = log_sum_exp(q, V, q[argmax(q, V)]);
  double kl = 0;
  for (int64_t v = 0; v < V; ++v) {
    const double log_p = static_cast<double>(p[v]) - lp, log_q = static_cast<double>(q[v]) - lq;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  return std::max(kl, 0.0);  // rounding can give −1e-17
}

void TokenDivergence::add(const float* p, const float* q, int64_t n, int64_t V) {
  for (int64_t i = 0; i < n; ++i) {
    kl_.push_back(kl_divergence(p + i * V, q + i * V, V));
    agree_ += argmax(p + i * V, V) == argmax(q + i * V, V);
  }
}

double TokenDivergence::kl_mean() const {
  return kl_.empty() ? 0.0 : std::accumulate(kl_.begin(), kl_.end(), 0.0) / static_cast<double>(kl_.size());
}

double TokenDivergence::kl_quantile(double q) const {
  if (kl_.empty()) return 0.0;
  std::vector<double> s = kl_;
  const auto k = static_cast<size_t>(std::min(q * static_cast<double>(s.size()), static_cast<double>(s.size() - 1)));
  std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k), s.end());
  return s[k];
}

double TokenDivergence::kl_max() const { return kl_.empty() ? 0.0 : *std::max_element(kl_.begin(), kl_.end()); }

double TokenDivergence::top1_agreement() const {
  return kl_.empty() ? 1.0 : static_cast<double>(agree_) / static_cast<double>(kl_.size());
}

nlohmann::json TokenDivergence::to_json() const {
  return {{"tokens", tokens()},       {"kl_mean", kl_mean()}, {"kl_p99", kl_quantile(0.99)},
          {"kl_max", kl_max()},       {"top1_agreement", top1_agreement()}};
}

}  // namespace qaft
