// `qaft export` (see export.h).
#include "serve/export.h"

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/staged_directory.h"
#include "model/config.h"
#include "serve/deployment.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace qaft {

namespace {

constexpr ExportFormat kAllFormats[] = {ExportFormat::kFp8, ExportFormat::kBf16, ExportFormat::kPeft};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "check that the file exists and is readable", "cannot open {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  QAFT_CHECK_HINT(!in.bad(), ErrorKind::kIo, "check that the file is readable", "cannot read {}", path.string());
  return ss.str();
}

// Copies src to dst byte for byte, atomically.
void copy_file_atomic(const fs::path& src, const fs::path& dst) { write_file_atomic(dst.string(), read_file(src)); }

// Refuses an output that is, or contains, a directory the export reads (--force would delete it).
void check_output_spares(const std::string& output, const std::string& source, const char* what) {
  if (source.empty()) return;
  auto normal = [](const std::string& dir) {
    fs::path p = fs::weakly_canonical(fs::absolute(dir));
    return p.has_filename() ? p : p.parent_path();  // "out/" → "out"
  };
  const fs::path out = normal(output), src = normal(source);
  const auto [o, s] = std::mismatch(out.begin(), out.end(), src.begin(), src.end());
  QAFT_CHECK_HINT(o != out.end(), ErrorKind::kInvalidArgument, "choose an output directory outside the sources",
                  "output directory {} is or contains the {} directory {}", out.string(), what, src.string());
}

// The files of a model directory that describe its tokenizer and code, besides the weights.
std::vector<std::string> tokenizer_and_code_files(const std::string& model_dir) {
  std::vector<std::string> files = {"tokenizer.json"};  // Tokenizer::load needs it (the deployment loaded it)
  for (const char* optional : {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    if (fs::exists(fs::path(model_dir) / optional)) files.emplace_back(optional);
  for (const fs::directory_entry& e : fs::directory_iterator(model_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.ends_with(".py") && (name.starts_with("configuration_") || name.starts_with("modeling_")))
      files.push_back(name);
  }
  return files;
}

void list_output(ExportReport& r) {
  r.files.clear();
  r.bytes = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(r.output_dir)) {
    r.files.push_back(e.path().filename().string());
    r.bytes += e.file_size();
  }
  std::sort(r.files.begin(), r.files.end());
}

}  // namespace

std::string_view export_format_name(ExportFormat f) {
  switch (f) {
    case ExportFormat::kFp8: return "fp8";
    case ExportFormat::kBf16: return "bf16";
    case ExportFormat::kPeft: return "peft";
  }
  return "?";
}

ExportFormat parse_export_format(std::string_view name) {
  for (ExportFormat f : kAllFormats)
    if (name == export_format_name(f)) return f;
  QAFT_FAIL(ErrorKind::kInvalidArgument, "pass one of fp8, bf16, peft",
            "unknown export format \"{}\"; valid formats: fp8, bf16, peft", name);
}

