// AdamW (decoupled weight decay; Loshchilov & Hutter), the optimizer of DeepSeek-V3 and of LoRA
// fine-tuning, over one flat fp32 parameter buffer, with fp32 or BF16 moments.
//
// One step t (1-based), for each parameter p with gradient g and lr = the scheduled rate:
//   p ← p·(1 − lr·λ)                    (decoupled decay; skipped where decay_mask is 0)
//   m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
//   p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε)
// exactly the update of torch.optim.AdamW (tests/unit/optim_test.cpp compares with it). BF16
// moments (DeepSeek-V3's choice to save memory) are rounded to nearest even after every update,
// so a resumed run continues bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qaft {

enum class MomentPrecision : uint8_t { kF32, kBF16 };

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;            // DeepSeek-V3's value
  double eps = 1e-8;
  double weight_decay = 0.1;      // λ
  MomentPrecision moments = MomentPrecision::kF32;
};

class AdamW {
 public:
  // n parameters; decay_mask [n] (1 = decay, 0 = no decay, e.g. norms and biases) or empty = all.
  AdamW(const AdamWConfig& config, int64_t n, std::vector<uint8_t> decay_mask = {});

  // One update of params [n] with grads [n] at learning rate lr. Increments the step count.
  void step(float* params, const float* grads, double lr);

  int64_t steps() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  int64_t size() const { return n_; }
  // Optimizer state for checkpoints: m and v as fp32 (exact for either precision) and the step.
  void export_state(std::vector<float>& m, std::vector<float>& v, int64_t& step) const;
  void import_state(const std::vector<float>& m, const std::vector<float>& v, int64_t step);
  // Bytes of optimizer state (m and v) — for the memory plan.
  int64_t state_bytes() const;

 private:
  AdamWConfig config_;
  int64_t n_;
  int64_t step_ = 0;
  std::vector<uint8_t> decay_;
  std::vector<float> m32_, v32_;       // kF32 moments
  std::vector<uint16_t> m16_, v16_;    // kBF16 moments
};

// Learning-rate schedule: linear warmup from 0 to peak over warmup_steps, then cosine or linear
// decay to min_ratio·peak at total_steps (constant after).
enum class LrDecay : uint8_t { kCosine, kLinear, kConstant };
struct LrSchedule {
  double peak = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  LrDecay decay = LrDecay::kCosine;
  double min_ratio = 0.1;
  double at(int64_t step) const;  // step is 0-based (the update about to be made)
};

// Global L2 norm of grads [n]; if it exceeds max_norm > 0, scales grads by max_norm / norm.
// Returns the norm before clipping (NaN/inf if the gradients are not finite; then nothing is scaled).
double clip_grad_norm(float* grads, int64_t n, double max_norm);

}  // namespace qaft
