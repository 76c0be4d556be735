#include "train/trainer.h"

#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace qaft {
namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

// AdamW decays matrices, not norms and biases (1-D); buffers are not trained at all.
std::vector<uint8_t> decay_mask(const ParamStore<float>& p, std::vector<uint8_t>& trainable) {
  std::vector<uint8_t> mask(sz(p.size()), 0);
  trainable.assign(sz(p.size()), 0);
  for (const ParamSpec& s : p.specs()) {
    const int64_t off = p.offset(s.name), n = s.numel();
    for (int64_t i = 0; i < n; ++i) {
      trainable[sz(off + i)] = s.trainable;
      mask[sz(off + i)] = s.trainable && s.shape.size() >= 2;
    }
  }
  return mask;
}

uint64_t mix(uint64_t a, uint64_t b) {  // splitmix64 of a combination: the dropout seed per micro-batch
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string precision_name(GemmPrecision p) {
  return p == GemmPrecision::kFp8 ? "fp8" : p == GemmPrecision::kBf16 ? "bf16" : "fp32";
}

}  // namespace

double EvalMetrics::perplexity() const { return std::exp(loss); }

nlohmann::json ExpertCensus::to_json() const {
  nlohmann::json j = nlohmann::json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    nlohmann::json row = {{"layer", layers[l]}, {"tokens", tokens[l]}};
    if (!adapter_grad[l].empty()) {
      std::vector<bool> g(adapter_grad[l].begin(), adapter_grad[l].end());
      row["adapter_received_gradient"] = g;
    }
    j.push_back(row);
  }
  return j;
}

ExpertCensus ExpertCensus::from_json(const nlohmann::json& j) {
  ExpertCensus c;
  for (const auto& row : j) {
    c.layers.push_back(row.at("layer").get<int64_t>());
    c.tokens.push_back(row.at("tokens").get<std::vector<int64_t>>());
    std::vector<uint8_t> g;
    if (row.contains("adapter_received_gradient"))
      for (bool b : row["adapter_received_gradient"]) g.push_back(b ? 1 : 0);
    c.adapter_grad.push_back(std::move(g));
  }
  return c;
}

int64_t ExpertCensus::experts_without_tokens() const {
  int64_t n = 0;
  for (const auto& row : tokens) n += std::count(row.begin(), row.end(), 0);
  return n;
}

int64_t ExpertCensus::adapters_without_gradient() const {
  int64_t n = 0;
  for (const auto& row : adapter_grad) n += std::count(row.begin(), row.end(), 0);
  return n;
}

Trainer::Trainer(ModelConfig config, ParamStore<float> params, std::shared_ptr<const std::vector<Example>> examples,
                 BatcherOptions batching, TrainerOptions options)
    : config_(std::move(config)), batcher_(std::move(examples), batching), batching_(batching), options_(std::move(options)) {
  base_.format = BaseFormat::kF32;
  base_.params = std::move(params);
  init(batching);
}

Trainer::Trainer(ModelConfig config, BaseModel base, LoraSetup lora, std::shared_ptr<const std::vector<Example>> examples,
                 BatcherOptions batching, TrainerOptions options)
    : config_(std::move(config)),
      base_(std::move(base)),
      lora_(std::move(lora)),
      batcher_(std::move(examples), batching),
      batching_(batching),
      options_(std::move(options)) {
  init(batching);
}

Trainer::~Trainer() = default;

const ParamStore<float>& Trainer::trainable() const { return lora_ ? lora_->params : base_.params; }

