// The training configuration (src/train/train_config.*): defaults by mode, path resolution,
// --set overrides, every class of error with its location and suggestion, to_json / identity_json,
// the mapping onto the library's option structs, and every ready configuration in configs/.
#include "train/train_config.h"
#include "core/error.h"
#include "temp_dir.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

// A minimal valid fine-tuning configuration (absolute paths, so the base directory does not matter).
const std::string kSft = R"(mode: sft
model:
  path: /models/tiny
data:
  train: /data/train.jsonl
  seq_len: 128
optim:
  lr: 1.0e-4
steps: 10
output:
  dir: /out
)";

const std::string kPretrain = R"(mode: pretrain
model:
  config: /models/tiny/config.json
  tokenizer: /models/tiny
data:
  train: /data/train.jsonl
  seq_len: 64
optim:
  lr: 3e-3
steps: 100
output:
  dir: /out
)";

TrainConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_train_config(yaml, overrides, "/base", "config.yaml");
}

// The Error `fn` throws (fails the test when it throws none).
Error error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no qaft::Error thrown";
  return Error(ErrorKind::kInternal, "", "", "");
}

// Parsing `yaml` (with `overrides`) fails with `kind` and a message containing every one of `parts`.
void expect_error(const std::string& yaml, const std::vector<std::string>& overrides, ErrorKind kind,
                  const std::vector<std::string>& parts) {
  const Error e = error_of([&] { parse(yaml, overrides); });
  EXPECT_EQ(e.kind(), kind) << e.what();
  for (const std::string& p : parts)
    EXPECT_NE(e.message().find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
}

void expect_invalid(const std::string& yaml, const std::vector<std::string>& parts) {
  expect_error(yaml, {}, ErrorKind::kInvalidArgument, parts);
}

void expect_invalid_set(const std::vector<std::string>& overrides, const std::vector<std::string>& parts) {
  expect_error(kSft, overrides, ErrorKind::kInvalidArgument, parts);
}

// kSft (11 lines) with `text` appended from line 12 on.
std::string sft_with(const std::string& text) { return kSft + text + "\n"; }

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Defaults and resolution

TEST(TrainConfig, SftDefaults) {
  const TrainConfig c = parse(kSft);
  EXPECT_EQ(c.mode, TrainMode::kSft);
  EXPECT_EQ(c.model.path, fs::path("/models/tiny"));
  EXPECT_FALSE(c.model.from_scratch());
  EXPECT_EQ(c.base_format, BaseFormat::kBf16);
  EXPECT_EQ(c.precision, GemmPrecision::kExact);
  EXPECT_EQ(c.fp8_scale_format, ScaleFormat::kFp32);
  EXPECT_EQ(c.lora.rank, 8);
  EXPECT_EQ(c.lora.alpha, 16);
  EXPECT_FALSE(c.lora.rslora);
  EXPECT_EQ(c.lora.dropout, 0);
  EXPECT_EQ(c.lora.targets, std::vector<std::string>{"all-linear"});
  EXPECT_EQ(c.lora.target_regex, "");
  EXPECT_EQ(c.lora.seed, 0u);
  EXPECT_TRUE(c.qat.enabled);
  EXPECT_EQ(c.qat.scale_format, ScaleFormat::kFp32);
  EXPECT_TRUE(c.qat.quantize_activations);
  EXPECT_EQ(c.data.train, fs::path("/data/train.jsonl"));
  EXPECT_TRUE(c.data.eval.empty());
  EXPECT_EQ(c.data.seq_len, 128);
  EXPECT_EQ(c.data.batch_size, 1);
  EXPECT_TRUE(c.data.pack);
  EXPECT_TRUE(c.data.shuffle);
  EXPECT_EQ(c.data.max_length, 128);  // = seq_len
  EXPECT_EQ(c.data.on_overflow, OverflowPolicy::kDrop);
  EXPECT_EQ(c.optim.lr, 1e-4);
  EXPECT_EQ(c.optim.weight_decay, 0.0);  // sft
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_EQ(c.optim.moments, MomentPrecision::kF32);
  EXPECT_EQ(c.optim.max_grad_norm, 1.0);
  EXPECT_EQ(c.optim.schedule.warmup_steps, 0);
  EXPECT_EQ(c.optim.schedule.decay, LrDecay::kCosine);
  EXPECT_EQ(c.optim.schedule.min_ratio, 0.1);
  EXPECT_EQ(c.steps, 10);
  EXPECT_EQ(c.grad_accum, 1);
  EXPECT_EQ(c.seed, 0u);
  EXPECT_FALSE(c.recompute);
  EXPECT_EQ(c.balancing.bias_update_speed, 0.0);  // sft: the base (routing biases too) is frozen
  EXPECT_EQ(c.eval.every, 0);
  EXPECT_EQ(c.eval.batches, 0);
  EXPECT_EQ(c.checkpoint.every, 0);
  EXPECT_EQ(c.checkpoint.dir, fs::path("/out/checkpoints"));
  EXPECT_EQ(c.checkpoint.keep, 1);
  EXPECT_EQ(c.output.dir, fs::path("/out"));
  EXPECT_EQ(c.output.metrics, "metrics.jsonl");
  EXPECT_EQ(c.metrics_path(), fs::path("/out/metrics.jsonl"));
  EXPECT_EQ(c.log.progress, ProgressMode::kAuto);
  EXPECT_TRUE(c.source.empty());
}

TEST(TrainConfig, PretrainDefaults) {
  const TrainConfig c = parse(kPretrain);
  EXPECT_EQ(c.mode, TrainMode::kPretrain);
  EXPECT_TRUE(c.model.from_scratch());
  EXPECT_EQ(c.model.config, fs::path("/models/tiny/config.json"));
  EXPECT_EQ(c.model.tokenizer, fs::path("/models/tiny"));
  EXPECT_EQ(c.model.init_std, 0.02);
  EXPECT_EQ(c.base_format, BaseFormat::kF32);
  EXPECT_EQ(c.precision, GemmPrecision::kExact);
  EXPECT_FALSE(c.qat.enabled);
  EXPECT_EQ(c.optim.weight_decay, 0.1);
  EXPECT_EQ(c.balancing.bias_update_speed, 0.001);
  EXPECT_EQ(c.optim.lr, 3e-3);

  // Continued pretraining from a model directory.
  const TrainConfig p = parse(kPretrain, {"model={path: /models/other}"});
  EXPECT_FALSE(p.model.from_scratch());
  EXPECT_EQ(p.model.path, fs::path("/models/other"));
  EXPECT_TRUE(p.model.config.empty());
}

TEST(TrainConfig, EveryKeyParsed) {
  const TrainConfig c = parse(R"(
mode: sft
model: {path: m}
base_format: nf4
precision: fp8
fp8_scale_format: ue8m0
lora: {rank: 16, alpha: 32, rslora: true, dropout: 0.1, targets: [q_a_proj, o_proj], seed: 7}
qat: {enabled: false, scale_format: ue8m0, quantize_activations: false}
data: {train: a.jsonl, eval: b.jsonl, seq_len: 256, batch_size: 4, pack: false, shuffle: false,
       max_length: 200, on_overflow: truncate}
optim:
  lr: 2e-4
  weight_decay: 0.05
  beta1: 0.8
  beta2: 0.99
  eps: 1e-6
  moments: bf16
  max_grad_norm: 0
  schedule: {warmup_steps: 5, decay: linear, min_ratio: 0}
steps: 50
grad_accum: 3
seed: 18446744073709551615
recompute: true
balancing: {bias_update_speed: 0.002}
eval: {every: 10, batches: 2}
checkpoint: {every: 25, dir: ckpt, keep: 3}
output: {dir: out, metrics: m.jsonl}
log: {progress: off}
)");
  EXPECT_EQ(c.model.path, fs::path("/base/m"));
  EXPECT_EQ(c.base_format, BaseFormat::kNf4);
  EXPECT_EQ(c.precision, GemmPrecision::kFp8);
  EXPECT_EQ(c.fp8_scale_format, ScaleFormat::kUe8m0);
  EXPECT_EQ(c.lora.rank, 16);
  EXPECT_EQ(c.lora.alpha, 32);
  EXPECT_TRUE(c.lora.rslora);
  EXPECT_EQ(c.lora.dropout, 0.1);
  EXPECT_EQ(c.lora.targets, (std::vector<std::string>{"q_a_proj", "o_proj"}));
  EXPECT_EQ(c.lora.seed, 7u);
  EXPECT_FALSE(c.qat.enabled);
  EXPECT_EQ(c.qat.scale_format, ScaleFormat::kUe8m0);
  EXPECT_FALSE(c.qat.quantize_activations);
  EXPECT_EQ(c.data.train, fs::path("/base/a.jsonl"));
  EXPECT_EQ(c.data.eval, fs::path("/base/b.jsonl"));
  EXPECT_EQ(c.data.seq_len, 256);
  EXPECT_EQ(c.data.batch_size, 4);
  EXPECT_FALSE(c.data.pack);
  EXPECT_FALSE(c.data.shuffle);
  EXPECT_EQ(c.data.max_length, 200);
  EXPECT_EQ(c.data.on_overflow, OverflowPolicy::kTruncate);
  EXPECT_EQ(c.optim.lr, 2e-4);
  EXPECT_EQ(c.optim.weight_decay, 0.05);
  EXPECT_EQ(c.optim.beta1, 0.8);
  EXPECT_EQ(c.optim.beta2, 0.99);
  EXPECT_EQ(c.optim.eps, 1e-6);
  EXPECT_EQ(c.optim.moments, MomentPrecision::kBF16);
  EXPECT_EQ(c.optim.max_grad_norm, 0);
  EXPECT_EQ(c.optim.schedule.warmup_steps, 5);
  EXPECT_EQ(c.optim.schedule.decay, LrDecay::kLinear);
  EXPECT_EQ(c.optim.schedule.min_ratio, 0);
  EXPECT_EQ(c.steps, 50);
  EXPECT_EQ(c.grad_accum, 3);
  EXPECT_EQ(c.seed, UINT64_MAX);
  EXPECT_TRUE(c.recompute);
  EXPECT_EQ(c.balancing.bias_update_speed, 0.002);
  EXPECT_EQ(c.eval.every, 10);
  EXPECT_EQ(c.eval.batches, 2);
  EXPECT_EQ(c.checkpoint.every, 25);
  EXPECT_EQ(c.checkpoint.dir, fs::path("/base/ckpt"));  // relative to the file, not to output.dir
  EXPECT_EQ(c.checkpoint.keep, 3);
  EXPECT_EQ(c.output.dir, fs::path("/base/out"));
  EXPECT_EQ(c.metrics_path(), fs::path("/base/out/m.jsonl"));
  EXPECT_EQ(c.log.progress, ProgressMode::kOff);
}

TEST(TrainConfig, LoraSeedDefaultsToSeedAndRegexReplacesTargets) {
  const TrainConfig c = parse(kSft, {"seed=42", "lora.target_regex=.*\\.(q_a|kv_a)_proj"});
  EXPECT_EQ(c.lora.seed, 42u);
  EXPECT_EQ(c.lora.target_regex, ".*\\.(q_a|kv_a)_proj");
  EXPECT_TRUE(c.lora.targets.empty());
  // A single name is a list of one.
  EXPECT_EQ(parse(kSft, {"lora.targets=kv_b_proj"}).lora.targets, std::vector<std::string>{"kv_b_proj"});
}

TEST(TrainConfig, NullIsAbsent) {
  const TrainConfig c = parse(kSft + "eval:\nlora: ~\nrecompute: null\n");
  EXPECT_EQ(c.eval.every, 0);
  EXPECT_EQ(c.lora.rank, 8);
  EXPECT_FALSE(c.recompute);
  // --set into a section that is empty in the file.
  EXPECT_EQ(parse(kSft + "eval:\n", {"eval.every=5"}).eval.every, 5);
}

TEST(TrainConfig, RelativePathsResolveAgainstTheFileAndOverridesAgainstTheWorkingDirectory) {
  test::TempDir tmp;
  const fs::path file = tmp.path() / "sub" / "run.yaml";
  write(file, R"(mode: sft
model: {path: ../models/tiny}
data: {train: data/train.jsonl, eval: /abs/eval.jsonl, seq_len: 32}
optim: {lr: 0.001}
steps: 5
output: {dir: ./out}
)");
  const TrainConfig c = load_train_config(file, {"checkpoint.dir=ck"});
  EXPECT_EQ(c.source, file);
  EXPECT_EQ(c.model.path, tmp.path() / "models" / "tiny");
  EXPECT_EQ(c.data.train, tmp.path() / "sub" / "data" / "train.jsonl");
  EXPECT_EQ(c.data.eval, fs::path("/abs/eval.jsonl"));
  EXPECT_EQ(c.output.dir, tmp.path() / "sub" / "out");
  EXPECT_EQ(c.checkpoint.dir, (fs::current_path() / "ck").lexically_normal());
  // A section replaced as a whole on the command line: its paths come from the command line too.
  const TrainConfig o = load_train_config(file, {"model={path: m}"});
  EXPECT_EQ(o.model.path, (fs::current_path() / "m").lexically_normal());
  // Relative to a relative file name.
  struct InDir {  // changes the working directory for its lifetime
    fs::path old = fs::current_path();
    explicit InDir(const fs::path& p) { fs::current_path(p); }
    ~InDir() { fs::current_path(old); }
  };
  TrainConfig r;
  {
    InDir in(tmp.path());
    r = load_train_config("sub/run.yaml");
  }
  EXPECT_EQ(r.data.train, tmp.path() / "sub" / "data" / "train.jsonl");
}

// ---------------------------------------------------------------------------------------------
// Overrides

TEST(TrainConfig, Overrides) {
  const TrainConfig c =
      parse(kSft, {"optim.lr=3e-4", "lora.targets=[q_a_proj,o_proj]", "lora.rank=4",
                   "optim.schedule.decay=constant", "data.eval=/e.jsonl", "base_format=fp8", "lora.rank=32"});
  EXPECT_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.lora.targets, (std::vector<std::string>{"q_a_proj", "o_proj"}));
  EXPECT_EQ(c.lora.rank, 32);  // the last one wins
  EXPECT_EQ(c.optim.schedule.decay, LrDecay::kConstant);
  EXPECT_EQ(c.data.eval, fs::path("/e.jsonl"));
  EXPECT_EQ(c.base_format, BaseFormat::kFp8);
  // An empty value unsets a key (back to its default); a required key then is missing.
  EXPECT_TRUE(parse(kSft, {"data.eval=/e", "data.eval="}).data.eval.empty());
  expect_invalid_set({"optim.lr="}, {"missing required key 'optim.lr'"});
  // A section given as a flow map; the file's other keys of that section are replaced with it.
  const TrainConfig s = parse(kSft, {"optim={lr: 0.5, moments: bf16}"});
  EXPECT_EQ(s.optim.lr, 0.5);
  EXPECT_EQ(s.optim.moments, MomentPrecision::kBF16);
  // Values that hold '=' or ':' are kept whole.
  EXPECT_EQ(parse(kSft, {"lora.target_regex=a=b:c"}).lora.target_regex, "a=b:c");
  // Overrides also apply to an empty document.
  const TrainConfig e = parse("", {"mode=sft", "model.path=/m", "data.train=/t", "data.seq_len=8", "optim.lr=1",
                                   "steps=1", "output.dir=/o"});
  EXPECT_EQ(e.data.seq_len, 8);
}

