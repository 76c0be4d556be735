#include "model/linear.h"

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/block_gemm.h"
#include "kernels/ops.h"
#include "model/frozen_weights.h"
#include "numerics/bf16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace qaft {

double lora_scale(double alpha, int64_t rank, bool rslora) {
  QAFT_CHECK(rank > 0, "LoRA rank must be positive, got {}", rank);
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

const LinearNumerics kExactNumerics;

template <typename T>
const LinearNumerics& numerics_of(const LinearRef<T>& l) {
  return l.numerics ? *l.numerics : kExactNumerics;
}

// What happens to a GEMM operand before the GEMM.
struct Rounding {
  enum Kind : uint8_t { kNone, kFp8, kBf16 } kind = kNone;
  ScaleFormat scales = ScaleFormat::kFp32;
};

// The input x of the forward pass (and, in FP8 training, dy of the input-gradient GEMM).
Rounding input_rounding(const LinearNumerics& n) {
  if (n.precision == GemmPrecision::kFp8) return {Rounding::kFp8, n.fp8_scale_format};
  if (n.precision == GemmPrecision::kBf16) return {Rounding::kBf16, {}};
  if (n.qat.enabled && n.qat.quantize_activations) return {Rounding::kFp8, n.qat.weight_scale_format};
  return {};
}

// The (merged) weight.
template <typename T>
Rounding weight_rounding(const LinearRef<T>& l, const LinearNumerics& n) {
  if (n.precision == GemmPrecision::kFp8) return {Rounding::kFp8, n.fp8_scale_format};
  if (n.precision == GemmPrecision::kBf16) return {Rounding::kBf16, {}};
  if (n.qat.enabled) {
    // An FP8-stored base without adapter is served from its stored codes: use them as they are.
    if (l.frozen && l.frozen->format == BaseFormat::kFp8 && !l.has_lora()) return {};
    return {Rounding::kFp8, n.qat.weight_scale_format};
  }
  return {};
}

// Applies a rounding to x [rows, cols] (dense) in place, with the given block recipe for FP8.
// The FP8 codecs are fp32; double data round-trips through fp32 (values stay exactly the
// quantized fp32 values).
template <typename T>
void round_in_place(T* x, int64_t rows, int64_t cols, const Rounding& r, const ScaleRecipe& recipe) {
  if (r.kind == Rounding::kNone || rows == 0) return;
  if (r.kind == Rounding::kBf16) {
#pragma omp parallel for if (rows * cols > (1 << 16))
    for (int64_t i = 0; i < rows * cols; ++i)
      x[i] = static_cast<T>(bf16_to_float(bf16_from_float(static_cast<float>(x[i]))));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    fake_quantize(x, rows, cols, recipe, x);
  } else {
    std::vector<float> tmp(x, x + rows * cols);
    fake_quantize(tmp.data(), rows, cols, recipe, tmp.data());
    for (int64_t i = 0; i < rows * cols; ++i) x[i] = static_cast<T>(tmp[sz(i)]);
  }
}

// Activation-style rounding: 1×128 tiles along each row (per token).
template <typename T>
void round_rows(T* x, int64_t rows, int64_t cols, const Rounding& r) {
  round_in_place(x, rows, cols, r, ScaleRecipe::deepseek_activation(r.scales));
}

// Rounding with 128×1 tiles (along the token dimension) of each group's rows: the operands of the
// weight-gradient GEMM, whose reduction runs over tokens. x [rows, cols], transposed per group.
template <typename T>
void round_token_tiles(T* x, int64_t groups, const int64_t* off, int64_t cols, const Rounding& r) {
  if (r.kind != Rounding::kFp8) return round_in_place(x, off[groups], cols, r, {});
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t n = off[g + 1] - off[g];
    if (n == 0) continue;
    T* base = x + off[g] * cols;
    std::vector<T> t(sz(n * cols));  // [cols, n]
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < cols; ++c) t[sz(c * n + i)] = base[i * cols + c];
    round_rows(t.data(), cols, n, r);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < cols; ++c) base[i * cols + c] = t[sz(c * n + i)];
  }
}

