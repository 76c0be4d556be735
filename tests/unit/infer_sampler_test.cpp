// Token sampling and the generation loop (infer/sampler.h):
//   - greedy is the argmax (lowest id among ties); top_k = 1 and a tiny top_p are greedy too;
//   - seeded sampling is a pure function of (seed, index) and follows the softmax probabilities;
//     top_k and top_p never pick outside their sets;
//   - generate() stops on a stop sequence (cut from the text, also across tokens), on a stop token
//     id, or after max_tokens ("length"); streamed UTF-8 comes out whole;
//   - generate() over the engine equals greedy decoding by full recomputation.
#include "core/error.h"
#include "infer/engine.h"
#include "infer/sampler.h"
#include "infer_fixtures.h"
#include "tiny_chat_tokenizer.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qaft;
using namespace qaft::test;

namespace {

SamplingParams sampling(double temperature, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

std::vector<float> log_probs(std::initializer_list<double> p, int64_t V = 10) {
  std::vector<float> l(static_cast<size_t>(V), -1e9f);
  int i = 0;
  for (double x : p) l[static_cast<size_t>(i++)] = static_cast<float>(std::log(x));
  return l;
}

// A model that "says" `script` (bytes of the tiny tokenizer), one token per call, whatever it is fed;
// records what it was fed.
struct ScriptedModel {
  explicit ScriptedModel(std::vector<int32_t> s) : script(std::move(s)) {}
  std::vector<int32_t> script;
  size_t next = 0;
  std::vector<int32_t> fed;
  std::vector<float> operator()(std::span<const int32_t> ids) {
    fed.insert(fed.end(), ids.begin(), ids.end());
    std::vector<float> l(258, 0.0f);
    l[static_cast<size_t>(next < script.size() ? script[next] : 'x')] = 10.0f;
    ++next;
    return l;
  }
};

std::vector<int32_t> bytes(const std::string& s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}

}  // namespace

TEST(InferSampler, GreedyIsTheArgmaxWithTheLowestIdAmongTies) {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  EXPECT_EQ(sample_token(l, sampling(0), 0), 1);
  std::vector<float> r(1000);
  CounterRng(3, 0).fill_normal(r.data(), 1000, 0.0f, 1.0f);
  EXPECT_EQ(sample_token(r, sampling(0), 5), std::max_element(r.begin(), r.end()) - r.begin());
}

TEST(InferSampler, SeededSamplingIsDeterministicAndFollowsTheProbabilities) {
  const std::vector<float> l = log_probs({0.6, 0.3, 0.1});
  std::vector<int> count(3, 0);
  const int n = 6000;
  for (int i = 0; i < n; ++i) {
    const int32_t t = sample_token(l, sampling(1.0, 42), static_cast<uint64_t>(i));
    ASSERT_LT(t, 3);
    ASSERT_EQ(t, sample_token(l, sampling(1.0, 42), static_cast<uint64_t>(i)));  // a pure function
    ++count[static_cast<size_t>(t)];
  }
  EXPECT_NEAR(count[0] / double(n), 0.6, 0.03);
  EXPECT_NEAR(count[1] / double(n), 0.3, 0.03);
  EXPECT_NEAR(count[2] / double(n), 0.1, 0.02);
  int differ = 0;  // another seed is another stream
  for (int i = 0; i < 200; ++i)
    differ += sample_token(l, sampling(1.0, 42), static_cast<uint64_t>(i)) != sample_token(l, sampling(1.0, 43), static_cast<uint64_t>(i));
  EXPECT_GT(differ, 40);
}

TEST(InferSampler, TopKOneAndATinyTopPAreGreedy) {
  std::vector<float> l(500);
  CounterRng(9, 0).fill_normal(l.data(), 500, 0.0f, 2.0f);
  const int32_t greedy = sample_token(l, sampling(0), 0);
  for (uint64_t i = 0; i < 50; ++i) {
    SamplingParams k1 = sampling(1.5, i);
    k1.top_k = 1;
    EXPECT_EQ(sample_token(l, k1, i), greedy);
    SamplingParams p0 = sampling(1.5, i);
    p0.top_p = 1e-9;
    EXPECT_EQ(sample_token(l, p0, i), greedy);
  }
}

TEST(InferSampler, TopKAndTopPNeverPickOutsideTheirSets) {
  const std::vector<float> l = log_probs({0.4, 0.3, 0.2, 0.1});
  SamplingParams k2 = sampling(1.0, 5);
  k2.top_k = 2;
  SamplingParams p = sampling(1.0, 6);
  p.top_p = 0.65;  // {0.4, 0.3} reaches 0.7
  std::vector<int> seen_k(4, 0), seen_p(4, 0);
  for (uint64_t i = 0; i < 2000; ++i) {
    ++seen_k[static_cast<size_t>(sample_token(l, k2, i))];
    ++seen_p[static_cast<size_t>(sample_token(l, p, i))];
  }
  EXPECT_EQ(seen_k[2] + seen_k[3], 0);
  EXPECT_EQ(seen_p[2] + seen_p[3], 0);
  EXPECT_GT(seen_k[1], 600);  // renormalised: 0.3 / 0.7 of the draws
  EXPECT_GT(seen_p[1], 600);
  // A low temperature sharpens towards the argmax.
  int top = 0;
  for (uint64_t i = 0; i < 500; ++i) top += sample_token(l, sampling(0.05, 7), i) == 0;
  EXPECT_GT(top, 490);
}

TEST(InferSampler, BadParametersAreErrors) {
  const std::vector<float> l = {1.0f, 2.0f};
  SamplingParams p = sampling(-1);
  EXPECT_THROW(sample_token(l, p, 0), Error);
  p = sampling(1);
  p.top_p = 0;
  EXPECT_THROW(sample_token(l, p, 0), Error);
  p = sampling(1);
  p.top_k = -2;
  EXPECT_THROW(sample_token(l, p, 0), Error);
  EXPECT_THROW(sample_token(std::vector<float>{}, sampling(0), 0), Error);
}

TEST(InferGenerate, AStopSequenceCutsTheTextEvenAcrossTokens) {
  const Tokenizer tok = tiny_chat_tokenizer();
  ScriptedModel m{bytes("Hello, world. STOP here")};
  SamplingParams p = sampling(0);
  p.max_tokens = 100;
  p.stop = {"ST" "OP", "never"};
  const std::vector<int32_t> prompt = bytes("Hi");
  const Generation g = generate(std::ref(m), tok, prompt, p);
  EXPECT_EQ(g.text, "Hello, world. ");
  EXPECT_EQ(g.finish_reason, "stop");
  EXPECT_EQ(g.tokens, bytes("Hello, world. STOP"));  // the token that completed the stop is kept
  // The prompt was fed once, then every generated token but the last.
  std::vector<int32_t> fed = prompt;
  const std::vector<int32_t> gen = bytes("Hello, world. STO");
  fed.insert(fed.end(), gen.begin(), gen.end());
  EXPECT_EQ(m.fed, fed);
}

TEST(InferGenerate, StopTokenIdsAndMaxTokens) {
  const Tokenizer tok = tiny_chat_tokenizer();
  {
    ScriptedModel m{bytes("abc")};
    m.script.push_back(257);  // <|im_end|>
    SamplingParams p = sampling(0);
    p.max_tokens = 10;
    p.stop_token_ids = {257};
    const Generation g = generate(std::ref(m), tok, bytes("x"), p);
    EXPECT_EQ(g.text, "abc");
    EXPECT_EQ(g.tokens, bytes("abc"));  // the stop token is not part of the output
    EXPECT_EQ(g.finish_reason, "stop");
  }
  {
    ScriptedModel m{bytes("abcdefgh")};
    SamplingParams p = sampling(0);
    p.max_tokens = 5;
    const Generation g = generate(std::ref(m), tok, bytes("x"), p);
    EXPECT_EQ(g.text, "abcde");
    EXPECT_EQ(g.tokens.size(), 5u);
    EXPECT_EQ(g.finish_reason, "length");
    EXPECT_EQ(m.next, 5u);  // no model call after the last token
  }
  {
    ScriptedModel m{bytes("abc")};
    SamplingParams p = sampling(0);
    p.max_tokens = 0;
    const Generation g = generate(std::ref(m), tok, bytes("x"), p);
    EXPECT_TRUE(g.tokens.empty());
    EXPECT_EQ(g.finish_reason, "length");
  }
}

TEST(InferGenerate, Utf8CharactersSplitOverTokensComeOutWhole) {
  const Tokenizer tok = tiny_chat_tokenizer();
  ScriptedModel m{bytes("caf\xC3\xA9 \xE2\x82\xAC!")};  // "café €!"
  SamplingParams p = sampling(0);
  p.max_tokens = 9;
  p.stop = {"\xE2\x82\xAC"};
  const Generation g = generate(std::ref(m), tok, bytes("x"), p);
  EXPECT_EQ(g.text, "caf\xC3\xA9 ");
  EXPECT_EQ(g.finish_reason, "stop");
}

TEST(InferGenerate, OverTheEngineEqualsGreedyDecodingByFullRecomputation) {
  ModelConfig c = tiny_config("deepseek_v3");
  c.vocab_size = 258;  // the tiny tokenizer's
  const ParamStore<float> params = random_params(c, 31, 0.2);
  InferenceOptions o;
  o.precision = Precision::kF32;
  InferenceModel m(c, params, nullptr, o);
  const Tokenizer tok = tiny_chat_tokenizer();
  SamplingParams p = sampling(0);
  p.max_tokens = 12;
  const std::vector<int32_t> prompt = bytes("Hello");
  const Generation g = generate(m, tok, prompt, p);
  EXPECT_EQ(g.finish_reason, "length");
  ASSERT_EQ(g.tokens.size(), 12u);

  std::vector<int32_t> ctx = prompt;
  for (int32_t t : g.tokens) {
    Sequence fresh = m.new_sequence();
    const std::vector<float> l = m.prefill(fresh, ctx);
    EXPECT_EQ(sample_token(l, p, 0), t);
    ctx.push_back(t);
  }
  // Seeded sampling over the engine is reproducible.
  SamplingParams s = sampling(0.8, 77);
  s.max_tokens = 12;
  s.top_p = 0.9;
  EXPECT_EQ(generate(m, tok, prompt, s).tokens, generate(m, tok, prompt, s).tokens);
}
