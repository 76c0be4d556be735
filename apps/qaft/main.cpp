// qaft — the command-line entry point. Parses the verb, runs it, and turns any qaft::Error into one
// clear line on stderr (message, hint) and a non-zero exit code. Library code never exits.
#include "commands.h"
#include "core/error.h"
#include "core/log.h"

#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"qaft — FP8 training, quantization-aware LoRA fine-tuning and FP8 serving of "
               "DeepSeek-V3-family MoE models"};
  app.set_version_flag("--version", std::string("qaft ") + QAFT_VERSION);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug | info | warn | error | off")
      ->check(CLI::IsMember({"debug", "info", "warn", "warning", "error", "off"}));

  qaft::cli::Action run;
  qaft::cli::register_numerics(app, run);
  qaft::cli::register_tokenizer(app, run);
  qaft::cli::register_model(app, run);
  qaft::cli::register_dataset(app, run);
  qaft::cli::register_train(app, run);
  qaft::cli::register_eval(app, run);
  qaft::cli::register_serve(app, run);
  qaft::cli::register_export(app, run);
  qaft::cli::register_model_registry(app, run);
  qaft::cli::register_sftj(app, run);
  qaft::cli::register_deployment(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? qaft::cli::kExitOk : qaft::cli::kExitUsage;
  }
  qaft::log_set_level(*qaft::log_level_from_name(log_level));
  try {
    return run ? run() : qaft::cli::kExitUsage;
  } catch (const qaft::Error& e) {
    std::fprintf(stderr, "qaft: error: %s\n", e.message().c_str());
    if (!e.hint().empty()) std::fprintf(stderr, "qaft: hint: %s\n", e.hint().c_str());
    QAFT_LOG(kDebug, "raised at {}", e.where());
    return e.kind() == qaft::ErrorKind::kInvalidArgument ? qaft::cli::kExitUsage : qaft::cli::kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qaft: internal error: %s\n", e.what());
    return qaft::cli::kExitFailure;
  }
}
