// The HTTP server's deployment on a DeepSeek-V3-shaped bench model (bench_infer.cpp's shape: hidden
// 1024, MLA q_lora 384 / kv_lora 256, 64 routed experts top-6 in 8 groups, 2 shared, moe_intermediate
// 256, vocabulary 32000; 4 layers by default):
//   [1] time to live-merge an FP8 base with a rank-16 LoRA adapter on every linear into the FP8
//       serving weights, and the memory of the deployment: serving-weight bytes, the process's
//       resident set with the deployment alone (base and adapter dropped) against before it was
//       built, and the KV cache per token;
//   [2] prefill and decode tokens/s at batch 1 and 8 through the Scheduler (in-process, continuous
//       batching on its engine thread) and through HTTP over loopback (POST /v1/completions with
//       token-id prompts, one client thread per request, non-streamed: what a client of `qaft serve`
//       sees), next to model.step() called directly; the three are measured in turn, round after
//       round, so that they see the same conditions of the shared machine.
// Prefill: B requests of P prompt tokens and max_tokens 1 (one step over B·P rows + one sample).
// Decode: B requests of 16 prompt tokens, timed with max_tokens N + 1 and with max_tokens 1 (the
// best time of each over the rounds); the difference is N decode steps over the batch: decode
// tokens/s = B·N / (t_{N+1} − t_1), N = 64.
// Greedy sampling over the tokenizer's 258 ids (a byte-level tokenizer: the bench model has no
// trained one; sampling cost is the same order as for a full vocabulary argmax), EOS ignored.
// Every figure is the best of its rounds. Run with OMP_WAIT_POLICY=passive on a loaded machine.
//   build/release/bench/bench_serve [--layers N] [--quick]
#include "bench_dsv3_config.h"
#include "bench_util.h"
#include "core/cpu_features.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/utf8.h"
#include "infer/engine.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"
#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <cstring>
#include <string>
#include <thread>

using namespace qaft;
using nlohmann::json;

namespace {

std::string config_json(int64_t layers) { return bench::bench_dsv3_config_json(32000, layers); }

// A byte-level tokenizer (256 byte tokens + <|im_end|>), for decoding the generated ids.
Tokenizer byte_tokenizer() {
  json vocab = json::object();
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    std::string s;
    utf8::append(s, printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++));
    vocab[s] = b;
  }
  const json tj = {{"version", "1.0"},
                   {"added_tokens", {{{"id", 256}, {"content", "<|im_end|>"}, {"special", true}}}},
                   {"normalizer", nullptr},
                   {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                   {"post_processor", nullptr},
                   {"decoder", {{"type", "ByteLevel"}}},
                   {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  return Tokenizer::from_json(tj.dump(), R"({"eos_token": "<|im_end|>"})", "bench bytes");
}

std::vector<int32_t> tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  const CounterRng rng(seed, 1);
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i)) % vocab);
  return t;
}

// Best of `reps` runs, no warm-up runs (bench_util.h).
double best_of(int reps, const std::function<void()>& f) { return bench::bench_best_seconds(f, {0, reps}); }

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// One way to run B requests of (prompt, max_tokens) to the end: through the scheduler or HTTP.
using RunBatch = std::function<void(const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens)>;

// Best (shortest) times of one path at one batch size, over the rounds.
struct Times {
  double prefill = 1e300;  // B × prompt_len tokens, max_tokens 1
  double one = 1e300;      // B × 16 tokens, max_tokens 1
  double many = 1e300;     // B × 16 tokens, max_tokens decode_steps + 1
};

struct Path {
  const char* name;
  RunBatch run;
  Times best[2];  // batch 1, batch 8
};

