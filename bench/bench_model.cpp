// Training-step throughput of a DeepSeek-V3-shaped MoE model on the CPU (issue 3, item 7):
//   [1] the fp32 GEMM peak of this machine, measured in the same run: gemm<float> 2048³ (NN) with 1
//       and 2 threads, probed at the start, before every timed step and at the end (the best probe
//       is kept, which makes the utilisation figures conservative); every utilisation below is a
//       fraction of the 2-thread peak;
//   [2] forward + backward (Transformer<float>::forward with targets, then backward) of the bench
//       config, best of N after a warm-up: tokens/s and model-FLOPs utilisation (MFU); then the
//       same step with 1 thread (against the 1-thread peak), which shows how much the second core
//       helps — on a busy shared VM it may not;
//   [3] where the step's time goes: the attention, dense FFN, MoE FFN and LM head of the bench
//       model, each timed alone on the same tokens, with the attention core, the grouped expert
//       GEMMs and the shared experts as sub-rows;
//   [4] one MoE layer (moe_forward + moe_backward of the bench model's layer 1) against a dense
//       SwiGLU with intermediate (top_k + n_shared) · moe_intermediate, i.e. the same active FLOPs
//       (target ≤ 1.5×); timed in the same rounds as [3], so both see the same machine conditions;
//   [5] the same step in the independent PyTorch implementation (tests/reference/qaft_torch_ref.py,
//       f32, via bench/bench_model_torch.sh) on a smaller config (2 layers, vocabulary 8000, 1 × 256
//       tokens: the reference-BLAS step of the full config takes minutes), against qaft on that same
//       model directory (same weights and tokens, hence the same routing; both print their loss):
//       torch --threads 2 with OpenBLAS and with the reference BLAS, as asked, and torch --threads 1
//       with OpenBLAS, its fastest setting on a busy 2-core VM (its many small OpenMP regions spin
//       at barriers when the other core is taken); qaft with 2 threads and with 1. Torch's timing is
//       its own (--repeat: best of 2 or 3 with OpenBLAS, 1 run with the reference BLAS), model
//       loading excluded; qaft's steps are timed between the torch runs and its best is kept.
//
//   build/release/bench/bench_model [--quick] [--no-torch]
//     --quick     one timed repetition everywhere and no reference-BLAS torch run
//     --no-torch  skip [5]
//
// Model FLOPs (the usual MFU convention: useful work only; recomputation is not counted):
//   forward  = 2 · P_lin · N  +  L · B · T² · H · (Dqk + Dv)
//     N = B·T tokens. P_lin: the parameters of every linear one token passes through — attention
//     projections, dense MLP, router, shared experts, top_k of the E routed experts (their stacked
//     [E, ·, ·] weights × K/E) and the LM head; not the embedding (a gather), norms or biases.
//     Attention: q·kᵀ and p·v cost 2·T²·H·Dqk and 2·T²·H·Dv per sequence and layer; the causal mask
//     halves both.
//   backward = 2 × forward (the input and the weight gradient of every GEMM).
//   step     = 3 × forward.    MFU = step FLOPs / step seconds / 2-thread GEMM peak.
// Threads: 2 OpenMP threads (omp_set_num_threads) for everything but the 1-thread figures.
// The machines are shared: every figure is the best of its repetitions, and ratios are taken
// between figures of the same run. About 2–3 minutes on a 2-core VM, a third of it in
// init_params_random (single-threaded, not timed) and the reference-BLAS torch step.
#include "bench_dsv3_config.h"
#include "bench_util.h"
#include "core/cpu_features.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/safetensors_index.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/mlp.h"
#include "model/moe.h"
#include "model/transformer.h"
#include "model/weights.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace qaft;