TEST(TrainConfig, OverrideErrors) {
  expect_invalid_set({"optim.lr"}, {"--set optim.lr: expected KEY=VALUE"});
  expect_invalid_set({"=3"}, {"expected KEY=VALUE"});
  expect_invalid_set({"optim.lrr=1"}, {"--set optim.lrr=1: unknown key 'optim.lrr'; did you mean 'optim.lr'?"});
  expect_invalid_set({"optimizer.lr=1"}, {"unknown key 'optimizer'", "did you mean 'optim'?"});
  expect_invalid_set({"learning_rate=1"}, {"unknown key 'learning_rate'", "did you mean 'optim.lr'?"});
  expect_invalid_set({"optim.lr.x=1"}, {"'optim.lr' is a value, not a section"});
  expect_invalid_set({"lora.targets=[a, b"}, {"--set lora.targets=[a, b: malformed value"});
  expect_error(kSft + "lora: 5\n", {"lora.rank=2"}, ErrorKind::kInvalidArgument,
               {"'lora' in the file is '5', not a section"});
  // Type errors in an override name the --set.
  expect_invalid_set({"optim.lr=fast"}, {"optim.lr: expected a number, got 'fast' (--set optim.lr=fast)"});
  expect_invalid_set({"lora={rank: x}"}, {"lora.rank: expected an integer, got 'x' (--set lora={rank: x})"});
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(TrainConfig, WrongTypeNamesKeyValueAndLocation) {
  const std::string yaml = R"(mode: sft
model:
  path: m
data:
  train: t.jsonl
optim:
  lr: fast
data2: 1
)";
  // The type error comes after the unknown key check: a file with both reports the unknown key.
  expect_invalid(yaml, {"unknown key 'data2' (config.yaml:8:1)"});
  const std::string ok_keys = R"(mode: sft
model:
  path: m
data:
  train: t.jsonl
optim:
  lr: fast
steps: 3
output: {dir: o}
data: {seq_len: 4}
)";
  // Duplicate section, reported with both places.
  expect_invalid(ok_keys, {"duplicate key 'data' (config.yaml:10:1); first given at 4:1"});
  const std::string typed = R"(mode: sft
