#include "train/trainer.h"

#include "core/error.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace qaft {
namespace {

// AdamW decays matrices, not norms and biases (1-D); buffers are not trained at all.
std::vector<uint8_t> decay_mask(const ParamStore<float>& p, std::vector<uint8_t>& trainable) {
  std::vector<uint8_t> mask(static_cast<size_t>(p.size()), 0);
  trainable.assign(static_cast<size_t>(p.size()), 0);
  for (const ParamSpec& s : p.specs()) {
    const int64_t off = p.offset(s.name), n = s.numel();
    for (int64_t i = 0; i < n; ++i) {
      trainable[static_cast<size_t>(off + i)] = s.trainable;
      mask[static_cast<size_t>(off + i)] = s.trainable && s.shape.size() >= 2;
    }
  }
  return mask;
}

}  // namespace

Trainer::Trainer(ModelConfig config, ParamStore<float> params, std::shared_ptr<const std::vector<Example>> examples,
                 BatcherOptions batching, TrainerOptions options)
    : config_(std::move(config)),
      params_(std::move(params)),
      grads_(params_.specs()),
      batcher_(std::move(examples), batching),
      batching_(batching),
      options_(options),
      optimizer_(options.adamw, params_.size(), decay_mask(params_, trainable_)) {
  QAFT_CHECK(options.steps > 0, "steps must be positive, got {}", options.steps);
  QAFT_CHECK(options.grad_accum > 0, "grad_accum must be positive, got {}", options.grad_accum);
  QAFT_CHECK_HINT(options.lr.peak > 0 && std::isfinite(options.lr.peak), ErrorKind::kInvalidArgument,
                  "set lr to a positive value such as 3e-4", "learning rate must be positive, got {}", options.lr.peak);
  QAFT_CHECK(options.max_grad_norm >= 0, "max_grad_norm must be >= 0, got {}", options.max_grad_norm);
  model_ = std::make_unique<Transformer<float>>(config_, &params_, &grads_);
  model_->set_recompute(options.recompute);
}

StepMetrics Trainer::step() {
  Timer timer;
  StepMetrics m;
  m.step = steps_done_ + 1;
  grads_.zero();
  // Accumulate Σ loss·weight gradients over the micro-batches, then scale by 1/Σ weight: the
  // gradient of the mean loss over every target token of the update (= one large batch).
  double loss_sum = 0, weight_sum = 0;
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    const HostBatch hb = batcher_.next();
    Batch b{hb.B, hb.T, hb.ids.data(), hb.targets.data(), hb.weights.data(), hb.positions.data(), hb.segment.data()};
    const LossResult r = model_->forward(b);
    if (r.weight_sum > 0) model_->backward(1.0f);
    loss_sum += r.loss_sum;
    weight_sum += r.weight_sum;
    m.tokens += r.tokens;
  }
  m.loss = weight_sum > 0 ? loss_sum / weight_sum : 0.0;
  m.lr = options_.lr.at(steps_done_);
  if (weight_sum > 0) {
    const float inv = static_cast<float>(1.0 / weight_sum);
    float* g = grads_.data();
    for (int64_t i = 0; i < grads_.size(); ++i) g[i] = trainable_[static_cast<size_t>(i)] ? g[i] * inv : 0.0f;
  }
  m.grad_norm = clip_grad_norm(grads_.data(), grads_.size(), options_.max_grad_norm);
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    m.skipped = true;
    ++skipped_;
  } else if (weight_sum > 0) {
    optimizer_.step(params_.data(), grads_.data(), m.lr);
  }
  ++steps_done_;
  m.seconds = timer.seconds();
  return m;
}

nlohmann::json Trainer::identity() const {
  return {{"model_type", config_.model_type},
          {"parameters", params_.size()},
          {"batch_size", batching_.batch_size},
          {"seq_len", batching_.seq_len},
          {"shuffle_seed", batching_.seed},
          {"grad_accum", options_.grad_accum},
          {"moments", options_.adamw.moments == MomentPrecision::kF32 ? "f32" : "bf16"}};
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
  optimizer_.export_state(m, v, opt_step);
  SafetensorsWriter w;
  for (const ParamSpec& s : params_.specs())
    w.add(s.name, DType::kF32, s.shape, params_.get(s.name), static_cast<size_t>(s.numel()) * sizeof(float));
  w.add("optimizer.m", DType::kF32, {static_cast<int64_t>(m.size())}, m.data(), m.size() * sizeof(float));
  w.add("optimizer.v", DType::kF32, {static_cast<int64_t>(v.size())}, v.data(), v.size() * sizeof(float));
  w.write(tmp + "/state.safetensors");
  nlohmann::json j = {{"identity", identity()},  {"steps_done", steps_done_}, {"optimizer_step", opt_step},
                      {"skipped_steps", skipped_}, {"cursor", batcher_.cursor().to_json()}};
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
  for (const ParamSpec& s : params_.specs()) {
    const TensorInfo& info = f.info(s.name);
    QAFT_CHECK_HINT(info.dtype == DType::kF32 && info.shape == s.shape, ErrorKind::kInvalidFile, "",
                    "{}: {} has the wrong dtype or shape", dir, s.name);
    std::memcpy(params_.get(s.name), f.bytes(s.name).data(), info.nbytes);
  }
  auto read = [&](const char* name) {
    const auto bytes = f.bytes(name);
    std::vector<float> out(bytes.size() / sizeof(float));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  };
  optimizer_.import_state(read("optimizer.m"), read("optimizer.v"), j.at("optimizer_step").get<int64_t>());
  steps_done_ = j.at("steps_done").get<int64_t>();
  skipped_ = j.at("skipped_steps").get<int64_t>();
  batcher_.seek(BatchCursor::from_json(j.at("cursor")));
}

}  // namespace qaft
