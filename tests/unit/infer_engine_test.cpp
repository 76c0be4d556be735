// The serving engine (infer/engine.h) against the training forward and against itself:
//   - with exact fp32 weights (Precision::kF32) its logits are the Transformer's (double and float)
//     for every model family, to 1e-4 of the largest logit;
//   - decoding token by token over the KV cache gives the logits of one full prefill (absorbed MLA
//     decode vs naive prefill), as do chunked prefills and the naive/absorbed modes on their own;
//   - a step that batches several requests (prefill chunks and decode tokens together) gives each
//     request the logits it gets alone;
//   - the MLA cache holds Rkv + Dr floats per token and layer; FP8 weights take ≈ 1 byte per parameter;
//   - bad requests are refused before anything changes.
#include "core/error.h"
#include "infer/engine.h"
#include "infer_fixtures.h"
#include "model/transformer.h"

#include <gtest/gtest.h>

using namespace qaft;
using namespace qaft::test;

namespace {

const char* const kFamilies[] = {"deepseek_v3", "deepseek_v2_lite", "llama", "qwen2", "qwen3_moe", "qwen2_moe"};

template <typename T>
std::vector<T> training_logits(const ModelConfig& c, const ParamStore<T>& p, const std::vector<int32_t>& ids) {
  Transformer<T> model(c, &p, nullptr);
  Batch b;
  b.B = 1;
  b.T = static_cast<int64_t>(ids.size());
  b.ids = ids.data();
  std::vector<T> out(ids.size() * static_cast<size_t>(c.vocab_size));
  model.logits(b, out.data());
  return out;
}

// Logits [n, V] of decoding `ids` one token at a time (the first one as a one-token prefill).
std::vector<float> decode_one_by_one(InferenceModel& m, const std::vector<int32_t>& ids) {
  Sequence s = m.new_sequence();
  std::vector<float> all;
  for (int32_t t : ids) {
    const std::vector<float> l = m.decode(s, t);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

// Bytes and parameters of every serving linear of a model.
template <typename F>
void for_each_linear(const InferenceModel& m, F&& f) {
  for (const ServingLayer& L : m.weights().layers) {
    for (const InferLinear* l : {&L.mla.q_a, &L.mla.q_b, &L.mla.q, &L.mla.kv_a, &L.mla.kv_b, &L.mla.o, &L.gqa.q, &L.gqa.k,
                                 &L.gqa.v, &L.gqa.o, &L.mlp.gate, &L.mlp.up, &L.mlp.down, &L.moe_ffn.gate, &L.moe_ffn.up,
                                 &L.moe_ffn.down, &L.moe_ffn.shared.gate, &L.moe_ffn.shared.up, &L.moe_ffn.shared.down})
      if (!l->empty()) f(*l);
  }
}
int64_t linear_bytes(const InferenceModel& m) {
  int64_t n = 0;
  for_each_linear(m, [&](const InferLinear& l) { n += l.bytes(); });
  return n;
}
int64_t linear_parameters(const InferenceModel& m) {
  int64_t n = 0;
  for_each_linear(m, [&](const InferLinear& l) { n += std::max<int64_t>(l.groups(), 1) * l.out() * l.in(); });
  return n;
}

InferenceOptions opts(Precision p, MlaAttention mla = MlaAttention::kAuto) {
  InferenceOptions o;
  o.precision = p;
  o.mla_attention = mla;
  return o;
}

}  // namespace

TEST(InferEngine, F32LogitsEqualTheTrainingForwardForEveryFamily) {
  for (const char* family : kFamilies) {
    const ModelConfig c = tiny_config(family);
    const ParamStore<float> p = random_params(c, 3, 0.1);
    const std::vector<int32_t> ids = random_tokens(19, c.vocab_size, 4);
    InferenceModel engine(c, p, nullptr, opts(Precision::kF32));
    Sequence s = engine.new_sequence();
    const std::vector<float> got = engine.prefill(s, ids, /*all_logits=*/true);
    ASSERT_EQ(got.size(), ids.size() * static_cast<size_t>(c.vocab_size));
    const double vs_double = relative_max_error(got, training_logits<double>(c, to_double(p), ids));
    const double vs_float = relative_max_error(got, training_logits<float>(c, p, ids));
    EXPECT_LT(vs_double, 1e-4) << family;
    EXPECT_LT(vs_float, 1e-4) << family;
    std::printf("%-17s f32 engine vs Transformer<double>: %.2e, vs <float>: %.2e (max |Δ| / max |logit|)\n", family,
                vs_double, vs_float);
  }
}

TEST(InferEngine, DecodingTokenByTokenEqualsOneFullPrefill) {
  for (const char* family : {"deepseek_v3", "deepseek_v2_lite", "qwen3_moe", "llama"}) {
    const ModelConfig c = tiny_config(family);
    const ParamStore<float> p = random_params(c, 5, 0.1);
    const std::vector<int32_t> ids = random_tokens(23, c.vocab_size, 6);
    for (Precision prec : {Precision::kF32, Precision::kBf16, Precision::kFp8}) {
      InferenceModel m(c, p, nullptr, opts(prec));
      Sequence s = m.new_sequence();
      const std::vector<float> full = m.prefill(s, ids, true);  // naive MLA
      const std::vector<float> step = decode_one_by_one(m, ids);  // absorbed MLA after the first token
      const double err = relative_max_error(step, full);
      // FP8 W8A8: a one-ulp difference in a linear's input can move one activation code by one step.
      EXPECT_LT(err, prec == Precision::kFp8 ? 2e-3 : 2e-5) << family << " " << precision_name(prec);
      std::printf("%-17s %-4s decode-by-token vs prefill: %.2e\n", family, std::string(precision_name(prec)).c_str(), err);
    }
  }
}

TEST(InferEngine, MlaAbsorbedEqualsNaiveAndChunkedPrefillEqualsOnePrefill) {
  const ModelConfig c = tiny_config("deepseek_v3");
  const ParamStore<float> p = random_params(c, 7, 0.1);
  const std::vector<int32_t> ids = random_tokens(30, c.vocab_size, 8);
  InferenceModel naive(c, p, nullptr, opts(Precision::kF32, MlaAttention::kNaive));
  InferenceModel absorbed(c, p, nullptr, opts(Precision::kF32, MlaAttention::kAbsorbed));
  Sequence a = naive.new_sequence(), b = absorbed.new_sequence();
  const std::vector<float> ln = naive.prefill(a, ids, true), la = absorbed.prefill(b, ids, true);
  EXPECT_LT(relative_max_error(la, ln), 1e-5);

  // Chunks of 11, 1 and 18 tokens: the later chunks attend over the cached latents.
  InferenceModel m(c, p, nullptr, opts(Precision::kF32));
  Sequence s = m.new_sequence();
  std::vector<float> chunked;
  for (auto [from, to] : {std::pair{0, 11}, std::pair{11, 12}, std::pair{12, 30}}) {
    const std::vector<float> l = m.prefill(s, std::span<const int32_t>(ids).subspan(static_cast<size_t>(from), static_cast<size_t>(to - from)), true);
    chunked.insert(chunked.end(), l.begin(), l.end());
  }
  EXPECT_EQ(s.length(), 30);
  EXPECT_LT(relative_max_error(chunked, ln), 1e-5);
}

TEST(InferEngine, OneBatchedStepGivesEveryRequestItsOwnLogits) {
  for (const char* family : {"deepseek_v3", "qwen3_moe"}) {
    const ModelConfig c = tiny_config(family);
    const ParamStore<float> p = random_params(c, 9, 0.1);
    for (Precision prec : {Precision::kFp8, Precision::kF32}) {
      InferenceModel m(c, p, nullptr, opts(prec));
      const std::vector<int32_t> a = random_tokens(9, c.vocab_size, 1), b = random_tokens(5, c.vocab_size, 2),
                                 d = random_tokens(12, c.vocab_size, 3);
      // Alone: A prefills 8 then decodes its 9th token; B prefills 5; D prefills 12.
      Sequence a1 = m.new_sequence(), b1 = m.new_sequence(), d1 = m.new_sequence();
      m.prefill(a1, std::span<const int32_t>(a).first(8));
      const std::vector<float> a_alone = m.decode(a1, a[8]);
      const std::vector<float> b_alone = m.prefill(b1, b, true);
      const std::vector<float> d_alone = m.prefill(d1, d);
      // Batched: A's decode token, B's prompt and D's prompt in one step.
      Sequence a2 = m.new_sequence(), b2 = m.new_sequence(), d2 = m.new_sequence();
      m.prefill(a2, std::span<const int32_t>(a).first(8));
      const std::vector<StepRequest> reqs = {{&a2, std::span<const int32_t>(a).subspan(8), false},
                                             {&b2, b, true},
                                             {&d2, d, false}};
      const auto out = m.step(reqs);
      ASSERT_EQ(out.size(), 3u);
      const double tol = prec == Precision::kFp8 ? 1e-5 : 1e-5;
      EXPECT_LT(relative_max_error(out[0], a_alone), tol) << family;
      EXPECT_LT(relative_max_error(out[1], b_alone), tol) << family;
      EXPECT_LT(relative_max_error(out[2], d_alone), tol) << family;
      EXPECT_EQ(a2.length(), 9);
      EXPECT_EQ(b2.tokens(), b);
    }
  }
}

TEST(InferEngine, CacheAndWeightMemory) {
  const ModelConfig c = parity_config();
  const ParamStore<float> p = random_params(c, 11, 0.05);
  InferenceModel fp8(c, p, nullptr, opts(Precision::kFp8)), bf16(c, p, nullptr, opts(Precision::kBf16)),
      f32(c, p, nullptr, opts(Precision::kF32));
  Sequence s = fp8.new_sequence();
  fp8.prefill(s, random_tokens(10, c.vocab_size, 1));
  // MLA caches the latent and the shared RoPE key only: (Rkv + Dr) floats per token and layer.
  EXPECT_EQ(s.cache_bytes(), 10 * c.num_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4);
  // Serving linears: E4M3 ≈ 1 byte per parameter (+ panel padding and one fp32 scale per 128×128),
  // BF16 ≈ 2, f32 4.
  const double params = static_cast<double>(linear_parameters(f32));
  EXPECT_EQ(linear_bytes(f32), 4 * linear_parameters(f32));
  EXPECT_LT(static_cast<double>(linear_bytes(fp8)) / params, 1.15);
  EXPECT_LT(static_cast<double>(linear_bytes(bf16)) / params, 2.3);
  EXPECT_EQ(fp8.merge_report().merged, 0);
  EXPECT_GT(fp8.merge_report().linears, 0);

  const ModelConfig g = tiny_config("llama");
  InferenceModel gm(g, random_params(g, 1, 0.1), nullptr, opts(Precision::kF32));
  Sequence gs = gm.new_sequence();
  gm.prefill(gs, random_tokens(6, g.vocab_size, 2));
  EXPECT_EQ(gs.cache_bytes(), 6 * g.num_layers * 2 * g.num_kv_heads * g.head_dim * 4);
}

TEST(InferEngine, BadRequestsAreRefusedBeforeAnythingChanges) {
  const ModelConfig c = tiny_config("deepseek_v3");
  InferenceModel m(c, random_params(c, 1, 0.1), nullptr, opts(Precision::kFp8));
  Sequence s = m.new_sequence();
  m.prefill(s, random_tokens(3, c.vocab_size, 1));
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(c.vocab_size)};
  EXPECT_THROW(m.prefill(s, bad), Error);
  EXPECT_THROW(m.prefill(s, std::span<const int32_t>()), Error);
  const std::vector<int32_t> one = {2};
  const std::vector<StepRequest> twice = {{&s, one, false}, {&s, one, false}};
  EXPECT_THROW(m.step(twice), Error);
  EXPECT_THROW(m.prefill(s, random_tokens(c.max_position_embeddings, c.vocab_size, 2)), Error);
  Sequence foreign(1);
  EXPECT_THROW(m.prefill(foreign, one), Error);
  EXPECT_EQ(s.length(), 3);
  EXPECT_EQ(s.cache_bytes(), 3 * c.num_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4);
}