model:
  path: m
data:
  train: t.jsonl
  seq_len: 4
optim:
  lr: fast
steps: 3
output: {dir: o}
)";
  expect_invalid(typed, {"optim.lr: expected a number, got 'fast' (config.yaml:8:7)"});
  expect_invalid(sft_with("grad_accum: 2.5"),
                 {"grad_accum: expected an integer, got '2.5' (config.yaml:12:13)"});
  expect_invalid(sft_with("grad_accum: '2'"), {"grad_accum: expected an integer, got the quoted string '2'"});
  expect_invalid(sft_with("grad_accum: 99999999999999999999"),
                 {"grad_accum: 99999999999999999999 is out of range"});
  expect_invalid(sft_with("seed: -1"), {"seed: expected a non-negative integer, got '-1'"});
  expect_invalid(sft_with("recompute: yes"), {"recompute: expected true or false, got 'yes'"});
  expect_invalid(sft_with("recompute: [true]"), {"recompute: expected true or false, got a list"});
  expect_invalid(sft_with("balancing: {bias_update_speed: .nan}"),
                 {"balancing.bias_update_speed: expected a number"});
  expect_invalid(sft_with("balancing: {bias_update_speed: inf}"), {"expected a finite number, got 'inf'"});
  expect_invalid(sft_with("lora: {targets: {a: 1}}"), {"lora.targets: expected a list of strings, got a map"});
  expect_invalid(sft_with("lora: {targets: [[a]]}"),
                 {"lora.targets: expected a list of strings, got a list in it"});
  expect_invalid(sft_with("lora: {targets: []}"), {"lora.targets: the list is empty"});
  expect_invalid(sft_with("log: [progress]"),
                 {"log: expected a section (a map of keys), got a list (config.yaml:12:6)"});
  expect_invalid_set({"output.metrics=[a]"},
                     {"output.metrics: expected a string, got a list (--set output.metrics=[a])"});
  expect_invalid("- mode\n- sft\n",
                 {"a training configuration is a map of keys", "got a list (config.yaml:1:1)"});
  expect_invalid(sft_with("[a]: 1"), {"top level: a key must be a name, got a list"});
  expect_invalid(sft_with("<<: {steps: 3}"), {"YAML merge keys ('<<') are not supported (config.yaml:12:1)"});
  // Anchors and aliases are plain YAML.
  EXPECT_EQ(parse("mode: sft\nmodel: {path: &p /m}\ndata: {train: *p, seq_len: 4}\noptim: {lr: 1}\nsteps: 1\n"
                  "output: {dir: *p}\n")
                .data.train,
            fs::path("/m"));
}

