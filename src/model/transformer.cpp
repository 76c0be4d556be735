#include "model/transformer.h"

#include "core/error.h"
#include "kernels/ops.h"

#include <fmt/format.h>

namespace qaft {

namespace {
constexpr int64_t kVocabChunk = 4096;  // LM-head rows per cross-entropy pass
}

template <typename T>
struct Transformer<T>::Layer {
  int64_t index = 0;
  bool moe = false;
  const T* norm1 = nullptr;  // [C] input_layernorm
  const T* norm2 = nullptr;  // [C] post_attention_layernorm
  T* dnorm1 = nullptr;
  T* dnorm2 = nullptr;
  MlaRef<T> mla;
  GqaRef<T> gqa;
  MlpRef<T> mlp;
  MoeRef<T> moe_ref;
  // Saved activations.
  std::vector<T> x_in, xn1, rstd1, mid, xn2, rstd2;  // [N, C] / [N]
  MlaSaved<T> mla_saved;
  GqaSaved<T> gqa_saved;
  MlpSaved<T> mlp_saved;
  MoeSaved<T> moe_saved;
};

template <typename T>
Transformer<T>::Transformer(const ModelConfig& config, const ParamStore<T>* params, ParamStore<T>* grads)
    : Transformer(config, WeightBinding<T>{params, grads, nullptr, nullptr, nullptr, 0.0, nullptr}) {}

template <typename T>
Transformer<T>::Transformer(const ModelConfig& config, const WeightBinding<T>& wb)
    : config_(config), params_(wb.params), grads_(wb.grads), has_lora_grads_(wb.lora_grads != nullptr),
      inv_freq_(config.rope_inv_freq()) {
  const ParamStore<T>* params = wb.params;
  ParamStore<T>* grads = wb.grads;
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    auto layer = std::make_unique<Layer>();
    const std::string p = fmt::format("model.layers.{}", l);
    layer->index = l;
    layer->moe = config_.is_moe_layer(l);
    layer->norm1 = params->get(p + ".input_layernorm.weight");
    layer->norm2 = params->get(p + ".post_attention_layernorm.weight");
    if (grads) {
      layer->dnorm1 = grads->get(p + ".input_layernorm.weight");
      layer->dnorm2 = grads->get(p + ".post_attention_layernorm.weight");
    }
    if (config_.attention == AttentionKind::kMla) layer->mla = bind_mla(wb, p + ".self_attn");
    else layer->gqa = bind_gqa(wb, p + ".self_attn");
    if (layer->moe) layer->moe_ref = bind_moe(wb, p + ".mlp", config_);
    else layer->mlp = bind_mlp(wb, p + ".mlp");
    layers_.push_back(std::move(layer));
  }
}

template <typename T>
Transformer<T>::~Transformer() = default;

template <typename T>
void Transformer<T>::check_batch(const Batch& b) const {
  QAFT_CHECK(b.B > 0 && b.T > 0, "empty batch: {} sequences of {} tokens", b.B, b.T);
  QAFT_CHECK(b.ids != nullptr, "batch without token ids");
  QAFT_CHECK_HINT(b.T <= config_.max_position_embeddings, ErrorKind::kInvalidArgument,
                  "shorten the sequences or use a model with a longer context",
                  "sequence length {} exceeds the model's max_position_embeddings {}", b.T,
                  config_.max_position_embeddings);
  for (int64_t i = 0; i < b.B * b.T; ++i) {
    QAFT_CHECK(b.ids[i] >= 0 && b.ids[i] < config_.vocab_size, "token id {} at position {} is outside the vocabulary [0, {})",
               b.ids[i], i, config_.vocab_size);
    if (b.targets)
      QAFT_CHECK(b.targets[i] < config_.vocab_size, "target id {} at position {} is outside the vocabulary [0, {})",
                 b.targets[i], i, config_.vocab_size);
  }
}

template <typename T>
void Transformer<T>::run_layers(const Batch& b, std::vector<T>& h) {
  const int64_t N = b.B * b.T, C = config_.hidden_size;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  positions_.resize(sz(N));
  for (int64_t i = 0; i < N; ++i) positions_[sz(i)] = b.positions ? b.positions[i] : static_cast<int32_t>(i % b.T);
  for (int64_t i = 0; i < N && b.positions; ++i)
    QAFT_CHECK(positions_[sz(i)] >= 0 && positions_[sz(i)] < config_.max_position_embeddings,
               "position {} of token {} is outside [0, {})", positions_[sz(i)], i, config_.max_position_embeddings);
  const SequenceInfo seq{b.B, b.T, positions_.data(), b.segment};

  h.resize(sz(N * C));
  embedding_forward(b.ids, N, params_->get("model.embed_tokens.weight"), config_.vocab_size, C, h.data());
  std::vector<T> scratch(sz(N * C));
  for (auto& L : layers_) {
    forward_layer(*L, seq, h, scratch);
    if (recompute_) release(*L);
  }
}

