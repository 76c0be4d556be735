// Choosing tokens from logits, and the generation loop around a model.
//
// Sampling (OpenAI / vLLM semantics): temperature 0 (or top_k 1) is greedy — the argmax, the lowest
// id among equal logits. Otherwise the logits are divided by the temperature, restricted to the
// top_k largest (0: all), turned into probabilities (softmax in float64), restricted to the
// smallest prefix of the sorted candidates whose probability reaches top_p (at least one token),
// and one token is drawn by inverse CDF with the uniform number CounterRng(seed, kSamplerStream)
// .uniform(index): a pure function of (seed, index), so a run is reproducible token for token.
//
// generate(): prefill the prompt, then sample / decode until a stop token id (not included in the
// output), a stop sequence in the decoded text (the text is cut before it; the token that completed
// it is kept in `tokens`), or max_tokens new tokens. finish_reason is "stop" or "length". Text is
// decoded incrementally (data/tokenizer.h IncrementalDecoder), so a stop sequence is found as soon
// as its last character is complete, also when it spans several tokens.
#pragma once

#include "data/tokenizer.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace qaft {

class InferenceModel;

inline constexpr uint64_t kSamplerStream = 0x53414d504c45ull;  // "SAMPLE"

struct SamplingParams {
  double temperature = 1.0;              // 0: greedy
  int64_t top_k = 0;                     // keep the k most likely tokens (0: all)
  double top_p = 1.0;                    // nucleus: smallest set with this much probability
  uint64_t seed = 0;                     // the random stream
  int64_t max_tokens = 16;               // new tokens at most
  std::vector<std::string> stop;         // stop sequences, on the decoded text
  std::vector<int32_t> stop_token_ids;   // e.g. the tokenizer's EOS
  bool skip_special_tokens = true;       // leave special tokens out of the text
};

// The token chosen from logits [V] for the index-th generated token. Throws kInvalidArgument for
// a negative temperature or top_k, top_p outside (0, 1], or empty logits.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t index);

struct Generation {
  std::vector<int32_t> tokens;   // the new tokens
  std::string text;              // their decoded text (cut before a stop sequence)
  std::string finish_reason;     // "stop" | "length"
};

// The model seen by generate(): feeds new tokens (the prompt first, then one token at a time) and
// returns the logits [V] after the last one.
using NextLogits = std::function<std::vector<float>(std::span<const int32_t> new_tokens)>;

Generation generate(const NextLogits& model, const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                    const SamplingParams& params);
// With a fresh sequence of `model` (prefill, then decode).
Generation generate(InferenceModel& model, const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                    const SamplingParams& params);

}  // namespace qaft
