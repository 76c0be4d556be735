#include "train/train_job.h"

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors_index.h"
#include "model/checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace qaft {
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "check the path", "cannot read {}", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

// Reads a JSONL dataset through the tokenizer; every invalid line is reported, none is fatal
// unless nothing valid remains.
std::shared_ptr<const std::vector<Example>> load_examples(const fs::path& file, const char* key, const Tokenizer& tok,
                                                          const ChatTemplate& tpl, const DatasetOptions& options) {
  auto examples = std::make_shared<std::vector<Example>>();
  const DatasetStats s = scan_dataset(file, tok, tpl, options, [&](Example&& e) { examples->push_back(std::move(e)); });
  if (s.errors > 0) {
    QAFT_LOG(kWarn, "{} ({}): {} of {} lines are invalid and skipped (run `qaft dataset validate` for the full report)", key,
             file.string(), s.errors, s.rows);
    for (size_t i = 0; i < std::min<size_t>(5, s.first_errors.size()); ++i)
      QAFT_LOG(kWarn, "  line {}: {}", s.first_errors[i].line, s.first_errors[i].message);
  }
  std::string first;
  if (!s.first_errors.empty()) first = fmt::format("; first: line {}: {}", s.first_errors[0].line, s.first_errors[0].message);
  QAFT_CHECK_HINT(!examples->empty(), ErrorKind::kInvalidFile, "give a JSONL file with chat, prompt/completion or text records",
                  "{} {} has no valid example ({} lines, {} invalid{})", key, file.string(), s.rows, s.errors, first);
  QAFT_LOG(kInfo, "{}: {} examples, {} tokens ({} trained on)", key, examples->size(), s.tokens, s.trainable_tokens);
  return examples;
}

// Checkpoint directories are "step-NNNNNNNN" inside checkpoint.dir.
std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.size() == 13 && name.rfind("step-", 0) == 0 &&
        std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        fs::exists(e.path() / "trainer.json"))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Keeps the metrics lines of steps <= last (a resumed run rewrites what followed).
void cut_metrics(const fs::path& file, int64_t last) {
  std::ifstream in(file);
  if (!in.good()) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) <= last) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {  // a torn last line of a killed run
    }
  }
  write_file_atomic(file.string(), kept);
}

void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    std::error_code ec;
    if (fs::exists(from / name)) fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check the output directory", "cannot copy {} to {}: {}", name, to.string(), ec.message());
  }
}

