#include "eval/evaluate.h"

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "infer/engine.h"
#include "io/safetensors_index.h"
#include "kernels/ops.h"
#include "model/transformer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

namespace qaft {
namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

// One evaluation record: the prompt as served (chat rendered with the generation prompt), the full
// conversation as trained (ids + loss mask over the answer), and the reference answer.
struct Record {
  int64_t line = 0;
  std::vector<int32_t> prompt;
  RenderedChat full;
  std::string reference;
};

std::vector<Record> read_records(const EvalOptions& o, const Tokenizer& tok, const ChatTemplate& tpl) {
  std::vector<Record> out;
  LineReader reader(o.dataset, size_t{64} << 20);
  std::string text;
  bool too_long = false;
  while (reader.next(text, too_long)) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const int64_t line = reader.line_number();
    QAFT_CHECK_HINT(!too_long, ErrorKind::kInvalidFile, "", "{}:{}: line too long", o.dataset, line);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      QAFT_FAIL(ErrorKind::kInvalidFile, "run `qaft dataset validate` on the file", "{}:{}: {}", o.dataset, line, e.what());
    }
    Record r;
    r.line = line;
    if (j.contains("messages")) {
      std::vector<ChatMessage> msgs;
      for (const auto& m : j.at("messages")) msgs.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
      QAFT_CHECK_HINT(!msgs.empty() && msgs.back().role == "assistant", ErrorKind::kInvalidFile,
                      "each record must end with the assistant's reference answer",
                      "{}:{}: the last message is not an assistant message", o.dataset, line);
      r.reference = msgs.back().content;
      r.full = tpl.render(msgs);
      msgs.pop_back();
      ChatRenderOptions gen;
      gen.add_generation_prompt = true;
      r.prompt = tpl.render(msgs, gen).ids;
    } else if (j.contains("prompt") && j.contains("completion")) {
      r.reference = j.at("completion").get<std::string>();
      r.prompt = tok.encode(j.at("prompt").get<std::string>(), true);
      r.full.ids = r.prompt;
      r.full.loss_mask.assign(r.prompt.size(), 0);
      EncodeOptions eo;
      eo.add_special_tokens = false;
      tok.encode_append(r.reference, eo, r.full.ids);
      if (auto eos = tok.eos_id()) r.full.ids.push_back(*eos);
      r.full.loss_mask.resize(r.full.ids.size(), 1);
    } else {
      QAFT_FAIL(ErrorKind::kInvalidFile, "use chat records (\"messages\") or prompt/completion records",
                "{}:{}: neither \"messages\" nor \"prompt\"/\"completion\"", o.dataset, line);
    }
    out.push_back(std::move(r));
    if (o.max_examples > 0 && static_cast<int64_t>(out.size()) >= o.max_examples) break;
  }
  QAFT_CHECK_HINT(!out.empty(), ErrorKind::kInvalidFile, "give a JSONL file with at least one record", "{} holds no record",
                  o.dataset);
  return out;
}

int32_t argmax(const std::vector<float>& x, size_t off, int64_t V) {
  return static_cast<int32_t>(std::max_element(x.begin() + static_cast<std::ptrdiff_t>(off),
                                               x.begin() + static_cast<std::ptrdiff_t>(off) + V) -
                              (x.begin() + static_cast<std::ptrdiff_t>(off)));
}