void Trainer::init(BatcherOptions) {
  const TrainerOptions& o = options_;
  QAFT_CHECK_HINT(o.steps > 0, ErrorKind::kInvalidArgument, "set steps to a positive number", "steps must be positive, got {}", o.steps);
  QAFT_CHECK_HINT(o.grad_accum > 0, ErrorKind::kInvalidArgument, "set grad_accum to 1 or more", "grad_accum must be positive, got {}",
                  o.grad_accum);
  QAFT_CHECK_HINT(o.lr.peak > 0 && std::isfinite(o.lr.peak), ErrorKind::kInvalidArgument,
                  "set lr to a positive value such as 3e-4", "learning rate must be positive, got {}", o.lr.peak);
  QAFT_CHECK(o.max_grad_norm >= 0, "max_grad_norm must be >= 0, got {}", o.max_grad_norm);
  QAFT_CHECK(o.bias_update_speed >= 0, "bias_update_speed must be >= 0, got {}", o.bias_update_speed);
  numerics_.precision = o.precision;
  numerics_.fp8_scale_format = o.fp8_scale_format;
  numerics_.qat = o.qat;

  WeightBinding<float> wb;
  wb.params = &base_.params;
  wb.frozen = base_.frozen.size() ? &base_.frozen : nullptr;
  wb.numerics = &numerics_;
  if (lora_) {
    QAFT_CHECK_HINT(!(o.qat.enabled && lora_->config.dropout > 0), ErrorKind::kInvalidArgument,
                    "set lora.dropout to 0, or turn QAT off",
                    "LoRA dropout {} cannot be used with QAT: the merged, quantized weight has no dropout",
                    lora_->config.dropout);
    QAFT_CHECK(o.precision == GemmPrecision::kExact, "LoRA fine-tuning runs with fp32 GEMM operands (QAT sets the FP8 numerics)");
    numerics_.lora_dropout = lora_->config.dropout;
    grads_ = ParamStore<float>(lora_->params.specs());
    wb.lora = &lora_->params;
    wb.lora_grads = &grads_;
    wb.lora_scale = lora_->config.scale();
  } else {
    QAFT_CHECK(base_.frozen.size() == 0, "full-parameter training needs an f32 base (got a frozen {} store)",
               base_format_name(base_.format));
    grads_ = ParamStore<float>(base_.params.specs());
    wb.grads = &grads_;
  }
  model_ = std::make_unique<Transformer<float>>(config_, wb);
  model_->set_recompute(o.recompute);
  std::vector<uint8_t> decay = decay_mask(trainable(), trainable_mask_);
  optimizer_ = std::make_unique<AdamW>(o.adamw, trainable().size(), std::move(decay));

  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (!config_.is_moe_layer(l)) continue;
    census_.layers.push_back(l);
    census_.tokens.emplace_back(sz(config_.num_experts), 0);
    bool adapted = false;
    if (lora_)
      for (const LoraTarget& t : lora_->targets)
        adapted |= t.experts > 0 && t.module.rfind(fmt::format("model.layers.{}.", l), 0) == 0;
    census_.adapter_grad.emplace_back(adapted ? sz(config_.num_experts) : 0, 0);
  }
}

StepMetrics Trainer::step() {
  Timer timer;
  StepMetrics m;
  m.step = steps_done_ + 1;
  grads_.zero();
  // Accumulate Σ loss·weight gradients over the micro-batches, then scale by 1/Σ weight: the
  // gradient of the mean loss over every target token of the update (= one large batch).
  double loss_sum = 0, weight_sum = 0;
  std::vector<std::vector<int64_t>> load;  // [layer][E] tokens routed in this update
  numerics_.train_mode = true;
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    numerics_.dropout_seed = mix(mix(options_.seed, static_cast<uint64_t>(steps_done_)), static_cast<uint64_t>(micro));
    const HostBatch hb = batcher_.next();
    Batch b{hb.B, hb.T, hb.ids.data(), hb.targets.data(), hb.weights.data(), hb.positions.data(), hb.segment.data()};
    const LossResult r = model_->forward(b);
    if (r.weight_sum > 0) model_->backward(1.0f);
    loss_sum += r.loss_sum;
    weight_sum += r.weight_sum;
    m.tokens += r.tokens;
    m.processed_tokens += hb.B * hb.T;
    const auto l = model_->expert_load();
    if (load.empty()) load.assign(l.size(), {});
    for (size_t i = 0; i < l.size(); ++i) {
      load[i].resize(l[i].size(), 0);
      for (size_t e = 0; e < l[i].size(); ++e) load[i][e] += l[i][e];
    }
  }
  numerics_.train_mode = false;
  m.loss = weight_sum > 0 ? loss_sum / weight_sum : 0.0;
  m.lr = options_.lr.at(steps_done_);
  float* g = grads_.data();
  if (weight_sum > 0) {
    const float inv = static_cast<float>(1.0 / weight_sum);
    for (int64_t i = 0; i < grads_.size(); ++i) g[i] = trainable_mask_[sz(i)] ? g[i] * inv : 0.0f;
  }
  m.grad_norm = clip_grad_norm(g, grads_.size(), options_.max_grad_norm);
  for (const auto& row : load) {
    if (row.empty()) continue;
    int64_t total = 0, mx = 0;
    for (int64_t v : row) total += v, mx = std::max(mx, v);
    if (total > 0) m.max_load_ratio = std::max(m.max_load_ratio, static_cast<double>(mx) * static_cast<double>(row.size()) / static_cast<double>(total));
  }
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    m.skipped = true;
    ++skipped_;
  } else if (weight_sum > 0) {
    update_census(load);
    float* p = lora_ ? lora_->params.data() : base_.params.data();
    optimizer_->step(p, g, m.lr);
    balance_router_bias(load);
  }
  ++steps_done_;
  m.seconds = timer.seconds();
  return m;
}