// C[rows of g] = alpha · A[rows of g] · op(W_g) + beta · C: one GEMM for a single group, else
// the grouped GEMM (one parallel pass over all groups).
template <typename T>
void group_mm(int64_t groups, const int64_t* off, Trans tb, int64_t N, int64_t K, T alpha, const T* A,
              const T* W, int64_t w_stride, T beta, T* C) {
  if (groups == 1) {
    gemm<T>(Trans::kNo, tb, off[1] - off[0], N, K, alpha, A + off[0] * K, K, W, tb == Trans::kYes ? K : N, beta,
            C + off[0] * N, N);
  } else {
    grouped_gemm<T>(tb, groups, off, N, K, alpha, A, K, W, w_stride, beta, C, N);
  }
}

// dW_g [N, K] += dY[rows of g]ᵀ · X[rows of g].
template <typename T>
void group_wgrad(int64_t groups, const int64_t* off, int64_t N, int64_t K, const T* dY, const T* X, T* dW) {
  if (groups == 1) {
    const int64_t rows = off[1] - off[0];
    if (rows > 0) gemm<T>(Trans::kYes, Trans::kNo, N, K, rows, T(1), dY + off[0] * N, N, X + off[0] * K, K, T(1), dW, K);
  } else {
    grouped_gemm_weight_grad<T>(groups, off, N, K, dY, N, X, K, dW, N * K);
  }
}

// Does the GEMM need a weight built per group (dequantized / merged / rounded) first?
template <typename T>
bool needs_materialized_weight(const LinearRef<T>& l, const LinearNumerics& n) {
  return l.frozen != nullptr || weight_rounding(l, n).kind != Rounding::kNone || (n.qat.enabled && l.has_lora());
}

// Merged weights are built for at most this many experts at a time, and discarded after use.
constexpr int64_t kMaxChunkGroups = 4;
constexpr int64_t kMaxChunkElements = int64_t{1} << 22;

// C[rows of g] = alpha · A[rows] · op(W_eff,g) + beta · C, building W_eff chunk by chunk. Groups
// without rows are skipped (their weight is never built).
template <typename T>
void materialized_mm(const LinearRef<T>& l, int64_t groups, const int64_t* off, Trans tb, const T* A, T beta, T* C) {
  const int64_t N = tb == Trans::kYes ? l.out : l.in, K = tb == Trans::kYes ? l.in : l.out;
  const int64_t wsize = l.out * l.in;
  const int64_t chunk = std::clamp<int64_t>(kMaxChunkElements / std::max<int64_t>(wsize, 1), 1, kMaxChunkGroups);
  std::vector<T> w(sz(std::min(chunk, groups) * wsize));
  std::vector<int64_t> coff(sz(chunk + 1));
  for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
    const int64_t g1 = std::min(groups, g0 + chunk);
    if (off[g1] == off[g0]) continue;
    for (int64_t g = g0; g < g1; ++g)
      if (off[g + 1] > off[g]) effective_weight(l, g, w.data() + (g - g0) * wsize);
    for (int64_t g = g0; g <= g1; ++g) coff[sz(g - g0)] = off[g] - off[g0];
    group_mm<T>(g1 - g0, coff.data(), tb, N, K, T(1), A + off[g0] * K, w.data(), wsize, beta, C + off[g0] * N);
  }
}

// The LoRA-QAT forward computed with the FP8 server's arithmetic (kernels/cpu/block_gemm.h): the
// codes and scales of fake-quantizing the input (1×128) and the merged weight (128×128), multiplied
// as DeepSeek's fp8_gemm does — per 128-wide K block a partial dot of codes in fp32, times both
// scales, summed over the blocks. An fp32 GEMM over the dequantized operands gives the same products
// but sums them in another order: the last bits differ, and an activation of a later layer that sits
// on an E4M3 rounding boundary then rounds to a neighbouring code. With one arithmetic on both sides
// the training-time evaluation is the server's forward (tests/unit/infer_qat_parity_test.cpp). The
// backward is unchanged: straight-through over the same dequantized values.
template <typename T>
bool uses_server_gemm(const LinearNumerics& n) {
  return std::is_same_v<T, float> && n.qat.enabled && n.precision == GemmPrecision::kExact;
}

