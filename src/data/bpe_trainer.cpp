// Byte-level BPE training (see bpe_trainer.h).
#include "data/bpe_trainer.h"

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/byte_level.h"
#include "data/file_util.h"
#include "data/regex.h"
#include "data/tokenizer_impl.h"
#include "data/utf8.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <queue>

namespace qaft {

struct BpeTrainer::Impl {
  Regex split;                       // the word pattern
  tok::AddedTokenMatcher specials;   // special tokens, cut out of the text before counting
  std::vector<AddedToken> special_list;  // what `specials` indexes
};

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(std::move(options)), impl_(nullptr) {
  impl_ = new Impl{Regex(kQwenSplitPattern, false, "BPE training split pattern"), {}, {}};
  for (size_t i = 0; i < options_.special_tokens.size(); ++i) {
    const std::string& s = options_.special_tokens[i];
    QAFT_CHECK(!s.empty() && utf8::is_valid(s), "special token {} is empty or not valid UTF-8", i);
    for (size_t j = 0; j < i; ++j)
      QAFT_CHECK(options_.special_tokens[j] != s, "special token {:?} is given twice", s);
    AddedToken t;
    t.id = static_cast<int32_t>(i);
    t.content = s;
    t.special = true;
    impl_->special_list.push_back(t);
    impl_->specials.add(s, static_cast<int32_t>(i));
  }
}

BpeTrainer::~BpeTrainer() { delete impl_; }

void BpeTrainer::add_text(std::string_view text) {
  auto count_words = [&](size_t b, size_t e) {
    const std::string_view part = text.substr(b, e - b);
    size_t last = 0;
    auto add = [&](size_t x, size_t y) {
      ++counts_[std::string(part.substr(x, y - x))];
      ++words_seen_;
    };
    impl_->split.for_each_match(part, [&](size_t x, size_t y) {
      if (x > last) add(last, x);
      add(x, y);
      last = y;
    });
    if (last < part.size()) add(last, part.size());
  };
  if (impl_->specials.empty()) count_words(0, text.size());
  else impl_->specials.split(text, impl_->special_list, count_words, [](int32_t) {});
}

void BpeTrainer::add_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    QAFT_FAIL(ErrorKind::kIo, "check the corpus path", "cannot open {}: {}", path.string(), std::strerror(err));
  }
  std::string buffer;
  std::vector<char> chunk(4 << 20);
  int64_t repaired_chunks = 0, bytes = 0;
  Timer timer;
  double last_report = 0;
  auto feed = [&](std::string_view piece) {
    if (utf8::is_valid(piece)) {
      add_text(piece);
    } else {
      ++repaired_chunks;
      add_text(utf8::repair(piece));
    }
  };
  while (true) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      QAFT_FAIL(ErrorKind::kIo, "", "cannot read {}: {}", path.string(), std::strerror(err));
    }
    if (n == 0) break;
    bytes += n;
    buffer.append(chunk.data(), static_cast<size_t>(n));
    const size_t cut = buffer.rfind('\n');
    if (cut != std::string::npos) {
      feed(std::string_view(buffer).substr(0, cut + 1));
      buffer.erase(0, cut + 1);
    }
    if (options_.progress && timer.seconds() - last_report > 5) {
      last_report = timer.seconds();
      QAFT_LOG(kInfo, "counting words: {:.1f} MB read, {} words, {} distinct", bytes / 1e6, words_seen_, counts_.size());
    }
  }
  ::close(fd);
  if (!buffer.empty()) feed(buffer);
  if (repaired_chunks)
    QAFT_LOG(kWarn, "{}: {} chunk(s) held ill-formed UTF-8, replaced by U+FFFD", path.string(), repaired_chunks);
}