// Greedy generation for a batch of prompts at once (continuous batching through step()).
// Only ids the tokenizer knows are chosen (a model's vocabulary may be padded beyond it).
std::vector<std::vector<int32_t>> greedy_batch(InferenceModel& model, const std::vector<const Record*>& recs,
                                               int64_t max_new, std::optional<int32_t> eos, int64_t tokenizer_vocab,
                                               int64_t& generated) {
  const int64_t V = std::min<int64_t>(model.config().vocab_size, tokenizer_vocab);
  const int64_t limit = model.config().max_position_embeddings;
  std::vector<Sequence> seqs;
  seqs.reserve(recs.size());
  std::vector<StepRequest> reqs;
  for (const Record* r : recs) {
    seqs.push_back(model.new_sequence());
    reqs.push_back({&seqs.back(), std::span<const int32_t>(r->prompt), false});
  }
  std::vector<std::vector<int32_t>> out(recs.size());
  std::vector<int32_t> last(recs.size());
  std::vector<size_t> active(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) active[i] = i;
  auto logits = model.step(reqs);
  while (!active.empty()) {
    std::vector<size_t> next;
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t i = active[k];
      const int32_t t = argmax(logits[k], 0, V);
      ++generated;
      if (eos && t == *eos) continue;
      out[i].push_back(t);
      if (static_cast<int64_t>(out[i].size()) < max_new && seqs[i].length() + 1 < limit) next.push_back(i);
      last[i] = t;
    }
    active = std::move(next);
    if (active.empty()) break;
    reqs.clear();
    for (size_t i : active) reqs.push_back({&seqs[i], std::span<const int32_t>(&last[i], 1), false});
    logits = model.step(reqs);
  }
  return out;
}

std::string reference_name(bool qat, ScaleFormat sf) {
  return qat ? fmt::format("QAT fp8 ({} scales, activations 1x128)", scale_format_name(sf)) : "exact (no QAT)";
}

}  // namespace

std::string normalize_answer(const std::string& s) {
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  while (!out.empty() && std::string_view(".!?,;:\"'").find(out.back()) != std::string_view::npos) out.pop_back();
  return out;
}

double EvalReport::perplexity() const { return std::exp(nll_mean); }

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j = {{"examples", examples},
                      {"served", served},
                      {"reference_numerics", reference},
                      {"base_format", base_format},
                      {"accuracy", accuracy()},
                      {"correct", correct},
                      {"majority_share", majority_share},
                      {"classes", classes},
                      {"confusion", confusion},
                      {"generated_tokens", generated_tokens},
                      {"generation_tokens_per_second",
                       generation_seconds > 0 ? static_cast<double>(generated_tokens) / generation_seconds : 0.0},
                      {"answer_tokens", answer_tokens},
                      {"nll_mean", nll_mean},
                      {"nll_se", nll_se},
                      {"perplexity", perplexity()}};
  if (vs_served.tokens() > 0) j["parity_vs_served"] = vs_served.to_json();
  if (vs_bf16.tokens() > 0) j["parity_vs_bf16"] = vs_bf16.to_json();
  return j;
}

std::string EvalReport::to_text() const {
  std::string s;
  s += fmt::format("served           {} (base stored {})\n", served, base_format);
  s += fmt::format("examples         {}\n", examples);
  if (!classes.empty()) {
    s += fmt::format("accuracy         {:.2f} % ({} / {}); majority class {:.2f} %\n", 100 * accuracy(), correct, examples,
                     100 * majority_share);
  }
  s += fmt::format("perplexity       {:.4f} (answer NLL {:.4f} ± {:.4f} over {} tokens)\n", perplexity(), nll_mean, nll_se,
                   answer_tokens);
  if (vs_served.tokens() > 0) {
    s += fmt::format("parity           training-time numerics: {}\n", reference);
    s += fmt::format("  {:<22} {:>8} {:>9} {:>11} {:>11} {:>11}\n", "against", "tokens", "top-1", "KL mean", "KL p99", "KL max");
    auto row = [&](const std::string& name, const TokenDivergence& d) {
      s += fmt::format("  {:<22} {:>8} {:>8.3f}% {:>11.3e} {:>11.3e} {:>11.3e}\n", name, d.tokens(), 100 * d.top1_agreement(),
                       d.kl_mean(), d.kl_quantile(0.99), d.kl_max());
    };
    row("served " + served.substr(0, served.find(' ')), vs_served);
    if (vs_bf16.tokens() > 0) row("bf16 deployment", vs_bf16);
  }
  if (!classes.empty() && classes.size() <= 40) {
    s += "confusion        rows: reference, columns: predicted (last: other)\n";
    size_t w = 5;
    for (const auto& c : classes) w = std::max(w, c.size());
    s += fmt::format("  {:<{}}", "", w);
    for (size_t c = 0; c <= classes.size(); ++c) s += fmt::format(" {:>5}", c < classes.size() ? fmt::format("c{}", c) : "other");
    s += "\n";
    for (size_t r = 0; r < classes.size(); ++r) {
      s += fmt::format("  {:<{}}", fmt::format("c{} {}", r, classes[r]), w + 4);
      for (int64_t v : confusion[r]) s += fmt::format(" {:>5}", v);
      s += "\n";
    }
  }
  return s;
}

