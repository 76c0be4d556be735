// The training configuration of `qaft train CONFIG.yaml [--set key=value ...]`: a YAML file,
// parsed strictly (every key checked against the schema, every value against its type and range),
// with command-line overrides applied to the YAML tree before conversion, into one TrainConfig
// whose every field is resolved (defaults filled in, relative paths made absolute).
// docs/train-config.md is the user's reference (every key, default, rule and error); the ready
// configurations live in configs/.
//
// Paths: a relative path written in the file resolves against the directory of the file; a
// relative path given with --set resolves against the current working directory (as any path
// typed on a command line). Loading reads only the YAML file itself: whether the model and data
// exist is checked by check_train_config_paths (or by whatever opens them).
//
// Errors are qaft::Error: kIo when the file cannot be read; kInvalidFile when it is not YAML
// (file:line:col); kInvalidArgument for everything else — an unknown key (its full path, where it
// is, and the closest valid key), a value of the wrong type, a missing required field, a value out
// of range, an invalid enum value (listing the valid ones), a malformed --set. Messages read
// "optim.lr: expected a number, got 'fast' (config.yaml:7:7)"; a value set on the command line is
// located as "(--set optim.lr=fast)".
#pragma once

#include "adapters/lora_targets.h"
#include "data/batcher.h"
#include "data/dataset.h"
#include "model/frozen_weights.h"
#include "model/linear.h"
#include "optim/adamw.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// What is trained.
enum class TrainMode : uint8_t {
  kPretrain,  // "pretrain": every parameter is trained (from scratch or from a model)
  kSft,       // "sft": LoRA adapters on a frozen base model are trained
};

// Whether a progress line is drawn on stderr.
enum class ProgressMode : uint8_t {
  kAuto,  // "auto": when stderr is a terminal
  kOn,    // "on": always
  kOff,   // "off": never (metrics still go to the metrics file)
};

std::string_view train_mode_name(TrainMode m);  // "pretrain", "sft"
// The configuration's names of qaft::GemmPrecision (model/linear.h): kExact "fp32" (fp32 operands,
// the reference), kBf16 "bf16" (DeepSeek-V3's recipe with BF16 operands), kFp8 "fp8" (DeepSeek-V3
// FP8 mixed precision: E4M3 operands with 1×128 / 128×128 scales, fp32 accumulation).
std::string_view train_precision_name(GemmPrecision p);  // "fp32", "bf16", "fp8"
std::string_view progress_mode_name(ProgressMode p);     // "auto", "on", "off"

// One training run, fully resolved. The YAML keys are the field names (nested sections are the
// nested structs); docs/train-config.md lists them with their rules.
struct TrainConfig {
  // `model:` — the model trained (sft: the frozen base; pretrain: the starting point). Exactly one
  // of `path` or (`config` + `tokenizer`) is set.
  struct Model {
    std::filesystem::path path;       // HF model directory (config.json, *.safetensors, tokenizer
                                      // files); absolute. Empty when training from scratch.
    std::filesystem::path config;     // pretrain from scratch: a config.json (absolute); else empty
    std::filesystem::path tokenizer;  // pretrain from scratch: directory with tokenizer.json and
                                      // tokenizer_config.json (absolute); else empty
    double init_std = 0.02;           // pretrain from scratch: std of the random normal init of the
                                      // weights (DeepSeek-V3's 0.006 at scale; 0.02 is GPT-2's)
    bool from_scratch() const { return path.empty(); }
  };

  // `lora:` — the adapters (sft only).
  struct Lora {
    int64_t rank = 8;                                   // r, >= 1
    double alpha = 16;                                  // lora_alpha, > 0; scale s = alpha / r
    bool rslora = false;                                // s = alpha / sqrt(r) instead
    double dropout = 0;                                 // on the adapter input, in [0, 1); 0 with QAT
    std::vector<std::string> targets = {"all-linear"};  // module names or {"all-linear"}; empty
                                                        // when target_regex is used
    std::string target_regex;                           // regex over module paths (fullmatch);
                                                        // "" = use targets
    uint64_t seed = 0;                                  // init of the A matrices; default: `seed`
  };

  // `qat:` — quantization-aware training of the merged weight (sft only).
  struct Qat {
    bool enabled = true;                            // sft: true; pretrain: false (must stay false)
    ScaleFormat scale_format = ScaleFormat::kFp32;  // 128×128 weight block scales: fp32 | ue8m0
                                                    // (pick the serving engine's)
    bool quantize_activations = true;               // also fake-quantize GEMM inputs (1×128, W8A8)
  };

  // `data:` — the training (and evaluation) examples and the batch shape.
  struct Data {
    std::filesystem::path train;  // JSONL (chat or prompt/completion), absolute; required
    std::filesystem::path eval;   // JSONL for evaluation, absolute; empty = no evaluation
    int64_t seq_len = 0;          // T: tokens per row, > 0; required
    int64_t batch_size = 1;       // B: rows per micro-batch, > 0
    bool pack = true;             // several examples per row (else one, padded)
    bool shuffle = true;          // reshuffle the examples every epoch (seeded by `seed`)
    int64_t max_length = 0;       // tokens per example, 1..seq_len; default: seq_len
    OverflowPolicy on_overflow = OverflowPolicy::kDrop;  // longer examples: drop | truncate | split
                                                         // (split: pieces of max_length, for pretraining)
  };

  // `optim.schedule:` — learning-rate schedule over `steps` updates.
  struct Schedule {
    int64_t warmup_steps = 0;          // linear warmup from 0 to lr, 0..steps
    LrDecay decay = LrDecay::kCosine;  // then cosine | linear | constant down to min_ratio·lr
    double min_ratio = 0.1;            // final lr / lr, in [0, 1]
  };