namespace {

// ---------------------------------------------------------------------------------------------
// Configs

struct BenchShape {
  int64_t layers = 8;
  int64_t vocab = 32000;
  int64_t B = 2;
  int64_t T = 256;
};

// The bench config as (config.json key, JSON value) pairs: what the C++ side parses and what
// make_tiny_model.py gets as --set overrides of its deepseek_v3 template, so both read one config.
std::vector<std::pair<std::string, std::string>> bench_keys(const BenchShape& s) {
  return bench::bench_dsv3_keys(s.vocab, s.layers);
}

std::string bench_config_json(const BenchShape& s) { return bench::bench_dsv3_config_json(s.vocab, s.layers); }

std::string describe(const ModelConfig& c, const BenchShape& s) {
  return fmt::format(
      "deepseek_v3, hidden {}, {} layers ({} dense), {} routed experts top-{} ({} groups, top {} groups, "
      "sigmoid noaux_tc), {} shared, moe_intermediate {}, intermediate {}, MLA q_lora {} kv_lora {} "
      "nope {} rope {} v {}, {} heads, vocab {}; batch B={} T={} ({} tokens); {:.1f} M parameters, "
      "{:.1f} M active",
      c.hidden_size, c.num_layers, c.first_k_dense_replace, c.num_experts, c.num_experts_per_tok, c.n_group,
      c.topk_group, c.shared_intermediate_size / std::max<int64_t>(c.moe_intermediate_size, 1),
      c.moe_intermediate_size, c.intermediate_size, c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim,
      c.qk_rope_head_dim, c.v_head_dim, c.num_heads, c.vocab_size, s.B, s.T, s.B * s.T,
      static_cast<double>(parameter_count(c)) * 1e-6, static_cast<double>(active_parameter_count(c)) * 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Model FLOPs (see the header comment)

// Parameters of the linears under `prefix` that one token passes through (stacked experts × K/E).
double linear_params(const ModelConfig& c, const std::string& prefix) {
  double n = 0;
  for (const ParamSpec& p : model_param_specs(c)) {
    if (p.shape.size() < 2 || p.name == "model.embed_tokens.weight") continue;
    if (p.name.compare(0, prefix.size(), prefix) != 0) continue;
    n += p.experts > 0 ? static_cast<double>(p.numel()) / static_cast<double>(p.experts) *
                             static_cast<double>(c.num_experts_per_tok)
                       : static_cast<double>(p.numel());
  }
  return n;
}

// Causal attention core (q·kᵀ and p·v) of one layer, forward.
double attention_core_flops(const ModelConfig& c, const BenchShape& s) {
  return static_cast<double>(s.B) * static_cast<double>(s.T) * static_cast<double>(s.T) *
         static_cast<double>(c.num_heads) * static_cast<double>(c.qk_head_dim() + c.v_head_dim);
}

struct StepFlops {
  double forward = 0;
  double step() const { return 3 * forward; }
};

StepFlops model_flops(const ModelConfig& c, const BenchShape& s) {
  StepFlops f;
  double p_lin = linear_params(c, "");
  if (c.tie_word_embeddings) p_lin += static_cast<double>(c.vocab_size * c.hidden_size);  // the head
  f.forward = 2 * p_lin * static_cast<double>(s.B * s.T) + static_cast<double>(c.num_layers) * attention_core_flops(c, s);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Timing helpers

template <typename F>
double best_seconds(int warmup, int reps, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  double best = 1e300;
  for (int i = 0; i < reps; ++i) {
    Timer t;
    f();
    best = std::min(best, t.seconds());
  }
  return best;
}

std::vector<float> normal_vec(size_t n, uint64_t seed, float stddev = 1.0f) {
  std::vector<float> v(n);
  CounterRng(seed, 0).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, stddev);
  return v;
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return f ? a + " " + b + " " + c : std::string("n/a");
}

// gemm<float> 2048³ (NN): the peak reference. probe(threads) runs it once and keeps the best GFLOPS
// seen with that thread count.
class GemmPeak {
 public:
  GemmPeak() : A_(normal_vec(sz(), 1)), B_(normal_vec(sz(), 2)), C_(sz()) {}
  double probe(int threads) {
    omp_set_num_threads(threads);
    Timer t;
    gemm<float>(Trans::kNo, Trans::kNo, kN, kN, kN, 1.0f, A_.data(), kN, B_.data(), kN, 0.0f, C_.data(), kN);
    const double gf = 2.0 * static_cast<double>(kN * kN) * static_cast<double>(kN) / t.seconds() * 1e-9;
    double& b = threads == 1 ? best1_ : best2_;
    b = std::max(b, gf);
    return gf;
  }
  double best(int threads) const { return threads == 1 ? best1_ : best2_; }

 private:
  static constexpr int64_t kN = 2048;
  static size_t sz() { return static_cast<size_t>(kN * kN); }
  std::vector<float> A_, B_, C_;
  double best1_ = 0, best2_ = 0;
};

// Token ids and next-token targets (the last position of each row has none).
struct Tokens {
  std::vector<int32_t> ids, targets;
};
Tokens make_tokens(const BenchShape& s, int64_t vocab) {
  Tokens t;
  const CounterRng rng(7, 0);
  const int64_t N = s.B * s.T;
  t.ids.resize(static_cast<size_t>(N));
  t.targets.resize(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) t.ids[static_cast<size_t>(i)] = static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i)) % static_cast<uint32_t>(vocab));
  for (int64_t i = 0; i < N; ++i)
    t.targets[static_cast<size_t>(i)] = (i % s.T == s.T - 1) ? -100 : t.ids[static_cast<size_t>(i + 1)];
  return t;
}

struct StepTime {
  double step = 0, fwd = 0, bwd = 0;  // best of each over the repetitions
  double loss = 0;                    // mean loss of the last step
  int64_t rows_min = 0, rows_max = 0; // fewest / most rows one expert got in any MoE layer
};