// Group g's weight as the server holds it: an FP8-stored base without adapter keeps its stored codes
// and scales (serving_weights.h); any other weight is the fake-quantized (merged) weight, which
// quantizes again to exactly its own values.
BlockWeight served_weight(const LinearRef<float>& l, int64_t g, std::vector<float>& scratch) {
  const LinearNumerics& n = numerics_of(l);
  const ScaleFormat sf = n.qat.weight_scale_format;
  if (weight_rounding(l, n).kind == Rounding::kNone) {
    const int64_t per_group = l.out * l.in;
    const int64_t scales = ((l.out + kScaleBlock - 1) / kScaleBlock) * ((l.in + kScaleBlock - 1) / kScaleBlock);
    return BlockWeight::from_e4m3(l.frozen->fp8_codes.data() + g * per_group, l.frozen->fp8_scales.data() + g * scales,
                                  l.out, l.in, sf);
  }
  scratch.resize(sz(l.out * l.in));
  effective_weight(l, g, scratch.data());
  return BlockWeight::quantize_e4m3(scratch.data(), l.out, l.in, sf);
}

// y [rows, out] = the server's product of x [rows, in] with each group's served weight, built for at
// most kMaxChunkGroups experts at a time; groups without rows are skipped.
void server_gemm_forward(const LinearRef<float>& l, int64_t groups, const int64_t* off, const float* x, float* y) {
  const LinearNumerics& n = numerics_of(l);
  const int64_t chunk = std::clamp<int64_t>(kMaxChunkElements / std::max<int64_t>(l.out * l.in, 1), 1, kMaxChunkGroups);
  std::vector<BlockWeight> w;
  std::vector<int64_t> coff;  // offsets of the chunk's groups that have rows, from off[g0]
  std::vector<float> scratch;
  BlockActivations a;
  for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
    const int64_t g1 = std::min(groups, g0 + chunk), rows = off[g1] - off[g0];
    if (rows == 0) continue;
    w.clear();
    coff.assign(1, 0);
    for (int64_t g = g0; g < g1; ++g) {
      if (off[g + 1] == off[g]) continue;
      w.push_back(served_weight(l, g, scratch));
      coff.push_back(off[g + 1] - off[g0]);
    }
    const float* xg = x + off[g0] * l.in;
    if (n.qat.quantize_activations) quantize_activations(xg, rows, l.in, n.qat.weight_scale_format, a);
    else plain_activations(xg, rows, l.in, a);
    float* yg = y + off[g0] * l.out;
    if (w.size() == 1) block_gemm(a, w[0], yg);
    else block_grouped_gemm(a, w, coff.data(), yg);
  }
}

// The LoRA input with dropout (inverted scaling), as PEFT's lora_dropout: x [rows, in] → out.
template <typename T>
void apply_dropout(const LinearRef<T>& l, const LinearNumerics& n, const T* x, int64_t rows, T* out) {
  const CounterRng rng(n.dropout_seed, l.id);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - n.lora_dropout));
  const float p = static_cast<float>(n.lora_dropout);
#pragma omp parallel for if (rows * l.in > (1 << 15))
  for (int64_t i = 0; i < rows * l.in; ++i) out[i] = rng.uniform(static_cast<uint64_t>(i)) < p ? T(0) : x[i] * keep_scale;
}

template <typename T>
bool dropout_on(const LinearRef<T>& l, const LinearNumerics& n) {
  return l.has_lora() && n.lora_dropout > 0 && n.train_mode && !n.qat.enabled;
}

template <typename T>
void add_bias(const LinearRef<T>& l, int64_t N, T* y) {
  if (!l.b) return;
#pragma omp parallel for if (N * l.out > (1 << 16))
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < l.out; ++o) y[n * l.out + o] += l.b[o];
}