ExportReport export_model(const ExportOptions& o) {
  Timer timer;
  QAFT_CHECK_HINT(!o.model_dir.empty(), ErrorKind::kInvalidArgument, "pass the base model's directory",
                  "no model directory given");
  QAFT_CHECK_HINT(o.format != ExportFormat::kPeft || !o.adapter_dir.empty(), ErrorKind::kInvalidArgument,
                  "pass --adapter DIR, the PEFT adapter to export",
                  "--format peft exports an adapter, and no --adapter was given");
  QAFT_CHECK_HINT(!o.scale_format || o.format == ExportFormat::kFp8, ErrorKind::kInvalidArgument,
                  "drop --scale-format, or export --format fp8", "--scale-format applies to --format fp8 only, not {}",
                  export_format_name(o.format));
  check_output_spares(o.output_dir, o.model_dir, "model");
  check_output_spares(o.output_dir, o.adapter_dir, "adapter");
  StagedDirectory out(o.output_dir, o.force);  // refuses an existing output before the long work
  const fs::path staging(out.path());

  ExportReport r;
  r.format = o.format;
  r.output_dir = out.target();
  if (o.format == ExportFormat::kPeft) {
    const ModelConfig config = model_config_load(o.model_dir);
    const PeftAdapter adapter = load_peft_adapter(o.adapter_dir, config);  // keys and shapes against the base
    for (const char* file : {"adapter_config.json", "adapter_model.safetensors"})
      copy_file_atomic(fs::path(o.adapter_dir) / file, staging / file);
    r.tensors = static_cast<int64_t>(SafetensorsFile::open((staging / "adapter_model.safetensors").string()).size());
    QAFT_LOG(kInfo, "adapter {} (rank {}, {} modules) checked against {}", o.adapter_dir, adapter.config.rank,
             adapter.targets.size(), o.model_dir);
  } else {
    DeploymentOptions d;
    d.model_dir = o.model_dir;
    d.adapter_dir = o.adapter_dir;
    d.precision = o.format == ExportFormat::kFp8 ? Precision::kFp8 : Precision::kBf16;
    d.scale_format = o.scale_format;
    const std::unique_ptr<Deployment> deployment = Deployment::load(d);  // the live merge `qaft serve` does
    ServingCheckpointOptions w;
    w.max_shard_bytes = o.max_shard_bytes;
    auto absolute = [](const std::string& dir) { return fs::absolute(dir).lexically_normal().string(); };
    w.source = {{"model", absolute(o.model_dir)},
                {"adapter", o.adapter_dir.empty() ? nlohmann::json() : nlohmann::json(absolute(o.adapter_dir))}};
    const ServingCheckpointReport written =
        write_serving_checkpoint(deployment->model(), read_file(fs::path(o.model_dir) / "config.json"), staging.string(), w);
    for (const std::string& file : tokenizer_and_code_files(o.model_dir))
      copy_file_atomic(fs::path(o.model_dir) / file, staging / file);
    const InferenceOptions& io = deployment->model().options();
    r.serving = ServingRecord{io.precision, io.scale_format, io.quantize_activations, w.source};
    r.merge = deployment->model().merge_report();
    r.tensors = written.tensors;
    r.fp8_weights = written.fp8_weights;
    r.f32_not_bf16 = written.f32_not_bf16;
  }
  out.commit();
  list_output(r);
  r.seconds = timer.seconds();
  return r;
}

nlohmann::json ExportReport::to_json() const {
  nlohmann::json j = {{"format", export_format_name(format)}, {"output", output_dir}, {"files", files},
                      {"tensors", tensors},                   {"bytes", bytes},      {"seconds", seconds}};
  if (serving) {
    j["serving"] = serving->to_json();
    j["fp8_weights"] = fp8_weights;
    j["f32_not_bf16"] = f32_not_bf16;
    j["merge"] = {{"linears", merge.linears}, {"merged", merge.merged}, {"kept_fp8", merge.kept_fp8},
                  {"seconds", merge.seconds}};
  }
  return j;
}

std::string ExportReport::to_text() const {
  std::string s = fmt::format("exported {} to {} in {:.2f} s: {} files, {} tensors, {:.1f} MiB\n", export_format_name(format),
                              output_dir, seconds, files.size(), tensors, static_cast<double>(bytes) / (1 << 20));
  if (serving) {
    s += fmt::format("  weights: {}", precision_name(serving->precision));
    if (serving->precision == Precision::kFp8)
      s += fmt::format(" ({} F8_E4M3 weights with {} weight_scale_inv, {})", fp8_weights,
                       scale_format_name(serving->scale_format), serving->quantize_activations ? "served W8A8" : "served W8A16");
    s += fmt::format("; live merge: {} linears, {} with the adapter merged, {} FP8 kept as stored\n", merge.linears,
                     merge.merged, merge.kept_fp8);
    if (f32_not_bf16 > 0)
      s += fmt::format("  {} norm/router/embedding/head tensors written F32 (not exactly BF16)\n", f32_not_bf16);
  }
  for (const std::string& f : files) s += "  " + f + "\n";
  return s;
}

}  // namespace qaft