// Best-of-`reps` forward+backward of `model` on the tokens after `warmup` untimed steps; `before`
// (if set) runs before every step, untimed (the interleaved GEMM-peak probe).
StepTime time_steps(Transformer<float>& model, const BenchShape& s, const Tokens& tok, int warmup, int reps,
                    const std::function<void()>& before = {}) {
  Batch b;
  b.B = s.B;
  b.T = s.T;
  b.ids = tok.ids.data();
  b.targets = tok.targets.data();
  StepTime r{1e300, 1e300, 1e300, 0, 0, 0};
  for (int i = 0; i < warmup + reps; ++i) {
    if (before) before();
    Timer t;
    const LossResult lr = model.forward(b);
    const double f = t.seconds();
    model.backward(static_cast<float>(1.0 / lr.weight_sum));
    const double total = t.seconds();
    r.loss = lr.mean();
    if (i == 0) {
      r.rows_min = s.B * s.T * model.config().num_experts_per_tok, r.rows_max = 0;
      for (const auto& layer : model.expert_load())
        for (int64_t rows : layer) r.rows_min = std::min(r.rows_min, rows), r.rows_max = std::max(r.rows_max, rows);
    }
    if (i < warmup) continue;
    r.step = std::min(r.step, total);
    r.fwd = std::min(r.fwd, f);
    r.bwd = std::min(r.bwd, total - f);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// The PyTorch side (bench/bench_model_torch.sh)


std::string line_after(const std::string& text, const std::string& tag) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    if (text.compare(pos, tag.size(), tag) == 0) return text.substr(pos + tag.size(), e - pos - tag.size());
    pos = e + 1;
  }
  return "";
}

std::string quote(const std::string& s) { return "'" + s + "'"; }  // no ' in our arguments

std::optional<std::filesystem::path> torch_script() {
  namespace fs = std::filesystem;
  for (const fs::path& p : {fs::path(__FILE__).parent_path() / "bench_model_torch.sh",
                            fs::current_path() / "bench" / "bench_model_torch.sh"})
    if (fs::exists(p)) return p;
  return std::nullopt;
}

struct TorchRun {
  std::string blas;          // which library the torch process mapped
  double seconds = 0;        // best forward+backward, 0 = did not run
  std::string loss;          // the mean loss it computed
  std::string error;
};

TorchRun torch_time(const std::filesystem::path& script, const std::string& dir, const char* blas, int repeat,
                    int threads) {
  TorchRun r;
  const bench::CmdOut o = bench::run_cmd(fmt::format("{} time {} {} {} {}", quote(script.string()), quote(dir), blas, repeat, threads));
  r.blas = line_after(o.out, "blas: ");
  r.loss = line_after(o.out, "loss: ");
  const std::string t = line_after(o.out, "time: ");
  if (o.status != 0 || t.empty()) {
    r.error = fmt::format("exit {}: {}", o.status, o.out.substr(0, 400));
    return r;
  }
  try {
    r.seconds = nlohmann::json::parse(t).at("best_s").get<double>();
  } catch (const std::exception& e) {
    r.error = std::string("cannot parse the timing line: ") + e.what();
  }
  return r;
}

void write_json_rows(const std::string& path, const std::vector<int32_t>& v, const BenchShape& s) {
  std::ofstream f(path);
  f << "[";
  for (int64_t b = 0; b < s.B; ++b) {
    f << (b ? ",[" : "[");
    for (int64_t t = 0; t < s.T; ++t) f << (t ? "," : "") << v[static_cast<size_t>(b * s.T + t)];
    f << "]";
  }
  f << "]\n";
}

// ---------------------------------------------------------------------------------------------