template <typename T>
void forward_impl(const LinearRef<T>& l, int64_t groups, const int64_t* off, const T* x, T* y) {
  const LinearNumerics& n = numerics_of(l);
  const int64_t R = off[groups], wsize = l.out * l.in;
  if constexpr (std::is_same_v<T, float>) {
    if (uses_server_gemm<T>(n)) {
      server_gemm_forward(l, groups, off, x, y);
      add_bias(l, R, y);
      return;
    }
  }
  const Rounding xr = input_rounding(n);
  std::vector<T> xq;
  const T* xin = x;
  if (xr.kind != Rounding::kNone) {
    xq.assign(x, x + R * l.in);
    round_rows(xq.data(), R, l.in, xr);
    xin = xq.data();
  }
  if (needs_materialized_weight(l, n)) materialized_mm(l, groups, off, Trans::kYes, xin, T(0), y);
  else group_mm<T>(groups, off, Trans::kYes, l.out, l.in, T(1), xin, l.w, wsize, T(0), y);

  if (l.has_lora() && !n.qat.enabled) {  // unmerged adapter: y += s·(drop(x)·Aᵀ)·Bᵀ
    std::vector<T> xd;
    const T* xl = xin;
    if (dropout_on(l, n)) {
      xd.resize(sz(R * l.in));
      apply_dropout(l, n, xin, R, xd.data());
      xl = xd.data();
    }
    std::vector<T> xa(sz(R * l.rank));
    group_mm<T>(groups, off, Trans::kYes, l.rank, l.in, T(1), xl, l.lora_a, l.rank * l.in, T(0), xa.data());
    group_mm<T>(groups, off, Trans::kYes, l.out, l.rank, l.lora_scale, xa.data(), l.lora_b, l.out * l.rank, T(1), y);
  }
  add_bias(l, R, y);
}