  // `optim:` — AdamW.
  struct Optim {
    double lr = 0;                                    // peak learning rate, > 0; required
    double weight_decay = 0;                          // decoupled decay λ >= 0; default 0.1 pretrain, 0 sft
    double beta1 = 0.9;                               // in [0, 1)
    double beta2 = 0.95;                              // in [0, 1) (DeepSeek-V3's value)
    double eps = 1e-8;                                // > 0
    MomentPrecision moments = MomentPrecision::kF32;  // m and v storage: fp32 | bf16
    double max_grad_norm = 1.0;                       // global L2 clipping threshold, >= 0; 0 = no clipping
    Schedule schedule;                                // warmup and decay
  };

  // `balancing:` — auxiliary-loss-free load balancing of MoE routers (DeepSeek-V3 noaux_tc).
  struct Balancing {
    double bias_update_speed = 0.001;  // γ: per-step update of each expert's routing bias, >= 0;
                                       // 0 = off. Default 0.001 pretrain (DeepSeek-V3), 0 sft.
                                       // Ignored by models without a routing bias.
  };

  // `eval:` — evaluation on data.eval (nothing without it).
  struct Eval {
    int64_t every = 0;    // steps between evaluations, >= 0; 0 = only at the end
    int64_t batches = 0;  // at most this many eval batches, >= 0; 0 = the whole set
  };

  // `checkpoint:` — resumable training state.
  struct Checkpoint {
    int64_t every = 0;          // steps between checkpoints, >= 0; 0 = only at the end
    std::filesystem::path dir;  // absolute; default <output.dir>/checkpoints
    int64_t keep = 1;           // most recent checkpoints kept, >= 1
  };

  // `output:` — where the results go.
  struct Output {
    std::filesystem::path dir;              // adapter / model / metrics directory, absolute; required
    std::string metrics = "metrics.jsonl";  // metrics file name, relative to dir
  };

  // `log:`.
  struct Log {
    ProgressMode progress = ProgressMode::kAuto;  // progress line: auto | on | off
  };

  TrainMode mode = TrainMode::kSft;                   // required
  Model model;                                        // required
  BaseFormat base_format = BaseFormat::kBf16;         // frozen base storage: f32 | bf16 | fp8 | nf4;
                                                      // default bf16 sft; pretrain requires f32
  GemmPrecision precision = GemmPrecision::kExact;    // training GEMM operands: fp32 (kExact) | bf16 |
                                                      // fp8; default fp32
  ScaleFormat fp8_scale_format = ScaleFormat::kFp32;  // scales of the fp8 GEMM operands: fp32 |
                                                      // ue8m0; default fp32; used with precision fp8
  Lora lora;                                          // used when mode == kSft
  Qat qat;                                            // enabled only when mode == kSft
  Data data;                                          // train, seq_len required
  Optim optim;                                        // lr required
  int64_t steps = 0;       // optimizer updates, > 0; required
  int64_t grad_accum = 1;  // micro-batches per update, >= 1
  uint64_t seed = 0;       // data order (and default lora.seed / init seed)
  bool recompute = false;  // recompute activations per layer in backward
  Balancing balancing;     // MoE routing-bias updates
  Eval eval;               // evaluation cadence (needs data.eval)
  Checkpoint checkpoint;   // checkpoint cadence, place, retention
  Output output;           // dir required
  Log log;                 // progress display

  std::filesystem::path source;  // the YAML file it came from (absolute); empty for a string

  // The whole resolved configuration, shaped like the YAML (same keys and sections; absolute
  // paths; enums by name; a setting that does not apply is absent, e.g. `lora` when pretraining).
  // Parsing its dump gives back an equal configuration. For lineage (checkpoints, registries).
  nlohmann::json to_json() const;
  // The part of to_json a resumed run must share with the run that wrote the checkpoint: mode,
  // model, base_format, precision, fp8_scale_format, lora, qat, data (train, seq_len, batch_size, pack,
  // shuffle, max_length, on_overflow), optim, steps, grad_accum, seed, balancing. Left out: data.eval, eval,
  // checkpoint, output, log and recompute (which changes memory and time, not results).
  nlohmann::json identity_json() const;

  // The settings as the library's option structs.
  LoraConfig lora_config() const;              // lora.*
  QatConfig qat_config() const;                // qat.* (model/linear.h)
  AdamWConfig adamw_config() const;            // optim.* except lr and schedule
  LrSchedule lr_schedule() const;              // optim.lr, optim.schedule.*, steps
  BatcherOptions batcher_options() const;      // data.*, seed; pad_id is 0: set the tokenizer's
  DatasetOptions dataset_options() const;      // data.max_length, data.on_overflow
  std::filesystem::path metrics_path() const;  // output.dir / output.metrics
};

// Reads and parses a YAML file, applying `overrides` ("a.b.c=value", value parsed as YAML: a
// scalar or a flow node such as [q_a_proj, o_proj]; an empty value unsets the key) in order.
TrainConfig load_train_config(const std::filesystem::path& path,
                              const std::vector<std::string>& overrides = {});

// The same from YAML text. Relative paths in `yaml` resolve against `base_dir` (the current
// directory when empty); `source_name` names the text in messages.
TrainConfig parse_train_config(std::string_view yaml, const std::vector<std::string>& overrides = {},
                               const std::filesystem::path& base_dir = {},
                               std::string_view source_name = "<config>");

// Checks that the files the configuration names exist: model.path/config.json (or model.config and
// model.tokenizer/tokenizer.json), data.train, data.eval. Throws kInvalidArgument naming the key.
void check_train_config_paths(const TrainConfig& config);

// Every key of the schema, dotted ("optim.schedule.warmup_steps"), sections excluded, in the
// order of docs/train-config.md.
std::vector<std::string> train_config_keys();

}  // namespace qaft