EvalReport evaluate_model(const EvalOptions& o) {
  const ModelConfig config = model_config_load(o.model_dir);
  const Tokenizer tok = Tokenizer::load(o.model_dir);
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, o.model_dir);
  std::optional<PeftAdapter> adapter;
  if (!o.adapter_dir.empty()) adapter = load_peft_adapter(o.adapter_dir, config);
  const nlohmann::json training = adapter ? adapter->training : nlohmann::json();
  auto trained = [&](const char* key) { return training.is_object() && training.contains(key); };

  const BaseFormat base_format = o.base_format ? *o.base_format
                                 : trained("base_format") ? parse_base_format(training["base_format"].get<std::string>())
                                 : config.fp8_checkpoint  ? BaseFormat::kFp8
                                                          : BaseFormat::kBf16;
  QatConfig qat;
  qat.enabled = o.reference_qat ? *o.reference_qat : trained("qat") ? training["qat"].get<bool>() : true;
  qat.weight_scale_format = trained("scale_format") && training["scale_format"] == "ue8m0" ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  qat.quantize_activations = trained("quantize_activations") ? training["quantize_activations"].get<bool>() : true;

  EvalReport rep;
  rep.base_format = std::string(base_format_name(base_format));
  rep.reference = reference_name(qat.enabled, qat.weight_scale_format);
  rep.served = o.precision == Precision::kFp8 ? fmt::format("fp8 ({} scales)", scale_format_name(o.scale_format))
                                              : std::string(precision_name(o.precision));
  const std::vector<Record> records = read_records(o, tok, tpl);
  rep.examples = static_cast<int64_t>(records.size());

  const BaseModel base = load_base_model(ShardedCheckpoint::open(o.model_dir), config, base_format);
  const PeftAdapter* ap = adapter ? &*adapter : nullptr;
  InferenceOptions io;
  io.precision = o.precision;
  io.scale_format = o.scale_format;
  io.quantize_activations = qat.quantize_activations;
  InferenceModel served(config, base, ap, io);
  QAFT_LOG(kInfo, "deployment built ({}) in {:.2f} s", rep.served, served.merge_report().seconds);
  const int64_t V = config.vocab_size;

  // 1. Accuracy by greedy generation.
  if (o.generation) {
    std::map<std::string, int64_t> counts;
    for (const Record& r : records) ++counts[normalize_answer(r.reference)];
    for (const auto& [c, n] : counts) {
      rep.classes.push_back(c);
      rep.majority_share = std::max(rep.majority_share, static_cast<double>(n) / static_cast<double>(records.size()));
    }
    rep.confusion.assign(rep.classes.size(), std::vector<int64_t>(rep.classes.size() + 1, 0));
    Timer t;
    for (size_t b = 0; b < records.size(); b += sz(o.batch)) {
      std::vector<const Record*> batch;
      for (size_t i = b; i < std::min(records.size(), b + sz(o.batch)); ++i) batch.push_back(&records[i]);
      const auto outs = greedy_batch(served, batch, o.max_new_tokens, tok.eos_id(), tok.vocab_size(), rep.generated_tokens);
      for (size_t i = 0; i < batch.size(); ++i) {
        const std::string want = normalize_answer(batch[i]->reference);
        const std::string got = normalize_answer(tok.decode(outs[i], true));
        const auto r = std::lower_bound(rep.classes.begin(), rep.classes.end(), want) - rep.classes.begin();
        const auto p = std::find(rep.classes.begin(), rep.classes.end(), got) - rep.classes.begin();
        ++rep.confusion[sz(r)][sz(p)];
        rep.correct += got == want;
      }
    }
    rep.generation_seconds = t.seconds();
  }

  // 2. Perplexity under the served model, and 3. parity with the training-time numerics.
  LinearNumerics numerics;
  numerics.qat = qat;
  WeightBinding<float> wb;
  wb.params = &base.params;
  wb.frozen = base.frozen.size() ? &base.frozen : nullptr;
  wb.numerics = &numerics;
  if (ap) {
    wb.lora = &ap->params;
    wb.lora_scale = ap->config.scale();
  }
  std::optional<Transformer<float>> reference;
  std::optional<InferenceModel> bf16;
  if (o.parity) {
    reference.emplace(config, wb);
    if (o.precision != Precision::kBf16) {
      InferenceOptions bo = io;
      bo.precision = Precision::kBf16;
      bf16.emplace(config, base, ap, bo);
    }
  }
  double nll_sum = 0, nll_sq = 0;
  // The training-time forward runs over packs of records (one row, a segment per record, positions
  // restarting at 0), with the QAT weights built once per pack. Each record starts at a multiple of
  // the attention kernel's key tile (filler tokens of segment 0 between records), so that its keys
  // fall into the same tiles as when it is alone: the logits are then those of one record at a
  // time, bit for bit — and the engine's prefill computes exactly those (kernels/ops.h).
  const int64_t pack_tokens = std::min<int64_t>(config.max_position_embeddings, 2048);
  auto aligned = [](int64_t t) { return (t + kAttentionKeyTile - 1) / kAttentionKeyTile * kAttentionKeyTile; };
  for (size_t first = 0; first < records.size();) {
    size_t last = first;
    int64_t T = 0;
    std::vector<int64_t> starts;  // each record's first row in the pack
    while (last < records.size() &&
           (last == first || aligned(T) + static_cast<int64_t>(records[last].full.ids.size()) <= pack_tokens)) {
      T = aligned(T);
      starts.push_back(T);
      T += static_cast<int64_t>(records[last++].full.ids.size());
    }
    std::vector<float> ref;
    if (o.parity) {
      std::vector<int32_t> ids(sz(T), 0), pos(sz(T), 0), seg(sz(T), 0);
      for (size_t i = first; i < last; ++i) {
        const auto& r = records[i].full.ids;
        const int64_t s0 = starts[i - first];
        for (size_t t = 0; t < r.size(); ++t) {
          ids[sz(s0) + t] = r[t];
          pos[sz(s0) + t] = static_cast<int32_t>(t);
          seg[sz(s0) + t] = static_cast<int32_t>(i - first + 1);
        }
      }
      ref.resize(sz(T * V));
      Batch b;
      b.B = 1, b.T = T, b.ids = ids.data(), b.positions = pos.data(), b.segment = seg.data();
      reference->logits(b, ref.data());
    }
    for (size_t i = first; i < last; ++i) {
      const Record& r = records[i];
      const int64_t offset = starts[i - first];
      const auto n = static_cast<int64_t>(r.full.ids.size());
      Sequence seq = served.new_sequence();
      const std::vector<float> logits = served.prefill(seq, r.full.ids, true);  // [n, V]
      for (int64_t t = 0; t + 1 < n; ++t) {
        if (!r.full.loss_mask[sz(t + 1)]) continue;
        const float* row = logits.data() + t * V;
        const double mx = *std::max_element(row, row + V);
        double s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - mx);
        const double nll = mx + std::log(s) - static_cast<double>(row[r.full.ids[sz(t + 1)]]);
        nll_sum += nll, nll_sq += nll * nll;
        ++rep.answer_tokens;
      }
      if (o.parity) {
        const float* rp = ref.data() + offset * V;
        rep.vs_served.add(rp, logits.data(), n, V);
        if (bf16) {
          Sequence s2 = bf16->new_sequence();
          const std::vector<float> l2 = bf16->prefill(s2, r.full.ids, true);
          rep.vs_bf16.add(rp, l2.data(), n, V);
        } else {
          rep.vs_bf16.add(rp, logits.data(), n, V);
        }
      }
    }
    first = last;
  }
  if (rep.answer_tokens > 0) {
    const double n = static_cast<double>(rep.answer_tokens);
    rep.nll_mean = nll_sum / n;
    rep.nll_se = std::sqrt(std::max(0.0, nll_sq / n - rep.nll_mean * rep.nll_mean) / n);
  }
  return rep;
}

}  // namespace qaft