TEST(TrainConfig, WrongTypeInAFileNamesTheFile) {
  test::TempDir tmp;
  const fs::path file = tmp.path() / "config.yaml";
  write(file, R"(mode: sft
model:
  path: m
data: {train: t.jsonl, seq_len: 8}
output: {dir: o}
optim:
  lr: fast
steps: 3
)");
  const Error e = error_of([&] { load_train_config(file); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(e.message().find("optim.lr: expected a number, got 'fast' (" + file.string() + ":7:7)"),
            std::string::npos)
      << e.what();
}

TEST(TrainConfig, UnknownKeysAreNamedLocatedAndCorrected) {
  expect_invalid(sft_with("optim2: 1"), {"unknown key 'optim2' (config.yaml:12:1); did you mean 'optim'?"});
  expect_invalid(kSft + "lora:\n  rnak: 4\n",
                 {"unknown key 'lora.rnak' (config.yaml:13:3); did you mean 'lora.rank'?"});
  expect_invalid(kSft + "optim2:\n  schedule:\n    warmup: 4\n", {"unknown key 'optim2'"});
  expect_invalid(R"(mode: sft
model: {path: m}
data: {train: t, seq_len: 8}
optim:
  lr: 1
  schedule: {warmup_step: 3}
steps: 3
output: {dir: o}
)",
                 {"unknown key 'optim.schedule.warmup_step' (config.yaml:6:14); did you mean "
                  "'optim.schedule.warmup_steps'?"});
  // A key of another section, a name other trainers use, a far-off name.
  expect_invalid(sft_with("lr: 3"), {"unknown key 'lr'", "did you mean 'optim.lr'?"});
  expect_invalid(sft_with("learning_rate: 3"), {"did you mean 'optim.lr'?"});
  expect_invalid(sft_with("gradient_accumulation_steps: 3"), {"did you mean 'grad_accum'?"});
  expect_invalid(sft_with("lora: {r: 3}"), {"unknown key 'lora.r'", "did you mean 'lora.rank'?"});
  expect_invalid(sft_with("optim2: {warmup_steps: 3}"), {"unknown key 'optim2'"});
  expect_invalid(
      "mode: sft\noptim:\n  warmup_steps: 3\n",
      {"unknown key 'optim.warmup_steps' (config.yaml:3:3)", "did you mean 'optim.schedule.warmup_steps'?"});
  // The hint lists the valid keys of the section.
  const Error e = error_of([] { parse(sft_with("qat: {enable: true}")); });
  EXPECT_NE(e.message().find("did you mean 'qat.enabled'?"), std::string::npos) << e.what();
  EXPECT_NE(e.hint().find("valid keys of qat: enabled, scale_format, quantize_activations"), std::string::npos)
      << e.hint();
  // Keys are case-sensitive.
  expect_invalid(sft_with("Steps: 3"), {"unknown key 'Steps'", "did you mean 'steps'?"});
}

TEST(TrainConfig, MissingRequiredKeys) {
  expect_invalid("", {"missing required key 'mode'"});
  expect_invalid("steps: 3\n", {"missing required key 'mode'"});
  expect_invalid("mode: sft\n", {"missing required key 'model.path'"});
  expect_invalid("mode: pretrain\n", {"missing required key 'model.path' (or model.config + model.tokenizer"});
  const std::string no_data = "mode: sft\nmodel: {path: m}\n";
  expect_invalid(no_data, {"missing required key 'data.train' (config.yaml)"});
  expect_invalid(no_data + "data:\n  train: t\n", {"missing required key 'data.seq_len' (config.yaml:4:3)"});
  const std::string no_steps = no_data + "data: {train: t, seq_len: 8}\n";
  expect_invalid(no_steps, {"missing required key 'steps'"});
  expect_invalid(no_steps + "steps: 2\n", {"missing required key 'optim.lr'"});
  expect_invalid(no_steps + "steps: 2\noptim: {lr: 1}\n", {"missing required key 'output.dir'"});
  const Error e = error_of([] { parse("mode: sft\n"); });
  EXPECT_NE(e.hint().find("--set model.path=VALUE"), std::string::npos) << e.hint();
}

TEST(TrainConfig, NonPositiveValues) {
  expect_invalid_set({"optim.lr=0"}, {"optim.lr: must be > 0, got 0 (--set optim.lr=0)"});
  expect_invalid_set({"optim.lr=-1e-4"}, {"optim.lr: must be > 0, got -0.0001"});
  expect_invalid_set({"steps=0"}, {"steps: must be > 0, got 0"});
  expect_invalid_set({"steps=-5"}, {"steps: must be > 0, got -5"});
  expect_invalid_set({"data.seq_len=0"}, {"data.seq_len: must be > 0, got 0"});
  expect_invalid_set({"data.batch_size=0"}, {"data.batch_size: must be > 0, got 0"});
  expect_invalid_set({"data.batch_size=-2"}, {"data.batch_size: must be > 0, got -2"});
  expect_invalid_set({"lora.rank=0"}, {"lora.rank: must be >= 1, got 0"});
  expect_invalid_set({"lora.rank=-8"}, {"lora.rank: must be >= 1, got -8"});
  expect_invalid(sft_with("lora:\n  rank: 0"), {"lora.rank: must be >= 1, got 0 (config.yaml:13:9)"});
  // Other ranges.
  expect_invalid_set({"lora.alpha=0"}, {"lora.alpha: must be > 0"});
  expect_invalid_set({"qat.enabled=false", "lora.dropout=1"}, {"lora.dropout: must be in [0, 1)"});
  expect_invalid_set({"grad_accum=0"}, {"grad_accum: must be >= 1"});
  expect_invalid_set({"optim.weight_decay=-0.1"}, {"optim.weight_decay: must be >= 0"});
  expect_invalid_set({"optim.beta1=1"}, {"optim.beta1: must be in [0, 1)"});
  expect_invalid_set({"optim.beta2=-0.5"}, {"optim.beta2: must be in [0, 1)"});
  expect_invalid_set({"optim.eps=0"}, {"optim.eps: must be > 0"});
  expect_invalid_set({"optim.max_grad_norm=-1"}, {"optim.max_grad_norm: must be >= 0"});
  expect_invalid_set({"optim.schedule.warmup_steps=11"},
                     {"optim.schedule.warmup_steps: must be in [0, steps = 10], got 11"});
  expect_invalid_set({"optim.schedule.min_ratio=1.5"}, {"optim.schedule.min_ratio: must be in [0, 1]"});
  expect_invalid_set({"balancing.bias_update_speed=-1"}, {"balancing.bias_update_speed: must be >= 0"});
  expect_invalid_set({"eval.every=-1"}, {"eval.every: must be >= 0"});
  expect_invalid_set({"eval.batches=-1"}, {"eval.batches: must be >= 0"});
  expect_invalid_set({"checkpoint.every=-1"}, {"checkpoint.every: must be >= 0"});
  expect_invalid_set({"checkpoint.keep=0"}, {"checkpoint.keep: must be >= 1"});
  expect_invalid_set({"data.max_length=129"}, {"data.max_length: must be in [1, data.seq_len = 128], got 129"});
  expect_invalid_set({"data.max_length=0"}, {"data.max_length: must be in [1, data.seq_len = 128], got 0"});
  expect_invalid_set({"output.metrics=/abs.jsonl"},
                     {"output.metrics: must be a relative file name inside output.dir"});
  expect_invalid_set({"output.metrics=../up.jsonl"}, {"output.metrics: must be a relative file name"});
  expect_invalid_set({"data.train=''"}, {"data.train: empty path"});
  expect_invalid_set({"lora.target_regex=''"}, {"lora.target_regex: empty regular expression"});
  expect_error(kPretrain, {"model.init_std=0"}, ErrorKind::kInvalidArgument, {"model.init_std: must be > 0"});
}

TEST(TrainConfig, InvalidEnumValuesListTheValidOnes) {
  expect_invalid(sft_with("precision: fp16"),
                 {"precision: invalid value 'fp16'; expected one of: fp32, bf16, fp8 (config.yaml:12:12)"});
  expect_invalid_set({"mode=finetune"}, {"mode: invalid value 'finetune'; expected one of: pretrain, sft"});
  expect_invalid_set({"base_format=int4"},
                     {"base_format: invalid value 'int4'; expected one of: f32, bf16, fp8, nf4"});
  expect_invalid_set({"qat.scale_format=e8m0"}, {"expected one of: fp32, ue8m0"});
  expect_invalid_set({"fp8_scale_format=e8m0"},
                     {"fp8_scale_format: invalid value 'e8m0'; expected one of: fp32, ue8m0"});
  expect_invalid_set({"data.on_overflow=cut"}, {"expected one of: drop, truncate"});
  expect_invalid_set({"optim.moments=fp16"},
                     {"optim.moments: invalid value 'fp16'; expected one of: fp32, bf16"});
  expect_invalid_set({"optim.schedule.decay=step"}, {"expected one of: cosine, linear, constant"});
  expect_invalid_set({"log.progress=yes"},
                     {"log.progress: invalid value 'yes'; expected one of: auto, on, off"});
  expect_invalid_set({"precision=[fp8]"}, {"precision: expected a string, got a list"});
}

TEST(TrainConfig, RulesBetweenKeys) {
  // pretrain
  expect_error(kPretrain, {"base_format=nf4"}, ErrorKind::kInvalidArgument,
               {"base_format: pretraining trains every weight and keeps them in f32, got 'nf4'"});
  EXPECT_EQ(parse(kPretrain, {"base_format=f32"}).base_format, BaseFormat::kF32);
  expect_error(kPretrain, {"lora.rank=4"}, ErrorKind::kInvalidArgument,
               {"lora: LoRA adapters are for mode: sft, not pretrain (--set lora.rank=4)"});
  expect_error(kPretrain + "lora:\n  rank: 4\n", {}, ErrorKind::kInvalidArgument,
               {"lora: LoRA adapters", "(config.yaml:14:3)"});
  expect_error(kPretrain, {"qat.enabled=true"}, ErrorKind::kInvalidArgument,
               {"qat.enabled: quantization-aware training is for LoRA fine-tuning"});
  EXPECT_FALSE(parse(kPretrain, {"qat.enabled=false"}).qat.enabled);
  expect_error(kPretrain, {"model.tokenizer="}, ErrorKind::kInvalidArgument,
               {"missing required key 'model.tokenizer'"});
  expect_error(kPretrain, {"model.config="}, ErrorKind::kInvalidArgument,
               {"missing required key 'model.config'"});
  expect_error(kPretrain, {"model.path=/m"}, ErrorKind::kInvalidArgument,
               {"model.config: cannot be combined with model.path"});
  // sft
  expect_invalid_set({"model.config=/c.json"}, {"model.config: cannot be combined with model.path"});
  expect_invalid_set({"model.init_std=0.1"}, {"model.init_std: cannot be combined with model.path"});
  expect_invalid_set({"model={config: /c.json, tokenizer: /t}"},
                     {"model.config: only for pretraining from scratch"});
  expect_invalid_set({"lora.target_regex=.*", "lora.targets=[a]"},
                     {"lora.target_regex: cannot be combined with lora.targets"});
  expect_invalid_set({"lora.dropout=0.1"}, {"lora.dropout: must be 0 with QAT"});
  EXPECT_EQ(parse(kSft, {"lora.dropout=0.1", "qat.enabled=false"}).lora.dropout, 0.1);
}

TEST(TrainConfig, MalformedYamlIsAnInvalidFileWithItsPlace) {
  expect_error("mode: sft\noptim: {lr: 1\nsteps: 3\n", {}, ErrorKind::kInvalidFile,
               {"config.yaml:3:", "malformed YAML"});
  expect_error("mode: sft\n  bad: indent\n", {}, ErrorKind::kInvalidFile, {"config.yaml:2:", "malformed YAML"});
  expect_error(kSft + "---\nmode: sft\n", {}, ErrorKind::kInvalidFile, {"2 YAML documents"});
  test::TempDir tmp;
  write(tmp.path() / "bad.yaml", "a: [1, 2\n");
  const Error e = error_of([&] { load_train_config(tmp.path() / "bad.yaml"); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile);
  EXPECT_NE(e.message().find((tmp.path() / "bad.yaml").string() + ":2:1: malformed YAML"), std::string::npos)
      << e.what();
}

TEST(TrainConfig, MissingFile) {
  const Error e = error_of([] { load_train_config("/nonexistent/run.yaml"); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_NE(e.message().find("cannot open training config /nonexistent/run.yaml"), std::string::npos)
      << e.what();
  test::TempDir tmp;
  EXPECT_EQ(error_of([&] { load_train_config(tmp.path()); }).kind(), ErrorKind::kIo);
}

// ---------------------------------------------------------------------------------------------
// JSON, identity, mapping

TEST(TrainConfig, ToJsonRoundTripsAndCoversTheSchema) {
  const std::vector<TrainConfig> configs = {
      parse(kSft, {"data.eval=/e.jsonl", "seed=3"}),
      parse(kSft, {"lora.target_regex=.*_proj", "base_format=nf4", "precision=bf16", "qat.scale_format=ue8m0"}),
      parse(kPretrain, {"precision=fp8", "optim.moments=bf16", "log.progress=on"}),
      parse(kPretrain, {"model={path: /m}", "model.path=/m2"}),
  };
  std::set<std::string> seen;
  std::function<void(const nlohmann::json&, const std::string&)> collect = [&](const nlohmann::json& j,
                                                                               const std::string& prefix) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (it.value().is_object())
        collect(it.value(), key);
      else
        seen.insert(key);
    }
  };
  for (const TrainConfig& c : configs) {
    const nlohmann::json j = c.to_json();
    collect(j, "");
    // JSON is YAML: parsing the dump (from anywhere) gives the same configuration.
    const TrainConfig back = parse_train_config(j.dump(), {}, "/elsewhere");
    EXPECT_EQ(back.to_json(), j) << j.dump(2);
  }
  const std::vector<std::string> keys = train_config_keys();
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()), seen);
  EXPECT_EQ(keys.size(), 49u);
  const nlohmann::json j = configs[0].to_json();
  EXPECT_EQ(j["mode"], "sft");
  EXPECT_EQ(j["model"]["path"], "/models/tiny");
  EXPECT_EQ(j["lora"]["targets"], nlohmann::json::array({"all-linear"}));
  EXPECT_EQ(j["optim"]["schedule"]["decay"], "cosine");
  EXPECT_EQ(j["checkpoint"]["dir"], "/out/checkpoints");
  EXPECT_EQ(j["seed"], 3);
  EXPECT_FALSE(configs[2].to_json().contains("lora"));  // pretraining: no adapters
}

