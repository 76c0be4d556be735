#include "infer/sampler.h"

#include "core/error.h"
#include "core/rng.h"
#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qaft {

namespace {

int32_t argmax(std::span<const float> logits) {
  int64_t best = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(logits.size()); ++i)
    if (logits[static_cast<size_t>(i)] > logits[static_cast<size_t>(best)]) best = i;
  return static_cast<int32_t>(best);
}

void check_params(const SamplingParams& p) {
  QAFT_CHECK(p.temperature >= 0 && std::isfinite(p.temperature), "temperature must be >= 0, got {}", p.temperature);
  QAFT_CHECK(p.top_k >= 0, "top_k must be >= 0 (0 = off), got {}", p.top_k);
  QAFT_CHECK(p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], got {}", p.top_p);
  QAFT_CHECK(p.max_tokens >= 0, "max_tokens must be >= 0, got {}", p.max_tokens);
}

// The earliest occurrence of any stop sequence in text at or after `from`, or npos.
size_t find_stop(const std::string& text, size_t from, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t start = from >= s.size() - 1 ? from - (s.size() - 1) : 0;
    const size_t at = text.find(s, start);
    if (at < best) best = at;
  }
  return best;
}

}  // namespace

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t index) {
  check_params(params);
  QAFT_CHECK(!logits.empty(), "sample_token: empty logits");
  if (params.temperature == 0 || params.top_k == 1) return argmax(logits);

  // Candidates by logit, largest first (lowest id first among equals), cut to top_k.
  const int64_t V = static_cast<int64_t>(logits.size());
  const int64_t k = params.top_k > 0 ? std::min(params.top_k, V) : V;
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
  order.resize(static_cast<size_t>(k));

  // Softmax of logit / temperature over the candidates, then the nucleus.
  std::vector<double> prob(order.size());
  const double mx = logits[static_cast<size_t>(order[0])];
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i)
    total += prob[i] = std::exp((static_cast<double>(logits[static_cast<size_t>(order[i])]) - mx) / params.temperature);
  size_t kept = order.size();
  if (params.top_p < 1) {
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += prob[i] / total;
      if (cum >= params.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (size_t i = 0; i < kept; ++i) mass += prob[i];
  const double u = static_cast<double>(CounterRng(params.seed, kSamplerStream).uniform(index)) * mass;
  double cum = 0;
  for (size_t i = 0; i < kept; ++i) {
    cum += prob[i];
    if (u < cum) return order[i];
  }
  return order[kept - 1];
}

Generation generate(const NextLogits& model, const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                    const SamplingParams& params) {
  check_params(params);
  QAFT_CHECK(!prompt_ids.empty(), "generate: the prompt has no tokens");
  Generation g;
  g.finish_reason = "length";
  if (params.max_tokens == 0) return g;
  IncrementalDecoder decoder(tokenizer, params.skip_special_tokens);
  std::vector<float> logits = model(prompt_ids);
  for (int64_t i = 0; i < params.max_tokens; ++i) {
    const int32_t t = sample_token(logits, params, static_cast<uint64_t>(i));
    if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), t) != params.stop_token_ids.end()) {
      g.finish_reason = "stop";
      break;
    }
    g.tokens.push_back(t);
    const size_t checked = g.text.size();
    g.text += decoder.push(t);
    if (i + 1 == params.max_tokens) g.text += decoder.flush();
    if (const size_t at = find_stop(g.text, checked, params.stop); at != std::string::npos) {
      g.text.resize(at);
      g.finish_reason = "stop";
      return g;
    }
    if (i + 1 < params.max_tokens) logits = model(std::span<const int32_t>(&t, 1));
  }
  if (g.finish_reason == "stop") {
    const size_t checked = g.text.size();
    g.text += decoder.flush();
    if (const size_t at = find_stop(g.text, checked, params.stop); at != std::string::npos) g.text.resize(at);
  }
  return g;
}

Generation generate(InferenceModel& model, const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                    const SamplingParams& params) {
  Sequence seq = model.new_sequence();
  return generate([&](std::span<const int32_t> ids) { return model.prefill(seq, ids); }, tokenizer, prompt_ids, params);
}

}  // namespace qaft