// Every path measured in turn, round after round, keeping each figure's best: all paths see the same
// machine conditions (the machine is shared).
void measure(std::vector<Path>& paths, int64_t prompt_len, int64_t decode_steps, int64_t vocab, int rounds) {
  const int64_t batches[2] = {1, 8};
  for (int k = 0; k < 2; ++k) {
    const int64_t batch = batches[k];
    std::vector<std::vector<int32_t>> long_prompts, short_prompts;
    for (int64_t b = 0; b < batch; ++b) {
      long_prompts.push_back(tokens(prompt_len, vocab, static_cast<uint64_t>(b)));
      short_prompts.push_back(tokens(16, vocab, static_cast<uint64_t>(100 + b)));
    }
    for (Path& p : paths) p.run(short_prompts, 2);  // warm-up
    for (int r = 0; r < rounds; ++r)
      for (Path& p : paths) {
        Times& t = p.best[k];
        t.prefill = std::min(t.prefill, best_of(1, [&] { p.run(long_prompts, 1); }));
        t.one = std::min(t.one, best_of(1, [&] { p.run(short_prompts, 1); }));
        t.many = std::min(t.many, best_of(1, [&] { p.run(short_prompts, decode_steps + 1); }));
      }
  }
  for (const Path& p : paths)
    for (int k = 0; k < 2; ++k) {
      const Times& t = p.best[k];
      std::printf("  %-24s batch %2lld: prefill %8.0f tokens/s   decode %7.1f tokens/s   (%.1f ms per decode step)\n",
                  p.name, static_cast<long long>(batches[k]), static_cast<double>(batches[k] * prompt_len) / t.prefill,
                  static_cast<double>(batches[k] * decode_steps) / std::max(t.many - t.one, 1e-9),
                  1e3 * (t.many - t.one) / static_cast<double>(decode_steps));
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
  log_set_level(LogLevel::kWarn);
  const int reps = quick ? 1 : 3;
  const int64_t prompt_len = quick ? 64 : 256, decode_steps = quick ? 8 : 64;
  const ModelConfig c = model_config_from_json(config_json(layers), "bench config");
  std::printf("bench_serve: deepseek_v3 bench shape, %lld layers, %.1f M parameters (%.1f M active), %d threads, %s\n",
              static_cast<long long>(layers), static_cast<double>(parameter_count(c)) * 1e-6,
              static_cast<double>(active_parameter_count(c)) * 1e-6, omp_get_max_threads(), cpu_features().summary().c_str());

  // [1] Live merge and memory.
  const int64_t rss_before = resident_memory_bytes();
  std::unique_ptr<Deployment> deployment;
  {
    BaseModel base;
    {
      ParamStore<float> params(model_param_specs(c));
      init_params_random(params, 1, 0.02, true);
      base = freeze_base_model(std::move(params), BaseFormat::kFp8);
    }
    PeftAdapter adapter;
    adapter.config.rank = 16;
    adapter.config.alpha = 32;
    adapter.targets = resolve_lora_targets(c, adapter.config);
    adapter.params = ParamStore<float>(lora_param_specs(adapter.targets));
    CounterRng(3, 0).fill_normal(adapter.params.data(), adapter.params.size(), 0.0f, 0.01f);
    const int64_t base_bytes = base.frozen.bytes() + base.params.size() * 4;
    InferenceOptions o;  // FP8 W8A8, fp32 scales
    InferenceModel model(c, base, &adapter, o);
    const MergeReport& r = model.merge_report();
    std::printf("\n[1] live merge (FP8 base %.0f MiB + LoRA r=16 on every linear -> FP8 E4M3 128x128): %.3f s for %lld "
                "weights (%lld merged, %.2f ms each)\n",
                mib(base_bytes), r.seconds, static_cast<long long>(r.linears), static_cast<long long>(r.merged),
                1e3 * r.seconds / static_cast<double>(std::max<int64_t>(r.linears, 1)));
    deployment = std::make_unique<Deployment>("bench", byte_tokenizer(), std::move(model));
  }  // base and adapter dropped: the deployment owns its serving weights
  const int64_t weight_bytes = deployment->model().weights().bytes();
  const int64_t rss_after = resident_memory_bytes();
  const int64_t kv_per_token = c.num_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4;
  std::printf("    deployment memory: serving weights %.1f MiB (ServingWeights::bytes), resident set %.1f MiB with the "
              "deployment alone (%.1f MiB before it was built, +%.1f MiB), KV cache %.1f KiB per token (MLA latent, "
              "%lld layers)\n",
              mib(weight_bytes), mib(rss_after), mib(rss_before), mib(rss_after - rss_before),
              static_cast<double>(kv_per_token) / 1024, static_cast<long long>(c.num_layers));

  // [2] The engine directly, the scheduler, HTTP. The scheduler and the server each have an
  // engine thread over the same model; only one path runs at a time (each waits for its requests),
  // so the model is never used by two threads at once.
  InferenceModel& m = deployment->model();
  // Greedy over the same 257 decodable ids as the server, so that every path feeds the same tokens
  // (and routes them to the same experts).
  const int64_t sample_vocab = std::min<int64_t>(c.vocab_size, deployment->tokenizer().vocab_size());
  const RunBatch engine = [&](const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens) {
    std::vector<Sequence> seqs(prompts.size(), m.new_sequence());
    std::vector<int32_t> next(prompts.size(), 0);
    std::vector<StepRequest> reqs;
    for (size_t b = 0; b < prompts.size(); ++b) reqs.push_back({&seqs[b], prompts[b], false});
    SamplingParams greedy;
    greedy.temperature = 0;
    for (int64_t s = 0; s < max_tokens; ++s) {
      const auto logits = m.step(reqs);
      for (size_t b = 0; b < prompts.size(); ++b) {
        next[b] = sample_token(std::span<const float>(logits[b].data(), static_cast<size_t>(sample_vocab)), greedy, 0);
        reqs[b] = {&seqs[b], std::span<const int32_t>(&next[b], 1), false};
      }
      if (s + 1 == max_tokens) break;
    }
  };
  Metrics metrics;
  Scheduler sched(m, deployment->tokenizer(), {}, &metrics);
  const RunBatch scheduled = [&](const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens) {
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (const auto& p : prompts) {
      SamplingParams sp;
      sp.temperature = 0;
      sp.max_tokens = max_tokens;
      streams.push_back(sched.submit(p, sp).stream);
    }
    for (auto& s : streams) s->wait();
  };
  ServerOptions so;
  so.port = 0;
  HttpServer server(*deployment, so);
  server.start();
  const int port = server.port();
  const RunBatch http = [&](const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens) {
    std::vector<std::thread> clients;
    for (const auto& p : prompts)
      clients.emplace_back([&, p] {
        httplib::Client cli("127.0.0.1", port);
        cli.set_read_timeout(600, 0);
        const json body = {{"prompt", p}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}};
        const auto r = cli.Post("/v1/completions", body.dump(), "application/json");
        if (!r || r->status != 200) std::fprintf(stderr, "bench_serve: HTTP request failed\n");
      });
    for (auto& t : clients) t.join();
  };
  std::printf("\n[2] prefill: B requests x %lld prompt tokens, max_tokens 1; decode: B x 16 prompt tokens, %lld steps "
              "(best of %d rounds, paths interleaved)\n",
              static_cast<long long>(prompt_len), static_cast<long long>(decode_steps), reps);
  std::vector<Path> paths = {{"model.step() direct", engine, {}},
                             {"Scheduler (in-process)", scheduled, {}},
                             {"HTTP /v1/completions", http, {}}};
  measure(paths, prompt_len, decode_steps, c.vocab_size, reps);
  std::printf("    resident set while serving: %.1f MiB\n", mib(resident_memory_bytes()));
  server.shutdown();
  return 0;
}