TEST(TrainConfig, IdentityHoldsWhatAResumeMustShare) {
  const nlohmann::json id = parse(kSft, {"data.eval=/e.jsonl"}).identity_json();
  for (const char* k : {"mode", "model", "base_format", "precision", "fp8_scale_format", "lora", "qat", "data",
                        "optim", "steps", "grad_accum", "seed", "balancing"})
    EXPECT_TRUE(id.contains(k)) << k;
  for (const char* k : {"eval", "checkpoint", "output", "log", "recompute"}) EXPECT_FALSE(id.contains(k)) << k;
  EXPECT_FALSE(id["data"].contains("eval"));
  EXPECT_TRUE(id["data"].contains("seq_len"));
  // Unchanged by what may differ on resume; changed by what may not.
  for (const char* same : {"output.dir=/elsewhere", "eval.every=5", "checkpoint.keep=4", "log.progress=off",
                           "recompute=true", "data.eval=/other.jsonl"})
    EXPECT_EQ(parse(kSft, {"data.eval=/e.jsonl", same}).identity_json(), id) << same;
  for (const char* differs :
       {"optim.lr=1e-3", "lora.rank=4", "qat.enabled=false", "base_format=fp8", "seed=1", "data.batch_size=2",
        "data.seq_len=64", "steps=11", "grad_accum=2", "precision=fp8", "fp8_scale_format=ue8m0",
        "model.path=/other", "optim.schedule.warmup_steps=1"})
    EXPECT_NE(parse(kSft, {"data.eval=/e.jsonl", differs}).identity_json(), id) << differs;
}