namespace {

// A max-heap entry: the pair with the higher count first, then the smaller (left, right).
struct Candidate {
  int64_t count;  // occurrences when pushed (re-validated when popped)
  uint64_t pair;  // packed (left id, right id)
  bool operator<(const Candidate& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

}  // namespace

TrainedBpe BpeTrainer::train() {
  const auto k = static_cast<int32_t>(options_.special_tokens.size());
  QAFT_CHECK_HINT(options_.vocab_size >= k + 256, ErrorKind::kInvalidArgument,
                  "a byte-level vocabulary holds the special tokens and all 256 bytes at least",
                  "vocab size {} is smaller than {} special tokens + 256 bytes", options_.vocab_size, k);
  TrainedBpe out;
  out.special_tokens = options_.special_tokens;
  out.add_bos_token = options_.add_bos_token;
  out.bos_token = !options_.bos_token.empty() ? options_.bos_token : k > 0 ? options_.special_tokens[0] : "";
  out.eos_token = !options_.eos_token.empty() ? options_.eos_token : k > 1 ? options_.special_tokens[1] : "";
  for (int b = 0; b < 256; ++b) out.tokens.emplace_back(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> id_of_bytes;
  for (int b = 0; b < 256; ++b) id_of_bytes.emplace(out.tokens[static_cast<size_t>(b)], k + b);

  // Words in a fixed (sorted) order so that nothing depends on hash-map iteration.
  std::vector<std::pair<std::string, int64_t>> sorted(counts_.begin(), counts_.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<int32_t>> words(sorted.size());
  std::vector<int64_t> freq(sorted.size());
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < sorted.size(); ++w) {
    freq[w] = sorted[w].second;
    for (char c : sorted[w].first) words[w].push_back(k + static_cast<uint8_t>(c));
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t p = tok::MergeTable::pack(words[w][i], words[w][i + 1]);
      pair_count[p] += freq[w];
      auto& list = where[p];
      if (list.empty() || list.back() != static_cast<int32_t>(w)) list.push_back(static_cast<int32_t>(w));
    }
  }
  std::priority_queue<Candidate> heap;
  for (const auto& [p, c] : pair_count) heap.push({c, p});

  std::vector<uint32_t> stamp(words.size(), 0);
  uint32_t epoch = 0;
  Timer timer;
  double last_report = 0;
  const int32_t target = options_.vocab_size;
  std::unordered_map<uint64_t, int64_t> touched;
  while (k + static_cast<int32_t>(out.tokens.size()) < target && !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    const int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current != top.count) {  // stale: re-queue with the current count
      if (current > 0) heap.push({current, top.pair});
      continue;
    }
    if (current < options_.min_frequency) break;
    const auto left = static_cast<int32_t>(top.pair >> 32), right = static_cast<int32_t>(top.pair & 0xFFFFFFFFu);
    const std::string merged_bytes = out.tokens[static_cast<size_t>(left - k)] + out.tokens[static_cast<size_t>(right - k)];
    int32_t merged;
    if (auto m = id_of_bytes.find(merged_bytes); m != id_of_bytes.end()) {
      merged = m->second;  // the same bytes reached by another merge path: no new entry
    } else {
      merged = k + static_cast<int32_t>(out.tokens.size());
      out.tokens.push_back(merged_bytes);
      id_of_bytes.emplace(merged_bytes, merged);
    }
    out.merges.emplace_back(left, right);

    // Rewrite every word that holds the pair, tracking count changes of the neighbouring pairs.
    ++epoch;
    touched.clear();
    std::vector<int32_t> holders = std::move(where[top.pair]);
    where.erase(top.pair);
    auto bump = [&](int32_t a, int32_t b, int64_t delta, int32_t w) {
      const uint64_t p = tok::MergeTable::pack(a, b);
      pair_count[p] += delta;
      touched[p] += delta;
      if (delta > 0) {
        auto& list = where[p];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    };
    for (int32_t w : holders) {
      if (stamp[static_cast<size_t>(w)] == epoch) continue;
      stamp[static_cast<size_t>(w)] = epoch;
      std::vector<int32_t>& s = words[static_cast<size_t>(w)];
      const int64_t c = freq[static_cast<size_t>(w)];
      size_t i = 0;
      while (i + 1 < s.size()) {
        if (s[i] != left || s[i + 1] != right) {
          ++i;
          continue;
        }
        if (i > 0) {
          bump(s[i - 1], left, -c, w);
          bump(s[i - 1], merged, c, w);
        }
        if (i + 2 < s.size()) {
          bump(right, s[i + 2], -c, w);
          bump(merged, s[i + 2], c, w);
        }
        s[i] = merged;
        s.erase(s.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        ++i;
      }
    }
    pair_count.erase(top.pair);
    for (const auto& [p, delta] : touched) {
      auto pc = pair_count.find(p);
      if (pc == pair_count.end()) continue;
      if (pc->second <= 0) {
        pair_count.erase(pc);
        where.erase(p);
      } else if (delta > 0) {
        heap.push({pc->second, p});
      }
    }
    if (options_.progress && timer.seconds() - last_report > 2) {
      last_report = timer.seconds();
      QAFT_LOG(kInfo, "BPE training: vocab {}/{}, {} merges, {:.1f}s", k + static_cast<int32_t>(out.tokens.size()),
               target, out.merges.size(), timer.seconds());
    }
  }
  if (out.vocab_size() < target)
    QAFT_LOG(kWarn, "BPE training stopped at vocab size {} (asked for {}): no pair occurs at least {} times",
             out.vocab_size(), target, options_.min_frequency);
  return out;
}

std::string TrainedBpe::tokenizer_json() const {
  using nlohmann::ordered_json;
  const auto k = static_cast<int32_t>(special_tokens.size());
  ordered_json added = ordered_json::array();
  for (int32_t i = 0; i < k; ++i)
    added.push_back({{"id", i}, {"content", special_tokens[static_cast<size_t>(i)]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  ordered_json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added;
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", std::string(kQwenSplitPattern)}}}, {"behavior", "Isolated"}, {"invert", false}},
        bl}}};
  root["post_processor"] = bl;
  root["decoder"] = bl;
  std::string text = root.dump(2, ' ', false);
  // The model is written by hand: ordered_json looks keys up linearly, which is quadratic for a
  // vocabulary of 10^5 entries. One entry per line, in id order.
  auto quoted = [](const std::string& s) { return nlohmann::json(s).dump(); };
  text.resize(text.size() - 2);  // drop "\n}"
  text += ",\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
          "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {";
  const char* sep = "\n      ";
  for (int32_t i = 0; i < k; ++i) {
    text += sep + quoted(special_tokens[static_cast<size_t>(i)]) + ": " + std::to_string(i);
    sep = ",\n      ";
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    text += sep + quoted(byte_level::encode(tokens[i])) + ": " + std::to_string(k + static_cast<int32_t>(i));
    sep = ",\n      ";
  }
  text += "\n    },\n    \"merges\": [";
  sep = "\n      ";
  for (const auto& [l, r] : merges) {
    text += sep;
    text += "[" + quoted(byte_level::encode(tokens[static_cast<size_t>(l - k)])) + ", " +
            quoted(byte_level::encode(tokens[static_cast<size_t>(r - k)])) + "]";
    sep = ",\n      ";
  }
  text += merges.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return text;
}

std::string TrainedBpe::tokenizer_config_json() const {
  using nlohmann::ordered_json;
  ordered_json c;
  c["add_bos_token"] = add_bos_token;
  c["add_eos_token"] = false;
  if (!bos_token.empty()) c["bos_token"] = bos_token;
  if (!eos_token.empty()) {
    c["eos_token"] = eos_token;
    c["pad_token"] = eos_token;
  }
  c["clean_up_tokenization_spaces"] = false;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  ordered_json dec = ordered_json::object();
  for (size_t i = 0; i < special_tokens.size(); ++i)
    dec[std::to_string(i)] = {{"content", special_tokens[i]}, {"lstrip", false}, {"normalized", false},
                              {"rstrip", false}, {"single_word", false}, {"special", true}};
  c["added_tokens_decoder"] = dec;
  return c.dump(2, ' ', false) + "\n";
}

void TrainedBpe::save(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check the output path", "cannot create directory {}: {}",
                  dir.string(), ec.message());
  data::write_file_atomic(dir / "tokenizer.json", tokenizer_json());
  data::write_file_atomic(dir / "tokenizer_config.json", tokenizer_config_json());
}

}  // namespace qaft
