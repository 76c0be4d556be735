#include "optim/adamw.h"

#include "core/error.h"
#include "numerics/bf16.h"

#include <cmath>
#include <numbers>

namespace qaft {

AdamW::AdamW(const AdamWConfig& config, int64_t n, std::vector<uint8_t> decay_mask)
    : config_(config), n_(n), decay_(std::move(decay_mask)) {
  QAFT_CHECK(n >= 0, "negative parameter count {}", n);
  QAFT_CHECK(config.beta1 >= 0 && config.beta1 < 1 && config.beta2 >= 0 && config.beta2 < 1,
             "AdamW betas must be in [0, 1): got {}, {}", config.beta1, config.beta2);
  QAFT_CHECK(config.eps > 0 && config.weight_decay >= 0, "AdamW eps must be > 0 and weight_decay >= 0");
  QAFT_CHECK(decay_.empty() || static_cast<int64_t>(decay_.size()) == n, "decay mask has {} entries for {} parameters",
             decay_.size(), n);
  if (config.moments == MomentPrecision::kF32) {
    m32_.assign(static_cast<size_t>(n), 0.0f);
    v32_.assign(static_cast<size_t>(n), 0.0f);
  } else {
    m16_.assign(static_cast<size_t>(n), 0);
    v16_.assign(static_cast<size_t>(n), 0);
  }
}

void AdamW::step(float* p, const float* g, double lr) {
  QAFT_CHECK(lr > 0 && std::isfinite(lr), "learning rate must be positive and finite, got {}", lr);
  ++step_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const float bc1 = static_cast<float>(1.0 - std::pow(b1, static_cast<double>(step_)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_))));
  const float flr = static_cast<float>(lr), decay_factor = static_cast<float>(1.0 - lr * config_.weight_decay);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2), eps = static_cast<float>(config_.eps);
  const bool bf16 = config_.moments == MomentPrecision::kBF16;
  // step_size and denominator follow torch.optim.AdamW's single-tensor implementation:
  //   denom = sqrt(v) / sqrt(bc2) + eps ; p -= (lr / bc1) · m / denom
  const float step_size = flr / bc1;
#pragma omp parallel for schedule(static) if (n_ > (1 << 15))
  for (int64_t i = 0; i < n_; ++i) {
    const size_t k = static_cast<size_t>(i);
    float m = bf16 ? bf16_to_float(m16_[k]) : m32_[k];
    float v = bf16 ? bf16_to_float(v16_[k]) : v32_[k];
    if (decay_.empty() || decay_[k]) p[i] *= decay_factor;
    m = fb1 * m + (1.0f - fb1) * g[i];
    v = fb2 * v + (1.0f - fb2) * g[i] * g[i];
    if (bf16) {
      m16_[k] = bf16_from_float(m);
      v16_[k] = bf16_from_float(v);
      m = bf16_to_float(m16_[k]);
      v = bf16_to_float(v16_[k]);
    } else {
      m32_[k] = m;
      v32_[k] = v;
    }
    p[i] -= step_size * m / (std::sqrt(v) / bc2_sqrt + eps);
  }
}

void AdamW::export_state(std::vector<float>& m, std::vector<float>& v, int64_t& step) const {
  step = step_;
  if (config_.moments == MomentPrecision::kF32) {
    m = m32_;
    v = v32_;
    return;
  }
  m.resize(m16_.size());
  v.resize(v16_.size());
  bf16_to_float_n(m16_.data(), static_cast<int64_t>(m16_.size()), m.data());
  bf16_to_float_n(v16_.data(), static_cast<int64_t>(v16_.size()), v.data());
}

void AdamW::import_state(const std::vector<float>& m, const std::vector<float>& v, int64_t step) {
  QAFT_CHECK(static_cast<int64_t>(m.size()) == n_ && static_cast<int64_t>(v.size()) == n_,
             "optimizer state has {} / {} entries, the model has {} trainable parameters", m.size(), v.size(), n_);
  QAFT_CHECK(step >= 0, "negative optimizer step {}", step);
  step_ = step;
  if (config_.moments == MomentPrecision::kF32) {
    m32_ = m;
    v32_ = v;
  } else {
    bf16_from_float_n(m.data(), n_, m16_.data());
    bf16_from_float_n(v.data(), n_, v16_.data());
  }
}

int64_t AdamW::state_bytes() const { return n_ * (config_.moments == MomentPrecision::kF32 ? 8 : 4); }

double LrSchedule::at(int64_t step) const {
  QAFT_CHECK(peak > 0 && std::isfinite(peak), "peak learning rate must be positive, got {}", peak);
  if (step < warmup_steps) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t span = total_steps - warmup_steps;
  if (decay == LrDecay::kConstant || span <= 0) return peak;
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(span));
  const double floor = peak * min_ratio;
  if (decay == LrDecay::kLinear) return floor + (peak - floor) * (1.0 - progress);
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  double sum = 0;
#pragma omp parallel for reduction(+ : sum) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(g[i]) * g[i];
  const double norm = std::sqrt(sum);
  if (!std::isfinite(norm) || max_norm <= 0 || norm <= max_norm) return norm;
  const float scale = static_cast<float>(max_norm / (norm + 1e-6));
#pragma omp parallel for if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) g[i] *= scale;
  return norm;
}

}  // namespace qaft