TEST(TrainConfig, MapsToTheLibraryOptionStructs) {
  const TrainConfig c =
      parse(kSft, {"lora={rank: 4, alpha: 8, rslora: true, targets: [o_proj], seed: 9}",
                   "qat.scale_format=ue8m0", "qat.quantize_activations=false",
                   "optim={lr: 2e-4, weight_decay: 0.01, beta1: 0.8, beta2: 0.9, eps: 1e-7, "
                   "moments: bf16, schedule: {warmup_steps: 3, decay: linear, min_ratio: 0.2}}",
                   "data.batch_size=3", "data.pack=false", "data.shuffle=false", "seed=11",
                   "data.max_length=100", "data.on_overflow=truncate"});
  const LoraConfig l = c.lora_config();
  EXPECT_EQ(l.rank, 4);
  EXPECT_EQ(l.alpha, 8);
  EXPECT_TRUE(l.rslora);
  EXPECT_EQ(l.targets, std::vector<std::string>{"o_proj"});
  EXPECT_EQ(l.target_regex, "");
  EXPECT_EQ(l.seed, 9u);
  const QatConfig q = c.qat_config();
  EXPECT_TRUE(q.enabled);
  EXPECT_EQ(q.weight_scale_format, ScaleFormat::kUe8m0);
  EXPECT_FALSE(q.quantize_activations);
  const AdamWConfig a = c.adamw_config();
  EXPECT_EQ(a.beta1, 0.8);
  EXPECT_EQ(a.beta2, 0.9);
  EXPECT_EQ(a.eps, 1e-7);
  EXPECT_EQ(a.weight_decay, 0.01);
  EXPECT_EQ(a.moments, MomentPrecision::kBF16);
  const LrSchedule s = c.lr_schedule();
  EXPECT_EQ(s.peak, 2e-4);
  EXPECT_EQ(s.warmup_steps, 3);
  EXPECT_EQ(s.total_steps, 10);
  EXPECT_EQ(s.decay, LrDecay::kLinear);
  EXPECT_EQ(s.min_ratio, 0.2);
  const BatcherOptions b = c.batcher_options();
  EXPECT_EQ(b.batch_size, 3);
  EXPECT_EQ(b.seq_len, 128);
  EXPECT_EQ(b.mode, BatchMode::kPad);
  EXPECT_FALSE(b.shuffle);
  EXPECT_EQ(b.seed, 11u);
  const DatasetOptions d = c.dataset_options();
  EXPECT_EQ(d.max_length, 100);
  EXPECT_EQ(d.on_overflow, OverflowPolicy::kTruncate);
  EXPECT_EQ(parse(kSft).batcher_options().mode, BatchMode::kPack);
}