// One piece of the step, timed alone: forward, then backward (which may use what forward saved).
struct Piece {
  std::string name;
  int64_t count = 0;  // how many of these one step runs; 0 = not added to the sum (a part of the
                      // piece above it, or the dense reference of [4])
  double flops = 0;   // forward model FLOPs of one
  std::function<void()> fwd, bwd;
  double fwd_s = 1e300, bwd_s = 1e300;  // best seconds
  double total() const { return fwd_s + bwd_s; }
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, no_torch = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--no-torch") == 0) no_torch = true;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--no-torch]\n", argv[0]);
      return 2;
    }
  }
  const int step_reps = quick ? 1 : 2;   // timed full steps (after 1 warm-up)
  const int piece_reps = quick ? 1 : 3;  // timed rounds over the pieces (after 1 warm-up round)
  const int threads = std::min(2, omp_get_max_threads());
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  Timer wall;

  const BenchShape shape;  // the bench config: 8 layers, vocab 32000, B=2, T=256
  const ModelConfig cfg = model_config_from_json(bench_config_json(shape), "bench config");
  const StepFlops flops = model_flops(cfg, shape);
  const int64_t N = shape.B * shape.T, C = cfg.hidden_size;

  fmt::print("bench_model: DeepSeek-V3-shaped MoE training step (forward + backward, fp32)\n");
  fmt::print("machine : {}; {} OpenMP threads available, {} used\n", cpu_features().summary(), omp_get_max_threads(), threads);
  fmt::print("commit  : {} (uncommitted changes not flagged)\n", bench::bench_git_commit());
  fmt::print("config  : {}\n", describe(cfg, shape));
  fmt::print("flops   : forward = 2·P_lin·N + L·B·T²·H·(Dqk+Dv) (causal), step = 3 × forward = {:.1f} GFLOP "
             "(P_lin {:.2f} M linear parameters per token)\n",
             flops.step() * 1e-9, linear_params(cfg, "") * 1e-6);
  fmt::print("load    : {} (1/5/15-min load average at start)\n\n", loadavg());
  std::fflush(stdout);

  // 1. GEMM peak: 3 probes per thread count now, one before every full step, 3 at the end.
  GemmPeak peak;
  for (int i = 0; i < 4; ++i) peak.probe(1);  // the first is a warm-up (oneDNN JIT, page faults)
  for (int i = 0; i < 4; ++i) peak.probe(threads);
  fmt::print("[1] gemm<float> 2048^3 NN: 1 thread {:.1f} GFLOPS, {} threads {:.1f} GFLOPS (best of 4)\n", peak.best(1),
             threads, peak.best(threads));
  std::fflush(stdout);

  // 2. The bench model, each step after a GEMM-peak probe.
  const std::vector<ParamSpec> specs = model_param_specs(cfg);
  ParamStore<float> params(specs), grads(specs);
  Timer t_init;
  init_params_random(params, 1, 0.02);
  const double init_s = t_init.seconds();
  const Tokens tok = make_tokens(shape, cfg.vocab_size);
  StepTime st, st1;  // with `threads` threads, and with 1 (the model is warm by then)
  {
    Transformer<float> model(cfg, &params, &grads);
    st = time_steps(model, shape, tok, 1, step_reps, [&] {
      peak.probe(threads);
      omp_set_num_threads(threads);
    });
    if (threads > 1) st1 = time_steps(model, shape, tok, 0, step_reps, [&] { peak.probe(1); });
  }
  fmt::print("[2] forward+backward: best {:.3f} s (forward {:.3f} s, backward {:.3f} s) of {} after 1 warm-up; "
             "loss {:.4f}; rows per expert min {} max {} (mean {}); init_params_random took {:.1f} s (not timed)\n",
             st.step, st.fwd, st.bwd, step_reps, st.loss, st.rows_min, st.rows_max,
             N * cfg.num_experts_per_tok / cfg.num_experts, init_s);
  if (threads > 1)
    fmt::print("    with 1 thread: best {:.3f} s (forward {:.3f} s, backward {:.3f} s) of {}\n", st1.step, st1.fwd, st1.bwd,
               step_reps);
  std::fflush(stdout);

  // 3 + 4. The pieces of the step, and the dense reference of the MoE layer, timed in rounds (every
  //   piece once per round, so that all see the same machine conditions; best of the rounds).
  //   Inputs: random O(1) activations (what RMSNorm outputs) and small output gradients.
  const int64_t n_shared = cfg.shared_intermediate_size / cfg.moe_intermediate_size;
  const int64_t Ieq = (cfg.num_experts_per_tok + n_shared) * cfg.moe_intermediate_size;
  const int64_t H = cfg.num_heads, Dqk = cfg.qk_head_dim(), Dv = cfg.v_head_dim;
  const int64_t E = cfg.num_experts, I = cfg.moe_intermediate_size, R = N * cfg.num_experts_per_tok;
  const auto x = normal_vec(sz(N * C), 11);
  const auto dy = normal_vec(sz(N * C), 12, 0.01f);
  std::vector<float> y(sz(N * C)), dx(sz(N * C));
  std::vector<int32_t> pos(sz(N));
  for (int64_t i = 0; i < N; ++i) pos[sz(i)] = static_cast<int32_t>(i % shape.T);
  const SequenceInfo seq{shape.B, shape.T, pos.data(), nullptr};
  const std::vector<double> inv_freq = cfg.rope_inv_freq();
  const float scale = static_cast<float>(cfg.softmax_scale());
  const auto N_d = static_cast<double>(N);

  const WeightBinding<float> wb{&params, &grads, nullptr, nullptr, nullptr, 0.0, nullptr};
  const MlaRef<float> mla = bind_mla(wb, "model.layers.1.self_attn");
  MlaSaved<float> mla_s;
  std::vector<float> att_o(sz(N * H * Dv)), att_lse(sz(N * H)), att_dq(sz(N * H * Dqk)), att_dk(sz(N * H * Dqk)),
      att_dv(sz(N * H * Dv));
  const auto att_do = normal_vec(sz(N * H * Dv), 13, 0.01f);
  const MlpRef<float> dense0 = bind_mlp(wb, "model.layers.0.mlp");
  MlpSaved<float> dense0_s;
  const MoeRef<float> moe = bind_moe(wb, "model.layers.1.mlp", cfg);
  MoeSaved<float> moe_s;
  std::vector<float> ge_i(sz(R * I)), ge_c(sz(R * C));
  const auto ge_dy = normal_vec(sz(R * C), 14, 0.01f);
  MlpSaved<float> shared_s;
  // The dense reference of [4]: SwiGLU with intermediate (top_k + n_shared)·moe_intermediate, bound
  // from a ParamStore built from a three-tensor spec list.
  std::vector<ParamSpec> dspecs(3);
  dspecs[0].name = "dense.gate_proj.weight", dspecs[0].shape = {Ieq, C};
  dspecs[1].name = "dense.up_proj.weight", dspecs[1].shape = {Ieq, C};
  dspecs[2].name = "dense.down_proj.weight", dspecs[2].shape = {C, Ieq};
  ParamStore<float> dparams(dspecs), dgrads(dspecs);
  init_params_random(dparams, 2, 0.02);
  const MlpRef<float> deq = bind_mlp(WeightBinding<float>{&dparams, &dgrads, nullptr, nullptr, nullptr, 0.0, nullptr}, "dense");
  MlpSaved<float> deq_s;
  const float* head = params.get("lm_head.weight");
  float* dhead = grads.get("lm_head.weight");
  std::vector<float> lse(sz(N));

  std::vector<Piece> pieces;
  pieces.push_back({"MLA attention", cfg.num_layers,
                    2 * linear_params(cfg, "model.layers.1.self_attn") * N_d + attention_core_flops(cfg, shape),
                    [&] { mla_forward(mla, cfg, x.data(), seq, inv_freq, y.data(), mla_s); },
                    [&] { mla_backward(mla, cfg, dy.data(), x.data(), seq, inv_freq, mla_s, dx.data()); }});
  pieces.push_back({"  of which the attention core", 0, attention_core_flops(cfg, shape),
                    [&] {
                      attention_forward<float>(mla_s.Q.data(), mla_s.K.data(), mla_s.V.data(), nullptr, shape.B, shape.T,
                                               H, H, Dqk, Dv, scale, att_o.data(), att_lse.data());
                    },
                    [&] {
                      attention_backward<float>(att_do.data(), mla_s.Q.data(), mla_s.K.data(), mla_s.V.data(), att_o.data(),
                                                att_lse.data(), nullptr, shape.B, shape.T, H, H, Dqk, Dv, scale,
                                                att_dq.data(), att_dk.data(), att_dv.data());
                    }});
  pieces.push_back({fmt::format("dense SwiGLU FFN (I={})", cfg.intermediate_size), cfg.first_k_dense_replace,
                    2 * linear_params(cfg, "model.layers.0.mlp") * N_d,
                    [&] { mlp_forward(dense0, x.data(), N, y.data(), dense0_s); },
                    [&] { mlp_backward(dense0, dy.data(), x.data(), N, dense0_s, dx.data(), false); }});
  const size_t moe_piece = pieces.size();
  pieces.push_back({"MoE FFN", cfg.num_layers - cfg.first_k_dense_replace, 2 * linear_params(cfg, "model.layers.1.mlp") * N_d,
                    [&] { moe_forward(moe, cfg, x.data(), N, y.data(), moe_s); },
                    [&] { moe_backward(moe, cfg, dy.data(), x.data(), N, moe_s, dx.data()); }});
  pieces.push_back({"  of which 9 grouped expert GEMMs", 0, 2.0 * 3 * static_cast<double>(R * I) * static_cast<double>(C),
                    [&] {  // gate, up, down as moe_forward runs them, on its permuted buffers
                      const int64_t* off = moe_s.offsets.data();
                      grouped_gemm<float>(Trans::kYes, E, off, I, C, 1.f, moe_s.xp.data(), C, moe.gate.w, I * C, 0.f, ge_i.data(), I);
                      grouped_gemm<float>(Trans::kYes, E, off, I, C, 1.f, moe_s.xp.data(), C, moe.up.w, I * C, 0.f, ge_i.data(), I);
                      grouped_gemm<float>(Trans::kYes, E, off, C, I, 1.f, moe_s.h.data(), I, moe.down.w, C * I, 0.f, ge_c.data(), C);
                    },
                    [&] {  // the data and weight gradients as moe_backward runs them
                      const int64_t* off = moe_s.offsets.data();
                      grouped_gemm<float>(Trans::kNo, E, off, I, C, 1.f, ge_dy.data(), C, moe.down.w, C * I, 0.f, ge_i.data(), I);
                      grouped_gemm_weight_grad<float>(E, off, C, I, ge_dy.data(), C, moe_s.h.data(), I, moe.down.dw, C * I);
                      grouped_gemm<float>(Trans::kNo, E, off, C, I, 1.f, moe_s.g.data(), I, moe.gate.w, I * C, 0.f, ge_c.data(), C);
                      grouped_gemm<float>(Trans::kNo, E, off, C, I, 1.f, moe_s.u.data(), I, moe.up.w, I * C, 1.f, ge_c.data(), C);
                      grouped_gemm_weight_grad<float>(E, off, I, C, moe_s.g.data(), I, moe_s.xp.data(), C, moe.gate.dw, I * C);
                      grouped_gemm_weight_grad<float>(E, off, I, C, moe_s.u.data(), I, moe_s.xp.data(), C, moe.up.dw, I * C);
                    }});
  pieces.push_back({fmt::format("  of which the shared experts (I={})", cfg.shared_intermediate_size), 0,
                    2 * linear_params(cfg, "model.layers.1.mlp.shared_experts") * N_d,
                    [&] { mlp_forward(moe.shared, x.data(), N, y.data(), shared_s); },
                    [&] { mlp_backward(moe.shared, dy.data(), x.data(), N, shared_s, dx.data(), true); }});
  pieces.push_back({"LM head + cross-entropy", 1, 2 * static_cast<double>(cfg.vocab_size * C) * N_d,
                    [&] { lm_head_ce_forward<float>(x.data(), head, tok.targets.data(), nullptr, N, C, cfg.vocab_size, 4096, lse.data()); },
                    [&] {
                      lm_head_ce_backward<float>(x.data(), head, tok.targets.data(), nullptr, lse.data(), N, C, cfg.vocab_size,
                                                 4096, 1.0f / static_cast<float>(N), dx.data(), dhead);
                    }});
  const size_t deq_piece = pieces.size();
  pieces.push_back({fmt::format("[4] dense SwiGLU I={} (MoE's FLOPs)", Ieq), 0, 2 * 3 * static_cast<double>(Ieq * C) * N_d,
                    [&] { mlp_forward(deq, x.data(), N, y.data(), deq_s); },
                    [&] { mlp_backward(deq, dy.data(), x.data(), N, deq_s, dx.data(), false); }});
  omp_set_num_threads(threads);
  for (int round = 0; round < piece_reps + 1; ++round)
    for (Piece& p : pieces) {
      Timer t;
      p.fwd();
      const double f = t.seconds();
      t.reset();
      p.bwd();
      const double b = t.seconds();
      if (round == 0) continue;  // warm-up round
      p.fwd_s = std::min(p.fwd_s, f);
      p.bwd_s = std::min(p.bwd_s, b);
    }
  const Piece& moe_p = pieces[moe_piece];
  const Piece& deq_p = pieces[deq_piece];
  int64_t load_min = R, load_max = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t rows = moe_s.offsets[sz(e + 1)] - moe_s.offsets[sz(e)];
    load_min = std::min(load_min, rows), load_max = std::max(load_max, rows);
  }
  const double moe_ratio = moe_p.total() / deq_p.total(), moe_ratio_f = moe_p.fwd_s / deq_p.fwd_s;
  fmt::print("[4] MoE layer fwd+bwd {:.1f} ms (fwd {:.1f}) vs dense SwiGLU I={} {:.1f} ms (fwd {:.1f}) on {} tokens: "
             "ratio {:.2f} (fwd {:.2f}); rows per expert min {} max {} (mean {})\n",
             moe_p.total() * 1e3, moe_p.fwd_s * 1e3, Ieq, deq_p.total() * 1e3, deq_p.fwd_s * 1e3, N, moe_ratio,
             moe_ratio_f, load_min, load_max, R / E);
  std::fflush(stdout);

  // 5. PyTorch reference on a smaller config, and qaft on the same model directory.
  const BenchShape tshape{2, 8000, 1, 256};
  struct {
    bool ran = false;
    std::string note;
    StepTime qaft, qaft1;              // qaft with `threads` threads, and with 1
    TorchRun openblas, openblas1, reference;  // torch --threads `threads` / 1 / `threads`
    double flops = 0;
  } tr;
  if (no_torch) {
    tr.note = "skipped (--no-torch)";
  } else if (const auto script = torch_script(); !script) {
    tr.note = "skipped: bench/bench_model_torch.sh not found";
  } else if (!std::filesystem::exists("/usr/bin/python3")) {
    tr.note = "skipped: /usr/bin/python3 (Debian's python3-torch) not found";
  } else {
    char tmpl[] = "/tmp/qaft_bench_model_XXXXXX";
    const char* d = mkdtemp(tmpl);
    const std::string dir = d ? d : "";
    if (dir.empty()) {
      tr.note = "skipped: mkdtemp failed";
    } else {
      std::string sets;
      for (const auto& [k, v] : bench_keys(tshape)) sets += " " + quote(k + "=" + v);
      Timer tm;
      const bench::CmdOut made = bench::run_cmd(fmt::format("{} make {}{}", quote(script->string()), quote(dir), sets));
      if (made.status != 0) {
        tr.note = fmt::format("skipped: make_tiny_model failed (exit {}): {}", made.status, made.out.substr(0, 400));
      } else {
        const double make_s = tm.seconds();
        const ModelConfig tcfg = model_config_load(dir);
        tr.flops = model_flops(tcfg, tshape).step();
        const Tokens ttok = make_tokens(tshape, tcfg.vocab_size);
        write_json_rows(dir + "/ids.json", ttok.ids, tshape);
        write_json_rows(dir + "/targets.json", ttok.targets, tshape);
        {  // Interleaved, so that both engines sample the same stretch of machine time: qaft,
           // torch (OpenBLAS, 2 threads), qaft again, torch (OpenBLAS, 1 thread), qaft with 1 thread,
           // torch (reference BLAS). qaft keeps its best step per thread count.
          const ParamStore<float> tparams = load_params<float>(ShardedCheckpoint::open(dir), tcfg);
          ParamStore<float> tgrads(model_param_specs(tcfg));
          Transformer<float> tmodel(tcfg, &tparams, &tgrads);
          omp_set_num_threads(threads);
          tr.qaft = time_steps(tmodel, tshape, ttok, 1, quick ? 1 : 2);
          tr.openblas = torch_time(*script, dir, "openblas", 2, threads);
          omp_set_num_threads(threads);
          tr.qaft.step = std::min(tr.qaft.step, time_steps(tmodel, tshape, ttok, 0, quick ? 1 : 2).step);
          tr.openblas1 = torch_time(*script, dir, "openblas", 3, 1);
          omp_set_num_threads(1);
          tr.qaft1 = time_steps(tmodel, tshape, ttok, 1, quick ? 1 : 2);
          omp_set_num_threads(threads);
          if (!quick) tr.reference = torch_time(*script, dir, "reference", 1, threads);
        }
        tr.ran = true;
        tr.note = fmt::format("{} layers ({} dense), vocab {}, B={} T={}, weights and config.json written by "
                              "make_tiny_model.py in {:.1f} s (not timed); {:.1f} GFLOP per step",
                              tcfg.num_layers, tcfg.first_k_dense_replace, tcfg.vocab_size, tshape.B, tshape.T, make_s,
                              tr.flops * 1e-9);
        fmt::print("[5] torch config: {}\n    qaft (same weights and tokens): {} threads {:.3f} s/step, 1 thread {:.3f} "
                   "s/step; loss {:.4f}; rows per expert min {} max {}\n",
                   tr.note, threads, tr.qaft.step, tr.qaft1.step, tr.qaft.loss, tr.qaft.rows_min, tr.qaft.rows_max);
        const std::pair<int, const TorchRun*> runs[] = {{threads, &tr.openblas}, {1, &tr.openblas1}, {threads, &tr.reference}};
        for (const auto& [n, t] : runs) {
          if (t->seconds > 0)
            fmt::print("    torch f32 --threads {}, BLAS {}: {:.3f} s/step, loss {}\n", n, t->blas, t->seconds, t->loss);
          else if (!t->error.empty())
            fmt::print("    torch: {}\n", t->error);
        }
      }
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  }
  if (!tr.ran) fmt::print("[5] torch comparison {}\n", tr.note);
  std::fflush(stdout);

  // The peak once more after everything else.
  for (int i = 0; i < 3; ++i) peak.probe(threads);
  const double peak2 = peak.best(threads);
  fmt::print("[1] gemm<float> 2048^3 NN, best of all probes: {} threads {:.1f} GFLOPS ({} probes), 1 thread {:.1f} GFLOPS "
             "({} probes)\n\n",
             threads, peak2, 4 + 1 + step_reps + 3, peak.best(1), threads > 1 ? 4 + step_reps : 4 + 1 + step_reps + 3);

  // ---- Report.
  const double achieved = flops.step() / st.step;
  auto pct = [&](double gflops) { return 100.0 * gflops / (peak2 * 1e9); };
  fmt::print("Where one step's time goes (each piece alone, {} threads, best of {} rounds; % of the {:.1f} GFLOPS peak):\n",
             threads, piece_reps, peak2);
  fmt::print("  {:40s} {:>5s} {:>8s} {:>8s} {:>9s} {:>7s} {:>7s} {:>8s}\n", "piece", "count", "fwd ms", "bwd ms",
             "GFLOP f+b", "GFLOPS", "% peak", "step ms");
  double sum = 0;
  for (const Piece& p : pieces) {
    const double t = p.total(), f = 3 * p.flops;
    sum += static_cast<double>(p.count) * t;
    fmt::print("  {:40s} {:>5s} {:8.1f} {:8.1f} {:9.2f} {:7.1f} {:6.1f}% {:>8s}\n", p.name,
               p.count ? std::to_string(p.count) : "", p.fwd_s * 1e3, p.bwd_s * 1e3, f * 1e-9, f / t * 1e-9, pct(f / t),
               p.count ? fmt::format("{:.0f}", static_cast<double>(p.count) * t * 1e3) : "");
  }
  fmt::print("  {:40s} {:>63.0f}\n", "sum: count × (fwd + bwd)", sum * 1e3);
  fmt::print("  {:40s} {:>63.0f}\n", "measured step (rest: norms, residual adds,", st.step * 1e3);
  fmt::print("  {:40s}\n\n", "  embedding, copies; and noise)");

  fmt::print("Summary ({} threads unless stated; load average now {}; bench wall time {:.0f} s)\n", threads, loadavg(),
             wall.seconds());
  fmt::print("  {:46s} {}\n", "figure", "value");
  fmt::print("  {:46s} {:.1f} GFLOPS\n", "GEMM peak fp32 (2048^3), 1 thread", peak.best(1));
  fmt::print("  {:46s} {:.1f} GFLOPS\n", fmt::format("GEMM peak fp32 (2048^3), {} threads", threads), peak2);
  fmt::print("  {:46s} {:.3f} s (fwd {:.3f} s + bwd {:.3f} s)\n",
             fmt::format("step time, bench config (B={} T={})", shape.B, shape.T), st.step, st.fwd, st.bwd);
  fmt::print("  {:46s} {:.0f}\n", "tokens/s (forward+backward)", N_d / st.step);
  fmt::print("  {:46s} {:.1f} GFLOP / step -> {:.1f} GFLOPS\n", "model FLOPs", flops.step() * 1e-9, achieved * 1e-9);
  fmt::print("  {:46s} {:.1f} %\n", fmt::format("MFU (of the {}-thread GEMM peak)", threads), pct(achieved));
  if (threads > 1) {
    fmt::print("  {:46s} {:.3f} s, {:.0f} tokens/s, MFU {:.1f} % of the 1-thread peak\n", "step time with 1 thread",
               st1.step, N_d / st1.step, 100.0 * flops.step() / st1.step / (peak.best(1) * 1e9));
  }
  fmt::print("  {:46s} {:.2f}x (fwd {:.2f}x) {}\n", fmt::format("MoE layer / dense SwiGLU I={} (same FLOPs)", Ieq),
             moe_ratio, moe_ratio_f, moe_ratio <= 1.5 ? "(target <= 1.5x: met)" : "(target <= 1.5x: NOT met)");
  if (tr.ran) {
    const double tok_t = static_cast<double>(tshape.B * tshape.T);
    fmt::print("  {:46s} {} thr {:.3f} s ({:.0f} tokens/s), 1 thr {:.3f} s\n",
               fmt::format("qaft step, torch config (B={} T={})", tshape.B, tshape.T), threads, tr.qaft.step,
               tok_t / tr.qaft.step, tr.qaft1.step);
    struct Row {
      std::string label;
      double qaft;
      const TorchRun* t;
    };
    const Row rows[] = {
        {fmt::format("qaft {}thr / torch+OpenBLAS {}thr speed", threads, threads), tr.qaft.step, &tr.openblas},
        {fmt::format("qaft {}thr / torch+OpenBLAS 1thr speed", threads), tr.qaft.step, &tr.openblas1},
        {"qaft 1thr / torch+OpenBLAS 1thr speed", tr.qaft1.step, &tr.openblas1},
        {fmt::format("qaft {}thr / torch+reference BLAS {}thr speed", threads, threads), tr.qaft.step, &tr.reference},
    };
    for (const Row& r : rows) {
      if (r.t->seconds > 0)
        fmt::print("  {:46s} {:.1f}x (torch {:.3f} s/step, {:.1f} GFLOPS) {}\n", r.label, r.t->seconds / r.qaft,
                   r.t->seconds, tr.flops / r.t->seconds * 1e-9,
                   r.t->seconds / r.qaft >= 2 ? "(target >= 2x: met)" : "(target >= 2x: NOT met)");
      else
        fmt::print("  {:46s} n/a{}\n", r.label, quick && r.t == &tr.reference ? " (--quick)" : "");
    }
  } else {
    fmt::print("  {:46s} n/a: {}\n", "qaft / torch speed", tr.note);
  }
  return 0;
}