class Progress {
 public:
  Progress(ProgressMode mode, int64_t total) : total_(total) {
    on_ = mode == ProgressMode::kOn || (mode == ProgressMode::kAuto && ::isatty(2));
    tty_ = ::isatty(2);
  }
  void update(const StepMetrics& m, double tokens_per_s, double eta_s) {
    if (!on_) return;
    const std::string line = fmt::format("step {}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s  ETA {}{}", m.step, total_, m.loss,
                                         m.lr, tokens_per_s, format_duration(eta_s), m.skipped ? "  (skipped)" : "");
    if (tty_) std::fprintf(stderr, "\r%-78s", line.c_str());
    else if (m.step == total_ || m.step % std::max<int64_t>(1, total_ / 20) == 0) std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
  void done() {
    if (on_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  int64_t total_;
  bool on_ = false, tty_ = false;
};

}  // namespace

nlohmann::json TrainJobResult::to_json() const {
  nlohmann::json j = {{"steps_done", steps_done},
                      {"completed", completed},
                      {"final_loss", final_loss},
                      {"tokens_per_second", tokens_per_second},
                      {"skipped_steps", skipped_steps},
                      {"peak_rss_bytes", peak_rss_bytes},
                      {"output_dir", output_dir}};
  if (eval) j["eval"] = {{"loss", eval->loss}, {"perplexity", eval->perplexity()}, {"tokens", eval->tokens}};
  if (!adapter_dir.empty()) j["adapter_dir"] = adapter_dir;
  if (!model_dir.empty()) j["model_dir"] = model_dir;
  return j;
}

std::string latest_checkpoint(const std::string& dir) {
  const auto all = list_checkpoints(dir);
  return all.empty() ? std::string() : all.back();
}

TrainJobResult run_train_job(const TrainConfig& cfg, bool resume, const TrainJobHooks& hooks) {
  check_train_config_paths(cfg);
  const bool sft = cfg.mode == TrainMode::kSft;
  const fs::path model_dir = cfg.model.path;
  const fs::path tok_dir = cfg.model.from_scratch() ? cfg.model.tokenizer : model_dir;
  const std::string config_json = read_text(cfg.model.from_scratch() ? cfg.model.config : model_dir / "config.json");
  const ModelConfig mc = model_config_from_json(config_json, cfg.model.from_scratch() ? cfg.model.config.string()
                                                                                        : (model_dir / "config.json").string());

  // Output first: an unwritable directory fails before any work.
  std::error_code ec;
  fs::create_directories(cfg.output.dir, ec);
  QAFT_CHECK_HINT(!ec && ::access(cfg.output.dir.c_str(), W_OK) == 0, ErrorKind::kIo,
                  "set output.dir to a directory you can write", "output.dir {} is not writable{}", cfg.output.dir.string(),
                  ec ? ": " + ec.message() : std::string());
  const std::string ck_dir = cfg.checkpoint.dir.string();
  const std::string resume_from = latest_checkpoint(ck_dir);
  QAFT_CHECK_HINT(resume || resume_from.empty(), ErrorKind::kInvalidArgument,
                  "pass --resume to continue that run, or choose another output.dir",
                  "{} already holds a checkpoint of an earlier run ({})", ck_dir, fs::path(resume_from).filename().string());

  // Data.
  const Tokenizer tok = Tokenizer::load(tok_dir);
  QAFT_CHECK_HINT(tok.vocab_size() <= mc.vocab_size, ErrorKind::kInvalidArgument, "use the tokenizer of this model",
                  "the tokenizer in {} has {} tokens but the model's vocab_size is {}", tok_dir.string(), tok.vocab_size(),
                  mc.vocab_size);
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, tok_dir.string());
  const DatasetOptions dopt = cfg.dataset_options();
  auto train = load_examples(cfg.data.train, "data.train", tok, tpl, dopt);
  std::shared_ptr<const std::vector<Example>> eval;
  if (!cfg.data.eval.empty()) eval = load_examples(cfg.data.eval, "data.eval", tok, tpl, dopt);
  BatcherOptions bopt = cfg.batcher_options();
  bopt.pad_id = tok.pad_id().value_or(tok.eos_id().value_or(0));

  // Options.
  TrainerOptions o;
  o.steps = cfg.steps;
  o.grad_accum = cfg.grad_accum;
  o.lr = cfg.lr_schedule();
  o.adamw = cfg.adamw_config();
  o.max_grad_norm = cfg.optim.max_grad_norm;
  o.recompute = cfg.recompute;
  o.precision = cfg.precision;
  o.fp8_scale_format = cfg.fp8_scale_format;
  o.qat = sft ? cfg.qat_config() : QatConfig{};
  o.bias_update_speed = cfg.balancing.bias_update_speed;
  o.seed = cfg.seed;
  o.identity_extra = cfg.identity_json();

  // Model.
  std::unique_ptr<Trainer> trainer;
  Timer load_timer;
  if (sft) {
    BaseModel base = load_base_model(ShardedCheckpoint::open(model_dir.string()), mc, cfg.base_format);
    LoraSetup lora;
    lora.config = cfg.lora_config();
    lora.targets = resolve_lora_targets(mc, lora.config);
    lora.params = ParamStore<float>(lora_param_specs(lora.targets));
    init_lora_params(lora.params, lora.targets, lora.config.seed);
    for (const std::string& line : lora_census_lines(mc, lora.targets)) QAFT_LOG(kInfo, "{}", line);
    QAFT_LOG(kInfo, "LoRA scale s = {:.4g}; base stored as {} ({:.1f} MiB frozen); QAT {}", lora.config.scale(),
             base_format_name(cfg.base_format), static_cast<double>(base.frozen.bytes()) / (1 << 20),
             o.qat.enabled ? fmt::format("on (E4M3 128x128 {} scales{})", scale_format_name(o.qat.weight_scale_format),
                                         o.qat.quantize_activations ? ", activations 1x128" : "")
                           : "off");
    trainer = std::make_unique<Trainer>(mc, std::move(base), std::move(lora), train, bopt, o);
  } else {
    ParamStore<float> params;
    if (cfg.model.from_scratch()) {
      params = ParamStore<float>(model_param_specs(mc));
      init_params_random(params, cfg.seed, cfg.model.init_std);
    } else {
      params = load_params<float>(ShardedCheckpoint::open(model_dir.string()), mc);
    }
    QAFT_LOG(kInfo, "pretraining {} parameters, GEMM operands {}", parameter_count(mc), train_precision_name(cfg.precision));
    trainer = std::make_unique<Trainer>(mc, std::move(params), train, bopt, o);
  }
  QAFT_LOG(kInfo, "model ready in {:.1f} s; {:.1f} MiB of parameters, gradients and optimizer state", load_timer.seconds(),
           static_cast<double>(trainer->state_bytes()) / (1 << 20));

  const fs::path metrics = cfg.metrics_path();
  if (!resume_from.empty()) {
    trainer->load_checkpoint(resume_from);
    cut_metrics(metrics, trainer->steps_done());
    QAFT_LOG(kInfo, "resumed from {} at step {}", resume_from, trainer->steps_done());
  } else {
    write_file_atomic(metrics.string(), "");
  }
  std::FILE* mf = std::fopen(metrics.c_str(), "a");
  QAFT_CHECK_HINT(mf != nullptr, ErrorKind::kIo, "check output.dir", "cannot open {} for appending", metrics.string());
  auto write_metrics = [&](const nlohmann::json& j) {
    std::fprintf(mf, "%s\n", j.dump().c_str());
    std::fflush(mf);
  };

  auto checkpoint = [&]() {
    const std::string dir = fmt::format("{}/step-{:08}", ck_dir, trainer->steps_done());
    fs::create_directories(ck_dir, ec);
    trainer->save_checkpoint(dir);
    const auto all = list_checkpoints(ck_dir);
    for (size_t i = 0; i + static_cast<size_t>(cfg.checkpoint.keep) < all.size(); ++i) fs::remove_all(all[i], ec);
  };
  TrainJobResult result;
  auto evaluate = [&]() {
    if (!eval) return;
    result.eval = trainer->evaluate(eval, cfg.eval.batches);
    write_metrics({{"step", trainer->steps_done()},
                   {"eval_loss", result.eval->loss},
                   {"eval_perplexity", result.eval->perplexity()},
                   {"eval_tokens", result.eval->tokens}});
    QAFT_LOG(kInfo, "step {}: eval loss {:.4f} (perplexity {:.2f}, {} tokens)", trainer->steps_done(), result.eval->loss,
             result.eval->perplexity(), result.eval->tokens);
  };

  Progress progress(cfg.log.progress, cfg.steps);
  double train_seconds = 0;
  int64_t processed = 0;
  const int64_t first_step = trainer->steps_done();
  while (trainer->steps_done() < cfg.steps) {
    if (hooks.stop && hooks.stop->load()) break;
    if (hooks.max_steps_now > 0 && trainer->steps_done() - first_step >= hooks.max_steps_now) break;
    const StepMetrics m = trainer->step();
    train_seconds += m.seconds;
    processed += m.processed_tokens;
    const double tps = train_seconds > 0 ? static_cast<double>(processed) / train_seconds : 0.0;
    const double eta = train_seconds / static_cast<double>(trainer->steps_done() - first_step) *
                       static_cast<double>(cfg.steps - trainer->steps_done());
    nlohmann::json line = {{"step", m.step},         {"loss", m.loss},          {"grad_norm", m.grad_norm},
                           {"lr", m.lr},             {"tokens", m.tokens},      {"processed_tokens", m.processed_tokens},
                           {"seconds", m.seconds},   {"tokens_per_second", m.seconds > 0 ? static_cast<double>(m.processed_tokens) / m.seconds : 0.0},
                           {"skipped", m.skipped}};
    if (m.max_load_ratio > 0) line["max_expert_load_ratio"] = m.max_load_ratio;
    write_metrics(line);
    result.final_loss = m.loss;
    progress.update(m, tps, eta);
    if (hooks.on_step) hooks.on_step(m);
    const int64_t s = trainer->steps_done();
    if (cfg.eval.every > 0 && s % cfg.eval.every == 0 && s < cfg.steps) evaluate();
    if (cfg.checkpoint.every > 0 && s % cfg.checkpoint.every == 0 && s < cfg.steps) checkpoint();
  }
  progress.done();
  result.completed = trainer->steps_done() >= cfg.steps;
  checkpoint();  // always: the end state, or where a stopped run resumes
  if (result.completed) evaluate();
  std::fclose(mf);

  result.steps_done = trainer->steps_done();
  result.skipped_steps = trainer->skipped_steps();
  result.tokens_per_second = train_seconds > 0 ? static_cast<double>(processed) / train_seconds : 0.0;
  result.output_dir = cfg.output.dir.string();
  if (result.completed) {
    if (sft) {
      result.adapter_dir = (cfg.output.dir / "adapter").string();
      const LoraSetup& l = *trainer->lora();
      const nlohmann::json training = {{"qat", o.qat.enabled},
                                       {"scale_format", scale_format_name(o.qat.weight_scale_format)},
                                       {"quantize_activations", o.qat.quantize_activations},
                                       {"base_format", base_format_name(cfg.base_format)},
                                       {"steps", result.steps_done}};
      save_peft_adapter(result.adapter_dir, mc, l.config, l.targets, l.params, model_dir.string(), training);
      const ExpertCensus& c = trainer->census();
      nlohmann::json census = {{"experts", c.to_json()},
                               {"experts_without_tokens", c.experts_without_tokens()},
                               {"adapted_experts_without_gradient", c.adapters_without_gradient()}};
      write_file_atomic((cfg.output.dir / "census.json").string(), census.dump(2) + "\n");
      if (c.adapters_without_gradient() > 0) {
        int64_t with_tokens = 0;  // an adapted expert that saw tokens but got no gradient would be a defect
        for (size_t l = 0; l < c.layers.size(); ++l)
          for (size_t e = 0; e < c.adapter_grad[l].size(); ++e) with_tokens += !c.adapter_grad[l][e] && c.tokens[l][e] > 0;
        QAFT_LOG(kWarn, "expert census: {} adapted routed experts never received a gradient ({} of them saw no token: "
                 "train longer or on more data to reach them; see {}/census.json)",
                 c.adapters_without_gradient(), c.adapters_without_gradient() - with_tokens, cfg.output.dir.string());
      }
      else if (!c.layers.empty())
        QAFT_LOG(kInfo, "expert census: every adapted routed expert received gradient; {} experts saw no token", c.experts_without_tokens());
    } else {
      result.model_dir = (cfg.output.dir / "model").string();
      save_checkpoint(trainer->params(), config_json, result.model_dir, CheckpointOptions{CheckpointFormat::kF32, {}, 0});
      copy_tokenizer_files(tok_dir, result.model_dir);
      if (cfg.precision == GemmPrecision::kFp8) {
        const std::string fp8_dir = (cfg.output.dir / "model-fp8").string();
        save_checkpoint(trainer->params(), config_json, fp8_dir,
                        CheckpointOptions{CheckpointFormat::kFp8Block, cfg.fp8_scale_format, 0});
        copy_tokenizer_files(tok_dir, fp8_dir);
      }
    }
  } else {
    QAFT_LOG(kInfo, "stopped at step {} of {}; `--resume` continues from {}", result.steps_done, cfg.steps, ck_dir);
  }
  result.peak_rss_bytes = peak_rss_bytes();
  write_file_atomic((cfg.output.dir / "summary.json").string(), result.to_json().dump(2) + "\n");
  return result;
}

}  // namespace qaft