TEST(TrainConfig, CheckPaths) {
  test::TempDir tmp;
  const std::string yaml = R"(mode: sft
model: {path: model}
data: {train: data/train.jsonl, eval: data/eval.jsonl, seq_len: 8}
optim: {lr: 1}
steps: 1
output: {dir: out}
)";
  auto check = [&] { check_train_config_paths(parse_train_config(yaml, {}, tmp.path())); };
  auto expect_missing = [&](const std::string& part) {
    const Error e = error_of(check);
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(e.message().find(part), std::string::npos) << e.what();
  };
  expect_missing("model.path: model directory not found: " + (tmp.path() / "model").string());
  fs::create_directories(tmp.path() / "model");
  expect_missing("model.path: config.json not found");
  write(tmp.path() / "model" / "config.json", "{}");
  expect_missing("data.train: training data not found");
  write(tmp.path() / "data" / "train.jsonl", "");
  expect_missing("data.eval: evaluation data not found");
  write(tmp.path() / "data" / "eval.jsonl", "");
  EXPECT_NO_THROW(check());
  // From scratch: config.json and the tokenizer directory.
  const TrainConfig p = parse_train_config(
      "mode: pretrain\nmodel: {config: model/config.json, tokenizer: tok}\ndata: {train: data/train.jsonl, "
      "seq_len: 8}\noptim: {lr: 1}\nsteps: 1\noutput: {dir: out}\n",
      {}, tmp.path());
  EXPECT_NE(error_of([&] { check_train_config_paths(p); })
                .message()
                .find("model.tokenizer: tokenizer.json not found"),
            std::string::npos);
  write(tmp.path() / "tok" / "tokenizer.json", "{}");
  EXPECT_NO_THROW(check_train_config_paths(p));
}