template <typename T>
void Transformer<T>::forward_layer(Layer& L, const SequenceInfo& seq, std::vector<T>& h, std::vector<T>& out) {
  const int64_t N = seq.B * seq.T, C = config_.hidden_size;
  const T eps = static_cast<T>(config_.rms_norm_eps);
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  L.x_in = h;
  L.xn1.resize(sz(N * C));
  L.rstd1.resize(sz(N));
  rmsnorm_forward(h.data(), L.norm1, N, C, C, eps, L.xn1.data(), L.rstd1.data());
  if (config_.attention == AttentionKind::kMla) mla_forward(L.mla, config_, L.xn1.data(), seq, inv_freq_, out.data(), L.mla_saved);
  else gqa_forward(L.gqa, config_, L.xn1.data(), seq, inv_freq_, out.data(), L.gqa_saved);
  for (int64_t i = 0; i < N * C; ++i) h[sz(i)] += out[sz(i)];
  L.mid = h;
  L.xn2.resize(sz(N * C));
  L.rstd2.resize(sz(N));
  rmsnorm_forward(h.data(), L.norm2, N, C, C, eps, L.xn2.data(), L.rstd2.data());
  if (L.moe) moe_forward(L.moe_ref, config_, L.xn2.data(), N, out.data(), L.moe_saved);
  else mlp_forward(L.mlp, L.xn2.data(), N, out.data(), L.mlp_saved);
  for (int64_t i = 0; i < N * C; ++i) h[sz(i)] += out[sz(i)];
}

template <typename T>
void Transformer<T>::release(Layer& L) {
  auto x_in = std::move(L.x_in);
  Layer fresh;
  fresh.index = L.index;
  fresh.moe = L.moe;
  fresh.norm1 = L.norm1;
  fresh.norm2 = L.norm2;
  fresh.dnorm1 = L.dnorm1;
  fresh.dnorm2 = L.dnorm2;
  fresh.mla = L.mla;
  fresh.gqa = L.gqa;
  fresh.mlp = L.mlp;
  fresh.moe_ref = L.moe_ref;
  fresh.x_in = std::move(x_in);
  L = std::move(fresh);
}