template <typename T>
void backward_impl(const LinearRef<T>& l, int64_t groups, const int64_t* off, const T* dy, const T* x, T* dx,
                   bool accumulate_dx) {
  const LinearNumerics& n = numerics_of(l);
  const int64_t R = off[groups], wsize = l.out * l.in;
  const bool full_precision_rounding = n.precision != GemmPrecision::kExact;
  const Rounding xr = input_rounding(n);

  // The forward's input, recomputed.
  std::vector<T> xq;
  const T* xin = x;
  if (xr.kind != Rounding::kNone && l.has_lora()) {
    xq.assign(x, x + R * l.in);
    round_rows(xq.data(), R, l.in, xr);
    xin = xq.data();
  }

  // Input gradient: dy · W_eff (straight-through: the quantizers are identities backward). In FP8
  // training dy itself is an E4M3 operand with 1×128 tiles.
  std::vector<T> dyq;
  const T* dy_dgrad = dy;
  if (dx && full_precision_rounding) {
    dyq.assign(dy, dy + R * l.out);
    round_rows(dyq.data(), R, l.out, xr);
    dy_dgrad = dyq.data();
  }
  const T beta = accumulate_dx ? T(1) : T(0);
  if (dx) {
    if (needs_materialized_weight(l, n)) materialized_mm(l, groups, off, Trans::kNo, dy_dgrad, beta, dx);
    else group_mm<T>(groups, off, Trans::kNo, l.in, l.out, T(1), dy_dgrad, l.w, wsize, beta, dx);
  }

  // Weight gradient (full training): in FP8, both operands with 128×1 tiles along tokens.
  if (l.dw) {
    if (full_precision_rounding) {
      std::vector<T> dyt(dy, dy + R * l.out), xt(x, x + R * l.in);
      round_token_tiles(dyt.data(), groups, off, l.out, xr);
      round_token_tiles(xt.data(), groups, off, l.in, xr);
      group_wgrad<T>(groups, off, l.out, l.in, dyt.data(), xt.data(), l.dw);
    } else {
      group_wgrad<T>(groups, off, l.out, l.in, dy, x, l.dw);
    }
  }
  if (l.db) {
#pragma omp parallel for if (R * l.out > (1 << 16))
    for (int64_t o = 0; o < l.out; ++o) {
      T s = 0;
      for (int64_t r = 0; r < R; ++r) s += dy[r * l.out + o];
      l.db[o] += s;
    }
  }

  if (!l.has_lora()) return;
  // LoRA: with xl the adapter's input (the quantized input under QAT, dropped-out otherwise),
  //   dB += s·dyᵀ·(xl·Aᵀ),  dA += s·(dy·B)ᵀ·xl,  and unmerged: dx += drop'(s·(dy·B)·A).
  std::vector<T> xd;
  const T* xl = xin;
  const bool drop = dropout_on(l, n);
  if (drop) {
    xd.resize(sz(R * l.in));
    apply_dropout(l, n, xin, R, xd.data());
    xl = xd.data();
  }
  const int64_t r = l.rank;
  std::vector<T> dyb(sz(R * r));  // dy·B [R, r], scaled by s
  group_mm<T>(groups, off, Trans::kNo, r, l.out, l.lora_scale, dy, l.lora_b, l.out * r, T(0), dyb.data());
  if (l.dlora_b) {
    std::vector<T> xa(sz(R * r));  // s·xl·Aᵀ [R, r]
    group_mm<T>(groups, off, Trans::kYes, r, l.in, l.lora_scale, xl, l.lora_a, r * l.in, T(0), xa.data());
    group_wgrad<T>(groups, off, l.out, r, dy, xa.data(), l.dlora_b);
  }
  if (l.dlora_a) group_wgrad<T>(groups, off, r, l.in, dyb.data(), xl, l.dlora_a);
  if (dx && !n.qat.enabled) {
    if (!drop) {
      group_mm<T>(groups, off, Trans::kNo, l.in, r, T(1), dyb.data(), l.lora_a, r * l.in, T(1), dx);
    } else {
      std::vector<T> dxl(sz(R * l.in));
      group_mm<T>(groups, off, Trans::kNo, l.in, r, T(1), dyb.data(), l.lora_a, r * l.in, T(0), dxl.data());
      const CounterRng rng(n.dropout_seed, l.id);  // the forward's mask
      const T keep_scale = static_cast<T>(1.0 / (1.0 - n.lora_dropout));
      const float p = static_cast<float>(n.lora_dropout);
#pragma omp parallel for if (R * l.in > (1 << 15))
      for (int64_t i = 0; i < R * l.in; ++i)
        if (!(rng.uniform(static_cast<uint64_t>(i)) < p)) dx[i] += dxl[sz(i)] * keep_scale;
    }
  }
}

uint64_t name_hash(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

template <typename T>
void bind_lora(const WeightBinding<T>& wb, const std::string& a_name, const std::string& b_name, LinearRef<T>& l) {
  if (!wb.lora) return;
  l.lora_a = wb.lora->find(a_name);
  if (!l.lora_a) return;
  l.lora_b = wb.lora->get(b_name);
  const ParamSpec& sa = wb.lora->spec(a_name);
  l.rank = sa.shape[sa.shape.size() - 2];
  l.lora_scale = static_cast<T>(wb.lora_scale);
  if (wb.lora_grads) {
    l.dlora_a = wb.lora_grads->get(a_name);
    l.dlora_b = wb.lora_grads->get(b_name);
  }
}

}  // namespace

template <typename T>
void effective_weight(const LinearRef<T>& l, int64_t group, T* out) {
  const LinearNumerics& n = numerics_of(l);
  const int64_t wsize = l.out * l.in;
  if (l.frozen) l.frozen->dequantize(group, out);
  else std::memcpy(out, l.w + group * wsize, sizeof(T) * sz(wsize));
  if (l.has_lora() && n.qat.enabled)  // M = W0 + s·B·A
    gemm<T>(Trans::kNo, Trans::kNo, l.out, l.in, l.rank, l.lora_scale, l.lora_b + group * l.out * l.rank, l.rank,
            l.lora_a + group * l.rank * l.in, l.in, T(1), out, l.in);
  const Rounding wr = weight_rounding(l, n);
  round_in_place(out, l.out, l.in, wr, ScaleRecipe::deepseek_weight(wr.scales));
}