// ---------------------------------------------------------------------------------------------
// The ready configurations

TEST(TrainConfig, EveryReadyConfigLoads) {
  const fs::path dir = (fs::path(QAFT_TEST_DATA_DIR) / ".." / ".." / "configs").lexically_normal();
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 8u) << dir;
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    const std::string name = f.stem().string();
    const TrainConfig c = load_train_config(f);
    EXPECT_EQ(c.source, f);
    EXPECT_LE(c.steps, 50);  // tiny
    EXPECT_EQ(c.data.train, dir / "tiny-data" / "train.jsonl");
    EXPECT_EQ(c.output.dir, dir / "runs" / name);
    const auto has = [&](const std::string& token) { return name.find(token) != std::string::npos; };
    if (name.rfind("sft-", 0) == 0) {
      EXPECT_EQ(c.mode, TrainMode::kSft);
      EXPECT_EQ(c.model.path, dir / "tiny-model");
      EXPECT_EQ(c.qat.enabled, !has("-noqat-"));
      const std::string base = name.substr(name.rfind('-') + 1);
      EXPECT_EQ(c.base_format, parse_train_config(kSft, {"base_format=" + base}).base_format);
      EXPECT_EQ(c.precision, GemmPrecision::kExact);
    } else {
      ASSERT_EQ(name.rfind("pretrain-", 0), 0u) << "a config is named sft-* or pretrain-*";
      EXPECT_EQ(c.mode, TrainMode::kPretrain);
      EXPECT_TRUE(c.model.from_scratch());
      EXPECT_EQ(c.model.config, dir / "tiny-model" / "config.json");
      EXPECT_EQ(c.model.tokenizer, dir / "tiny-model");
      EXPECT_EQ(train_precision_name(c.precision), name.substr(name.rfind('-') + 1));
    }
    // As configs/README.md says to run them: the tiny model and data elsewhere.
    const TrainConfig o = load_train_config(
        f, {"model.path=/tmp/tiny/model", "model.config=", "model.tokenizer=", "model.init_std=",
            "data.train=/tmp/tiny/train.jsonl", "data.eval=", "output.dir=/tmp/run"});
    EXPECT_EQ(o.model.path, fs::path("/tmp/tiny/model"));
    EXPECT_EQ(o.checkpoint.dir, fs::path("/tmp/run/checkpoints"));
    EXPECT_TRUE(o.data.eval.empty());
  }
}