void Trainer::update_census(const std::vector<std::vector<int64_t>>& load) {
  for (size_t i = 0; i < census_.layers.size(); ++i) {
    const int64_t l = census_.layers[i];
    if (sz(l) < load.size())
      for (size_t e = 0; e < load[sz(l)].size(); ++e) census_.tokens[i][e] += load[sz(l)][e];
    if (census_.adapter_grad[i].empty() || !lora_) continue;
    const std::string prefix = fmt::format("model.layers.{}.", l);
    for (const LoraTarget& t : lora_->targets) {
      if (t.experts == 0 || t.module.rfind(prefix, 0) != 0) continue;
      for (const std::string& name : {t.a_name(), t.b_name()}) {
        const float* d = grads_.get(name);
        const int64_t per = grads_.spec(name).numel() / t.experts;
        for (int64_t e = 0; e < t.experts; ++e) {
          if (census_.adapter_grad[i][sz(e)]) continue;
          const float* s = d + e * per;
          census_.adapter_grad[i][sz(e)] = std::any_of(s, s + per, [](float v) { return v != 0.0f; });
        }
      }
    }
  }
}

void Trainer::balance_router_bias(const std::vector<std::vector<int64_t>>& load) {
  // DeepSeek-V3 §2.1.2: after each step, b_e ← b_e − γ if expert e is overloaded, + γ if underloaded.
  if (options_.bias_update_speed <= 0 || lora_) return;
  const float gamma = static_cast<float>(options_.bias_update_speed);
  for (int64_t l : census_.layers) {
    float* bias = base_.params.find(fmt::format("model.layers.{}.mlp.gate.e_score_correction_bias", l));
    if (!bias || sz(l) >= load.size() || load[sz(l)].empty()) continue;
    const auto& row = load[sz(l)];
    double mean = 0;
    for (int64_t v : row) mean += static_cast<double>(v);
    mean /= static_cast<double>(row.size());
    for (size_t e = 0; e < row.size(); ++e) {
      const double err = mean - static_cast<double>(row[e]);
      bias[e] += err > 0 ? gamma : err < 0 ? -gamma : 0.0f;
    }
  }
}

EvalMetrics Trainer::evaluate(std::shared_ptr<const std::vector<Example>> examples, int64_t max_batches) {
  QAFT_CHECK_HINT(examples && !examples->empty(), ErrorKind::kInvalidArgument, "give the evaluation a non-empty dataset",
                  "evaluation dataset is empty");
  BatcherOptions o = batching_;
  o.shuffle = false;
  Batcher eval(std::move(examples), o);
  EvalMetrics r;
  numerics_.train_mode = false;
  while (max_batches <= 0 || r.batches < max_batches) {
    const HostBatch hb = eval.next();
    if (hb.epoch > 0) break;
    Batch b{hb.B, hb.T, hb.ids.data(), hb.targets.data(), hb.weights.data(), hb.positions.data(), hb.segment.data()};
    const LossResult lr = model_->forward(b);
    r.loss_sum += lr.loss_sum;
    r.weight_sum += lr.weight_sum;
    r.tokens += lr.tokens;
    ++r.batches;
    if (eval.cursor().epoch > 0) break;
  }
  r.loss = r.weight_sum > 0 ? r.loss_sum / r.weight_sum : 0.0;
  return r;
}

int64_t Trainer::state_bytes() const {
  const int64_t base = base_.params.size() * static_cast<int64_t>(sizeof(float)) + base_.frozen.bytes();
  const int64_t adapters = lora_ ? lora_->params.size() * static_cast<int64_t>(sizeof(float)) : 0;
  return base + adapters + grads_.size() * static_cast<int64_t>(sizeof(float)) + optimizer_->state_bytes();
}

int64_t Trainer::activation_bytes() const { return model_->saved_activation_bytes(); }

