// Shared pieces of the training tests: tiny model configs by family and a learnable dataset.
#pragma once

#include "core/rng.h"
#include "data/dataset.h"
#include "model/config.h"
#include "model_configs.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace qaft::test {

inline ModelConfig tiny(const std::string& family) {
  for (auto& [name, json] : tiny_model_configs())
    if (name == family) return model_config_from_json(json, name);
  throw std::runtime_error("no config " + family);
}

// n sequences of 24 tokens that repeat a short random motif: learnable, so the loss must fall.
inline std::shared_ptr<const std::vector<Example>> motif_data(const ModelConfig& c, int64_t n, uint64_t seed) {
  auto data = std::make_shared<std::vector<Example>>();
  CounterRng rng(seed, 0);
  for (int64_t e = 0; e < n; ++e) {
    Example ex;
    ex.line = e + 1;
    const int64_t period = 3 + e % 3;
    for (int64_t t = 0; t < 24; ++t)
      ex.ids.push_back(static_cast<int32_t>(rng.u32(static_cast<uint64_t>(e * 100 + t % period)) % c.vocab_size));
    ex.loss_mask.assign(ex.ids.size(), 1);
    data->push_back(std::move(ex));
  }
  return data;
}

}  // namespace qaft::test
