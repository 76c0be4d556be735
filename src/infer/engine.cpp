#include "infer/engine.h"

#include "core/error.h"
#include "kernels/ops.h"

#include <algorithm>
#include <unordered_set>

namespace qaft {

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

ServingNumerics serving_numerics(const InferenceOptions& o) {
  ServingNumerics n;
  n.precision = o.precision;
  n.scale_format = o.scale_format;
  n.quantize_activations = o.quantize_activations;
  return n;
}

void check_adapter(const ModelConfig& config, const PeftAdapter* adapter) {
  if (!adapter) return;
  for (const LoraTarget& t : adapter->targets)
    QAFT_CHECK_HINT(t.experts == 0 || t.experts == config.num_experts, ErrorKind::kInvalidArgument,
                    "load the adapter against the same base model", "adapter module {} has {} experts, the model {}",
                    t.module, t.experts, config.num_experts);
}

}  // namespace

InferenceModel::InferenceModel(const ModelConfig& config, const BaseModel& base, const PeftAdapter* adapter,
                               const InferenceOptions& options)
    : config_(config), options_(options), numerics_(serving_numerics(options)), inv_freq_(config.rope_inv_freq()) {
  check_adapter(config, adapter);
  weights_ = std::make_unique<ServingWeights>(
      build_serving_weights(config_, base.params, base.frozen.size() ? &base.frozen : nullptr, adapter, numerics_, report_));
}

InferenceModel::InferenceModel(const ModelConfig& config, const ParamStore<float>& params, const PeftAdapter* adapter,
                               const InferenceOptions& options)
    : config_(config), options_(options), numerics_(serving_numerics(options)), inv_freq_(config.rope_inv_freq()) {
  check_adapter(config, adapter);
  weights_ = std::make_unique<ServingWeights>(build_serving_weights(config_, params, nullptr, adapter, numerics_, report_));
}

InferenceModel::~InferenceModel() = default;
InferenceModel::InferenceModel(InferenceModel&&) noexcept = default;

void InferenceModel::check(std::span<const StepRequest> requests) const {
  std::unordered_set<const Sequence*> seen;
  for (size_t r = 0; r < requests.size(); ++r) {
    const StepRequest& q = requests[r];
    QAFT_CHECK(q.sequence != nullptr, "request {} has no sequence", r);
    QAFT_CHECK(q.sequence->num_layers() == config_.num_layers,
               "request {}: its sequence has {} layers of cache, the model {} (use the model's new_sequence())", r,
               q.sequence->num_layers(), config_.num_layers);
    QAFT_CHECK(seen.insert(q.sequence).second, "request {}: the same sequence appears twice in one step", r);
    QAFT_CHECK(!q.tokens.empty(), "request {} adds no tokens", r);
    QAFT_CHECK_HINT(q.sequence->length() + static_cast<int64_t>(q.tokens.size()) <= config_.max_position_embeddings,
                    ErrorKind::kInvalidArgument, "shorten the prompt or the generation",
                    "request {}: {} cached + {} new tokens exceed max_position_embeddings {}", r,
                    q.sequence->length(), q.tokens.size(), config_.max_position_embeddings);
    for (int32_t id : q.tokens)
      QAFT_CHECK(id >= 0 && id < config_.vocab_size, "request {}: token id {} is outside the vocabulary [0, {})", r, id,
                 config_.vocab_size);
  }
}

std::vector<std::vector<float>> InferenceModel::step(std::span<const StepRequest> requests) {
  check(requests);
  const ServingWeights& W = *weights_;
  const int64_t C = config_.hidden_size, V = config_.vocab_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);

  // The step's rows: every request's new tokens, request after request.
  StepBatch batch;
  std::vector<int32_t> ids;
  for (const StepRequest& q : requests) {
    StepPart p{q.sequence, batch.rows(), static_cast<int64_t>(q.tokens.size()), q.sequence->length()};
    for (int64_t i = 0; i < p.n; ++i) batch.positions.push_back(static_cast<int32_t>(p.past + i));
    ids.insert(ids.end(), q.tokens.begin(), q.tokens.end());
    batch.parts.push_back(p);
  }
  const int64_t N = batch.rows();

  std::vector<float> h(sz(N * C)), xn(sz(N * C)), out(sz(N * C));
  embedding_forward(ids.data(), N, W.embed.data(), V, C, h.data());
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const ServingLayer& L = W.layers[sz(l)];
    rmsnorm_forward(h.data(), L.norm1.data(), N, C, C, eps, xn.data(), static_cast<float*>(nullptr));
    if (config_.attention == AttentionKind::kMla)
      mla_step(L.mla, config_, numerics_, options_.mla_attention, inv_freq_, l, batch, xn.data(), out.data());
    else
      gqa_step(L.gqa, config_, numerics_, inv_freq_, l, batch, xn.data(), out.data());
    for (int64_t i = 0; i < N * C; ++i) h[sz(i)] += out[sz(i)];
    rmsnorm_forward(h.data(), L.norm2.data(), N, C, C, eps, xn.data(), static_cast<float*>(nullptr));
    if (L.moe) moe_step(L.moe_ffn, config_, numerics_, xn.data(), N, out.data());
    else mlp_step(L.mlp, numerics_, xn.data(), N, out.data());
    for (int64_t i = 0; i < N * C; ++i) h[sz(i)] += out[sz(i)];
  }
  for (size_t r = 0; r < requests.size(); ++r)
    requests[r].sequence->append_tokens(requests[r].tokens.data(), static_cast<int64_t>(requests[r].tokens.size()));

  // Final norm and LM head on the rows whose logits are wanted.
  std::vector<int64_t> rows;
  for (size_t r = 0; r < requests.size(); ++r) {
    const StepPart& p = batch.parts[r];
    for (int64_t i = requests[r].all_logits ? 0 : p.n - 1; i < p.n; ++i) rows.push_back(p.row0 + i);
  }
  const int64_t M = static_cast<int64_t>(rows.size());
  std::vector<float> hs(sz(M * C)), logits(sz(M * V));
  for (int64_t m = 0; m < M; ++m) std::copy_n(&h[sz(rows[sz(m)] * C)], C, &hs[sz(m * C)]);
  rmsnorm_forward(hs.data(), W.final_norm.data(), M, C, C, eps, hs.data(), static_cast<float*>(nullptr));
  lm_head_logits(hs.data(), W.head.data(), M, C, V, logits.data());

  std::vector<std::vector<float>> result;
  int64_t m = 0;
  for (const StepRequest& q : requests) {
    const int64_t k = q.all_logits ? static_cast<int64_t>(q.tokens.size()) : 1;
    result.emplace_back(logits.begin() + m * V, logits.begin() + (m + k) * V);
    m += k;
  }
  return result;
}

std::vector<float> InferenceModel::prefill(Sequence& sequence, std::span<const int32_t> tokens, bool all_logits) {
  const StepRequest r{&sequence, tokens, all_logits};
  return std::move(step(std::span<const StepRequest>(&r, 1))[0]);
}

std::vector<float> InferenceModel::decode(Sequence& sequence, int32_t token) {
  return prefill(sequence, std::span<const int32_t>(&token, 1));
}

}  // namespace qaft