template <typename T>
LinearRef<T> bind_linear(const WeightBinding<T>& wb, const std::string& prefix) {
  LinearRef<T> l;
  const std::string wname = prefix + ".weight", bname = prefix + ".bias";
  if (const FrozenTensor* f = wb.frozen ? wb.frozen->find(wname) : nullptr) {
    l.frozen = f;
    l.out = f->out;
    l.in = f->in;
  } else {
    const ParamSpec& spec = wb.params->spec(wname);
    l.out = spec.shape[0];
    l.in = spec.shape[1];
    l.w = wb.params->get(wname);
    if (wb.grads) l.dw = wb.grads->get(wname);
  }
  l.b = wb.params->find(bname);
  if (wb.grads && l.b) l.db = wb.grads->get(bname);
  bind_lora(wb, prefix + ".lora_A.weight", prefix + ".lora_B.weight", l);
  l.id = name_hash(prefix);
  l.numerics = wb.numerics;
  return l;
}

template <typename T>
LinearRef<T> bind_linear(const ParamStore<T>& params, ParamStore<T>* grads, const std::string& prefix) {
  WeightBinding<T> wb;
  wb.params = &params;
  wb.grads = grads;
  return bind_linear(wb, prefix);
}

template <typename T>
LinearRef<T> bind_expert_linear(const WeightBinding<T>& wb, const std::string& name) {
  LinearRef<T> l;
  if (const FrozenTensor* f = wb.frozen ? wb.frozen->find(name) : nullptr) {
    l.frozen = f;
    l.groups = f->groups;
    l.out = f->out;
    l.in = f->in;
  } else {
    const ParamSpec& spec = wb.params->spec(name);
    l.groups = spec.shape[0];
    l.out = spec.shape[1];
    l.in = spec.shape[2];
    l.w = wb.params->get(name);
    if (wb.grads) l.dw = wb.grads->get(name);
  }
  bind_lora(wb, name + ".lora_A", name + ".lora_B", l);
  l.id = name_hash(name);
  l.numerics = wb.numerics;
  return l;
}

template <typename T>
void linear_forward(const LinearRef<T>& l, const T* x, int64_t N, T* y) {
  const int64_t off[2] = {0, N};
  forward_impl(l, 1, off, x, y);
}

template <typename T>
void linear_backward(const LinearRef<T>& l, const T* dy, const T* x, int64_t N, T* dx, bool accumulate_dx) {
  const int64_t off[2] = {0, N};
  backward_impl(l, 1, off, dy, x, dx, accumulate_dx);
}

template <typename T>
void grouped_linear_forward(const LinearRef<T>& l, const int64_t* offsets, const T* x, T* y) {
  forward_impl(l, std::max<int64_t>(l.groups, 1), offsets, x, y);
}

template <typename T>
void grouped_linear_backward(const LinearRef<T>& l, const int64_t* offsets, const T* dy, const T* x, T* dx,
                             bool accumulate_dx) {
  backward_impl(l, std::max<int64_t>(l.groups, 1), offsets, dy, x, dx, accumulate_dx);
}

#define QAFT_INSTANTIATE(T)                                                                                  \
  template LinearRef<T> bind_linear<T>(const WeightBinding<T>&, const std::string&);                        \
  template LinearRef<T> bind_linear<T>(const ParamStore<T>&, ParamStore<T>*, const std::string&);           \
  template LinearRef<T> bind_expert_linear<T>(const WeightBinding<T>&, const std::string&);                 \
  template void linear_forward<T>(const LinearRef<T>&, const T*, int64_t, T*);                              \
  template void linear_backward<T>(const LinearRef<T>&, const T*, const T*, int64_t, T*, bool);             \
  template void grouped_linear_forward<T>(const LinearRef<T>&, const int64_t*, const T*, T*);               \
  template void grouped_linear_backward<T>(const LinearRef<T>&, const int64_t*, const T*, const T*, T*, bool); \
  template void effective_weight<T>(const LinearRef<T>&, int64_t, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
