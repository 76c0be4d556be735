// Serving-engine throughput on a DeepSeek-V3-shaped bench model (bench_model.cpp's shape: hidden
// 1024, MLA q_lora 384 / kv_lora 256, 64 routed experts top-6 in 8 groups, 2 shared, moe_intermediate
// 256; fewer layers by default so that the fp32 build fits and runs quickly):
//   - live merge: seconds to build the FP8 serving model from an FP8 base + a rank-16 all-linear LoRA
//     adapter (merge, fake-quant, quantize, pack), per expert;
//   - the block-scaled FP8 GEMM against oneDNN's fp32 GEMM on the same shapes (ratio of times; M = 1,
//     8, 256 rows);
//   - prefill and decode tokens/s at batch 1 and 8 for FP8 (W8A8), BF16 and F32 serving.
// Every figure is the best of 3 runs (the machine is shared). Usage: bench_infer [--layers N] [--quick]
#include "bench_dsv3_config.h"
#include "bench_util.h"
#include "core/cpu_features.h"
#include "core/rng.h"
#include "core/timer.h"
#include "infer/engine.h"
#include "kernels/ops.h"

#include <fmt/format.h>
#include <omp.h>

#include <cstring>
#include <string>

using namespace qaft;

namespace {

std::string config_json(int64_t layers) { return bench::bench_dsv3_config_json(32000, layers); }

// Best of `reps` runs, no warm-up runs (bench_util.h).
double best_of(int reps, const std::function<void()>& f) { return bench::bench_best_seconds(f, {0, reps}); }

std::vector<int32_t> tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  const CounterRng rng(seed, 1);
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i)) % vocab);
  return t;
}

void bench_gemm(bool quick) {
  std::printf("\nblock-scaled FP8 GEMM vs oneDNN fp32 GEMM (same shape, %d threads)\n", omp_get_max_threads());
  std::printf("  %-22s %10s %10s %8s\n", "shape [M x out x in]", "fp8 ms", "fp32 ms", "ratio");
  for (int64_t M : {int64_t{1}, int64_t{8}, int64_t{256}}) {
    for (const auto& shape : {std::pair<int64_t, int64_t>{2816, 1024}, std::pair<int64_t, int64_t>{1024, 2816}}) {
      const int64_t out = shape.first, in = shape.second;
      std::vector<float> x(static_cast<size_t>(M * in)), w(static_cast<size_t>(out * in)), y(static_cast<size_t>(M * out));
      CounterRng(1, 0).fill_normal(x.data(), M * in, 0.0f, 1.0f);
      CounterRng(2, 0).fill_normal(w.data(), out * in, 0.0f, 0.02f);
      const BlockWeight bw = BlockWeight::quantize_e4m3(w.data(), out, in, ScaleFormat::kFp32);
      BlockActivations a;
      const int reps = quick ? 5 : 20;
      const double t8 = best_of(reps, [&] {
        quantize_activations(x.data(), M, in, ScaleFormat::kFp32, a);
        block_gemm(a, bw, y.data());
      });
      const double t32 = best_of(reps, [&] {
        gemm<float>(Trans::kNo, Trans::kYes, M, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
      });
      std::printf("  %-22s %10.3f %10.3f %7.2fx\n", fmt::format("{} x {} x {}", M, out, in).c_str(), t8 * 1e3, t32 * 1e3,
                  t32 / t8);
    }
  }
}

void bench_engine(const ModelConfig& c, const BaseModel& base, Precision p, bool quick) {
  InferenceOptions o;
  o.precision = p;
  Timer build;
  InferenceModel m(c, base, nullptr, o);
  const double build_s = build.seconds();
  const int64_t prompt = quick ? 64 : 256, steps = quick ? 8 : 32;
  const int reps = quick ? 1 : 3;  // best of: the machine is shared
  for (int64_t batch : {int64_t{1}, int64_t{8}}) {
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t b = 0; b < batch; ++b) prompts.push_back(tokens(prompt, c.vocab_size, static_cast<uint64_t>(b)));
    std::vector<Sequence> prefilled;
    const double prefill_s = best_of(reps, [&] {
      prefilled.assign(static_cast<size_t>(batch), m.new_sequence());
      std::vector<StepRequest> reqs;
      for (int64_t b = 0; b < batch; ++b)
        reqs.push_back({&prefilled[static_cast<size_t>(b)], prompts[static_cast<size_t>(b)], false});
      m.step(reqs);
    });
    std::vector<int32_t> next(static_cast<size_t>(batch), 1);
    const double decode_s = best_of(reps, [&] {
      std::vector<Sequence> seqs = prefilled;  // the same cache state every repetition
      std::vector<StepRequest> reqs;
      for (int64_t b = 0; b < batch; ++b)
        reqs.push_back({&seqs[static_cast<size_t>(b)], std::span<const int32_t>(&next[static_cast<size_t>(b)], 1), false});
      for (int64_t s = 0; s < steps; ++s) m.step(reqs);
    });
    std::printf("  %-5s batch %2lld: prefill %7.0f tokens/s (%lld x %lld tokens), decode %6.1f tokens/s (%lld steps)%s\n",
                std::string(precision_name(p)).c_str(), static_cast<long long>(batch),
                static_cast<double>(batch * prompt) / prefill_s, static_cast<long long>(batch),
                static_cast<long long>(prompt), static_cast<double>(batch * steps) / decode_s,
                static_cast<long long>(steps), batch == 1 ? fmt::format("  [build {:.2f} s, weights {:.0f} MB]", build_s,
                                                                        static_cast<double>(m.merge_report().weight_bytes) / 1e6).c_str()
                                                          : "");
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t layers = 4;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--layers") && i + 1 < argc) layers = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
  }
  const ModelConfig c = model_config_from_json(config_json(layers), "bench config");
  std::printf("bench_infer: deepseek_v3 bench shape, %lld layers, %.1f M parameters (%.1f M active), %d threads, %s\n",
              static_cast<long long>(layers), static_cast<double>(parameter_count(c)) * 1e-6,
              static_cast<double>(active_parameter_count(c)) * 1e-6, omp_get_max_threads(),
              cpu_features().summary().c_str());

  ParamStore<float> params(model_param_specs(c));
  init_params_random(params, 1, 0.02, true);
  const BaseModel fp8_base = freeze_base_model(params, BaseFormat::kFp8);

  // Live merge: FP8 base + rank-16 adapter on every linear (random B, as after training).
  PeftAdapter adapter;
  adapter.config.rank = 16;
  adapter.config.alpha = 32;
  adapter.targets = resolve_lora_targets(c, adapter.config);
  adapter.params = ParamStore<float>(lora_param_specs(adapter.targets));
  CounterRng(3, 0).fill_normal(adapter.params.data(), adapter.params.size(), 0.0f, 0.01f);
  InferenceOptions o;
  InferenceModel merged(c, fp8_base, &adapter, o);
  const MergeReport& r = merged.merge_report();
  std::printf("\nlive merge (FP8 base + LoRA r=16 on every linear -> FP8 E4M3 128x128): %.2f s for %lld weights "
              "(%.2f ms each), %.0f MB served\n",
              r.seconds, static_cast<long long>(r.linears), 1e3 * r.seconds / static_cast<double>(r.linears),
              static_cast<double>(r.weight_bytes) / 1e6);

  bench_gemm(quick);
  std::printf("\nengine (no adapter; prefill = one step over the batch's prompts, decode = steps of one token per request)\n");
  for (Precision p : {Precision::kFp8, Precision::kBf16, Precision::kF32}) bench_engine(c, fp8_base, p, quick);
  return 0;
}