template <typename T>
LossResult Transformer<T>::forward(const Batch& b) {
  check_batch(b);
  batch_ = b;
  const int64_t N = b.B * b.T, C = config_.hidden_size;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  run_layers(b, final_in_);
  final_out_.resize(sz(N * C));
  final_rstd_.resize(sz(N));
  rmsnorm_forward(final_in_.data(), params_->get("model.norm.weight"), N, C, C, static_cast<T>(config_.rms_norm_eps),
                  final_out_.data(), final_rstd_.data());
  LossResult r;
  if (!b.targets) return r;
  token_weights_.assign(sz(N), T(1));
  for (int64_t i = 0; i < N; ++i) {
    if (b.weights) token_weights_[sz(i)] = static_cast<T>(b.weights[i]);
    if (b.targets[i] >= 0) {
      ++r.tokens;
      r.weight_sum += static_cast<double>(token_weights_[sz(i)]);
    }
  }
  const T* head = params_->get(config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  lse_.resize(sz(N));
  r.loss_sum = lm_head_ce_forward(final_out_.data(), head, b.targets, token_weights_.data(), N, C,
                                  config_.vocab_size, kVocabChunk, lse_.data());
  return r;
}

template <typename T>
void Transformer<T>::backward(T grad_scale) {
  QAFT_CHECK(grads_ != nullptr || has_lora_grads_, "backward() on a model built without gradient storage");
  QAFT_CHECK(batch_.targets != nullptr, "backward() needs a forward() with targets");
  const Batch& b = batch_;
  const int64_t N = b.B * b.T, C = config_.hidden_size;
  const SequenceInfo seq{b.B, b.T, positions_.data(), b.segment};
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const char* head_name = config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  auto grad = [&](const char* name) { return grads_ ? grads_->get(name) : nullptr; };  // nullptr: frozen

  std::vector<T> dfinal(sz(N * C)), dh(sz(N * C));
  lm_head_ce_backward(final_out_.data(), params_->get(head_name), b.targets, token_weights_.data(), lse_.data(), N, C,
                      config_.vocab_size, kVocabChunk, grad_scale, dfinal.data(), grad(head_name));
  rmsnorm_backward(dfinal.data(), final_in_.data(), params_->get("model.norm.weight"), final_rstd_.data(), N, C, C,
                   dh.data(), grad("model.norm.weight"));

  std::vector<T> dxn(sz(N * C)), dnorm_in(sz(N * C)), h_re, scratch;
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    Layer& L = **it;
    if (recompute_) {  // regenerate this layer's activations from its saved input
      h_re = L.x_in;
      scratch.resize(sz(N * C));
      forward_layer(L, seq, h_re, scratch);
    }
    // FFN block: h = mid + ffn(norm2(mid)).
    if (L.moe) moe_backward(L.moe_ref, config_, dh.data(), L.xn2.data(), N, L.moe_saved, dxn.data());
    else mlp_backward(L.mlp, dh.data(), L.xn2.data(), N, L.mlp_saved, dxn.data(), false);
    rmsnorm_backward(dxn.data(), L.mid.data(), L.norm2, L.rstd2.data(), N, C, C, dnorm_in.data(), L.dnorm2);
    for (int64_t i = 0; i < N * C; ++i) dh[sz(i)] += dnorm_in[sz(i)];
    // Attention block: mid = x + attn(norm1(x)).
    if (config_.attention == AttentionKind::kMla) mla_backward(L.mla, config_, dh.data(), L.xn1.data(), seq, inv_freq_, L.mla_saved, dxn.data());
    else gqa_backward(L.gqa, config_, dh.data(), L.xn1.data(), seq, inv_freq_, L.gqa_saved, dxn.data());
    rmsnorm_backward(dxn.data(), L.x_in.data(), L.norm1, L.rstd1.data(), N, C, C, dnorm_in.data(), L.dnorm1);
    for (int64_t i = 0; i < N * C; ++i) dh[sz(i)] += dnorm_in[sz(i)];
    if (recompute_) release(L);
  }
  if (grads_) embedding_backward(b.ids, N, dh.data(), config_.vocab_size, C, grads_->get("model.embed_tokens.weight"));
}

template <typename T>
void Transformer<T>::logits(const Batch& b, T* out) {
  Batch nb = b;
  nb.targets = nullptr;
  forward(nb);
  const char* head_name = config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  lm_head_logits(final_out_.data(), params_->get(head_name), b.B * b.T, config_.hidden_size, config_.vocab_size, out);
}

template <typename T>
std::vector<std::vector<int64_t>> Transformer<T>::expert_load() const {
  std::vector<std::vector<int64_t>> load;
  for (const auto& L : layers_) {
    std::vector<int64_t> l;
    if (L->moe && !L->moe_saved.offsets.empty())
      for (int64_t e = 0; e < config_.num_experts; ++e)
        l.push_back(L->moe_saved.offsets[static_cast<size_t>(e + 1)] - L->moe_saved.offsets[static_cast<size_t>(e)]);
    load.push_back(std::move(l));
  }
  return load;
}

template <typename T>
int64_t Transformer<T>::saved_activation_bytes() const {
  int64_t n = 0;
  auto add = [&](const auto& v) { n += static_cast<int64_t>(v.size() * sizeof(v[0])); };
  for (const auto& L : layers_) {
    for (const auto* v : {&L->x_in, &L->xn1, &L->rstd1, &L->mid, &L->xn2, &L->rstd2}) add(*v);
    const auto& m = L->mla_saved;
    for (const auto* v : {&m.qa, &m.qa_n, &m.qa_rstd, &m.Q, &m.kv_a, &m.lat, &m.lat_n, &m.lat_rstd, &m.K, &m.V, &m.O, &m.lse}) add(*v);
    const auto& g = L->gqa_saved;
    for (const auto* v : {&g.q_raw, &g.k_raw, &g.q_rstd, &g.k_rstd, &g.q, &g.k, &g.v, &g.O, &g.lse}) add(*v);
    for (const auto* v : {&L->mlp_saved.g, &L->mlp_saved.u, &L->mlp_saved.h}) add(*v);
    const auto& e = L->moe_saved;
    for (const auto* v : {&e.scores, &e.w, &e.xp, &e.g, &e.u, &e.h, &e.yp, &e.shared_out, &e.shared_gate_logit,
                          &e.shared.g, &e.shared.u, &e.shared.h}) add(*v);
  }
  return n;
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace qaft