nlohmann::json Trainer::identity() const {
  nlohmann::json j = {{"model_type", config_.model_type},
                      {"mode", lora_ ? "lora" : "full"},
                      {"trainable_parameters", trainable().size()},
                      {"base_format", base_format_name(base_.format)},
                      {"precision", precision_name(options_.precision)},
                      {"qat", options_.qat.enabled},
                      {"batch_size", batching_.batch_size},
                      {"seq_len", batching_.seq_len},
                      {"shuffle_seed", batching_.seed},
                      {"grad_accum", options_.grad_accum},
                      {"moments", options_.adamw.moments == MomentPrecision::kF32 ? "f32" : "bf16"}};
  if (lora_) {
    j["lora_rank"] = lora_->config.rank;
    j["lora_alpha"] = lora_->config.alpha;
    j["lora_targets"] = static_cast<int64_t>(lora_->targets.size());
  }
  if (!options_.identity_extra.is_null()) j["config"] = options_.identity_extra;
  return j;
}

void Trainer::save_checkpoint(const std::string& dir) const {
  namespace fs = std::filesystem;
  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  QAFT_CHECK_HINT(!ec && fs::is_directory(tmp), ErrorKind::kIo, "choose a writable output directory",
                  "cannot create checkpoint directory {}: {}", tmp, ec ? ec.message() : "not a directory");
  std::vector<float> m, v;
  int64_t opt_step = 0;
  optimizer_->export_state(m, v, opt_step);
  SafetensorsWriter w;
  const ParamStore<float>& p = trainable();
  for (const ParamSpec& s : p.specs())
    w.add(s.name, DType::kF32, s.shape, p.get(s.name), sz(s.numel()) * sizeof(float));
  w.add("optimizer.m", DType::kF32, {static_cast<int64_t>(m.size())}, m.data(), m.size() * sizeof(float));
  w.add("optimizer.v", DType::kF32, {static_cast<int64_t>(v.size())}, v.data(), v.size() * sizeof(float));
  w.write(tmp + "/state.safetensors");
  nlohmann::json j = {{"identity", identity()},       {"steps_done", steps_done_},
                      {"optimizer_step", opt_step},   {"skipped_steps", skipped_},
                      {"cursor", batcher_.cursor().to_json()}, {"census", census_.to_json()}};
  write_file_atomic(tmp + "/trainer.json", j.dump(2) + "\n");
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check the output directory's permissions and free space",
                  "cannot move checkpoint {} into place: {}", tmp, ec.message());
}

void Trainer::load_checkpoint(const std::string& dir) {
  std::ifstream in(dir + "/trainer.json");
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "pass a directory written by a qaft training run",
                  "cannot open {}/trainer.json", dir);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    QAFT_FAIL(ErrorKind::kInvalidFile, "the checkpoint is damaged; resume from an earlier one", "{}/trainer.json: {}", dir, e.what());
  }
  const nlohmann::json want = identity();
  for (auto it = want.begin(); it != want.end(); ++it)
    QAFT_CHECK_HINT(j["identity"].contains(it.key()) && j["identity"][it.key()] == it.value(), ErrorKind::kInvalidArgument,
                    "resume with the configuration the checkpoint was made with",
                    "{} was made with {} = {}, this run has {}", dir, it.key(),
                    j["identity"].value(it.key(), nlohmann::json()).dump(), it.value().dump());
  const SafetensorsFile f = SafetensorsFile::open(dir + "/state.safetensors");
  ParamStore<float>& p = lora_ ? lora_->params : base_.params;
  for (const ParamSpec& s : p.specs()) {
    const TensorInfo& info = f.info(s.name);
    QAFT_CHECK_HINT(info.dtype == DType::kF32 && info.shape == s.shape, ErrorKind::kInvalidFile, "",
                    "{}: {} has the wrong dtype or shape", dir, s.name);
    std::memcpy(p.get(s.name), f.bytes(s.name).data(), info.nbytes);
  }
  auto read = [&](const char* name) {
    const auto bytes = f.bytes(name);
    std::vector<float> out(bytes.size() / sizeof(float));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  };
  optimizer_->import_state(read("optimizer.m"), read("optimizer.v"), j.at("optimizer_step").get<int64_t>());
  steps_done_ = j.at("steps_done").get<int64_t>();
  skipped_ = j.at("skipped_steps").get<int64_t>();
  if (j.contains("census")) census_ = ExpertCensus::from_json(j["census"]);
  batcher_.seek(BatchCursor::from_json(j.at("cursor")));
}

}  // namespace qaft
