// `qaft tokenizer encode|decode|train` — Hugging Face tokenizer.json tokenizers from the shell.
//
//   qaft tokenizer encode MODEL_DIR   text on stdin → token ids as a JSON array on stdout
//   qaft tokenizer decode MODEL_DIR   a JSON array of ids on stdin → the text on stdout (exactly,
//                                     no newline added), so `encode | decode` reproduces the input
//   qaft tokenizer train CORPUS --vocab-size N --output DIR
//                                     byte-level BPE training; writes tokenizer.json and
//                                     tokenizer_config.json that `encode` reads
#include "commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/bpe_trainer.h"
#include "data/tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

namespace qaft::cli {
namespace {

std::string read_stdin() {
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, n);
  QAFT_CHECK_HINT(!std::ferror(stdin), ErrorKind::kIo, "", "cannot read standard input");
  return s;
}

void write_stdout(std::string_view s) {
  QAFT_CHECK_HINT(std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0,
                  ErrorKind::kIo, "", "cannot write standard output");
}

struct EncodeArgs {
  std::string model_dir;       // MODEL_DIR (or a tokenizer.json path)
  bool text = false;           // print the tokens' vocabulary strings instead of ids
  bool no_special = false;     // do not add BOS/EOS or the template's tokens
  bool split_special = false;  // special tokens in the input are plain text
};

struct DecodeArgs {
  std::string model_dir;      // MODEL_DIR (or a tokenizer.json path)
  bool skip_special = false;  // drop special tokens from the text
};

struct TrainArgs {
  std::string corpus;                  // text file to learn from
  std::string output;                  // directory for tokenizer.json + tokenizer_config.json
  BpeTrainerOptions options;           // vocab size, special tokens, ...
  std::vector<std::string> specials;   // --special (replaces the defaults when given)
};

int run_encode(const EncodeArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.model_dir);
  const std::string input = read_stdin();
  EncodeOptions o;
  o.add_special_tokens = !a.no_special;
  o.split_special_tokens = a.split_special;
  const std::vector<int32_t> ids = tok.encode(input, o);
  nlohmann::json out = nlohmann::json::array();
  for (int32_t id : ids) {
    if (a.text) out.push_back(tok.id_to_token(id));
    else out.push_back(id);
  }
  write_stdout(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  return kExitOk;
}

int run_decode(const DecodeArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.model_dir);
  const std::string input = read_stdin();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(input);
  } catch (const nlohmann::json::parse_error& e) {
    QAFT_FAIL(ErrorKind::kInvalidArgument, "pass a JSON array of token ids, e.g. [9707, 11, 1879]",
              "standard input is not valid JSON: {}", e.what());
  }
  QAFT_CHECK_HINT(j.is_array(), ErrorKind::kInvalidArgument, "pass a JSON array of token ids",
                  "standard input holds a JSON {}, not an array of token ids", j.type_name());
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    QAFT_CHECK_HINT(j[i].is_number_integer(), ErrorKind::kInvalidArgument, "pass a JSON array of token ids",
                    "element {} of the input is not an integer token id", i);
    const int64_t v = j[i].get<int64_t>();
    QAFT_CHECK(v >= 0 && v < tok.vocab_size(), "token id {} (element {}) is outside the vocabulary [0, {})",
               v, i, tok.vocab_size());
    ids.push_back(static_cast<int32_t>(v));
  }
  write_stdout(tok.decode(ids, a.skip_special));
  return kExitOk;
}

int run_train(TrainArgs a) {
  if (!a.specials.empty()) a.options.special_tokens = a.specials;
  Timer timer;
  BpeTrainer trainer(a.options);
  trainer.add_file(a.corpus);
  QAFT_LOG(kInfo, "counted {} words ({} distinct) in {:.1f}s", trainer.words_seen(), trainer.unique_words(),
           timer.seconds());
  const TrainedBpe bpe = trainer.train();
  bpe.save(a.output);
  QAFT_LOG(kInfo, "wrote {}/tokenizer.json: vocab {} ({} special, {} merges) in {:.1f}s", a.output,
           bpe.vocab_size(), bpe.special_tokens.size(), bpe.merges.size(), timer.seconds());
  return kExitOk;
}

}  // namespace

void register_tokenizer(CLI::App& app, Action& run) {
  CLI::App* cmd = app.add_subcommand("tokenizer", "Encode, decode and train tokenizer.json tokenizers");
  cmd->require_subcommand(1);

  auto enc = std::make_shared<EncodeArgs>();
  CLI::App* e = cmd->add_subcommand("encode", "Text on stdin → token ids (JSON array) on stdout");
  e->add_option("MODEL_DIR", enc->model_dir, "model directory with tokenizer.json")->required();
  e->add_flag("--text", enc->text, "print the tokens (vocabulary strings) instead of their ids");
  e->add_flag("--no-special", enc->no_special, "do not add BOS/EOS (or the template's tokens)");
  e->add_flag("--split-special", enc->split_special, "treat special tokens in the text as plain text");
  e->callback([&run, enc] { run = [enc] { return run_encode(*enc); }; });

  auto dec = std::make_shared<DecodeArgs>();
  CLI::App* d = cmd->add_subcommand("decode", "Token ids (JSON array) on stdin → text on stdout");
  d->add_option("MODEL_DIR", dec->model_dir, "model directory with tokenizer.json")->required();
  d->add_flag("--skip-special", dec->skip_special, "leave special tokens out of the text");
  d->callback([&run, dec] { run = [dec] { return run_decode(*dec); }; });

  auto tr = std::make_shared<TrainArgs>();
  CLI::App* t = cmd->add_subcommand("train", "Train a byte-level BPE tokenizer on a text corpus");
  t->add_option("CORPUS", tr->corpus, "UTF-8 text file")->required();
  t->add_option("--vocab-size", tr->options.vocab_size, "total vocabulary size (special + 256 bytes + merges)")
      ->required()
      ->check(CLI::Range(1, 1 << 24));
  t->add_option("--output", tr->output, "directory to write tokenizer.json and tokenizer_config.json")->required();
  t->add_option("--special", tr->specials,
                "special token (repeatable; ids 0.. in order; default <｜begin▁of▁sentence｜> "
                "<｜end▁of▁sentence｜>)");
  t->add_option("--bos-token", tr->options.bos_token, "bos_token of tokenizer_config.json (default: first special)");
  t->add_option("--eos-token", tr->options.eos_token, "eos_token of tokenizer_config.json (default: second special)");
  t->add_flag("--add-bos-token", tr->options.add_bos_token, "encode() prepends the BOS token (as DeepSeek-V3)");
  t->add_option("--min-frequency", tr->options.min_frequency, "never merge a pair seen fewer times")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  t->callback([&run, tr] { run = [tr] { return run_train(*tr); }; });
}

}  // namespace qaft::cli
