// Registering a base model: a Hugging Face model directory is checked (config.json parses as a
// supported architecture, the tokenizer loads and fits the vocabulary, the weights open) and
// recorded with its weight format and config.json. The directory is not copied: it stays the
// user's, and deleting the model from the registry never deletes it.
#pragma once

#include "registry/workspace.h"

#include <filesystem>
#include <string>

namespace qaft {

class ShardedCheckpoint;

// The storage of a checkpoint's weights: "fp8" when any tensor is E4M3 (DeepSeek block FP8), "nf4"
// when any is NF4, else the float dtype holding the most bytes ("bf16", "f32", "f16").
std::string detect_weight_format(const ShardedCheckpoint& checkpoint);

// Validates `dir` and adds it as base model `name`. Throws the loaders' errors (kIo, kInvalidFile,
// kUnsupported, naming the file) before anything is recorded; kInvalidArgument when the name is
// invalid or taken.
ModelRecord register_base_model(Workspace& ws, const std::string& name, const std::filesystem::path& dir);

// A model argument of a command: a registered model's name (a tuned model gives its base's
// directory), else an existing directory. Unknown: kInvalidArgument listing the registered names.
std::filesystem::path resolve_model_dir(Workspace& ws, const std::string& name_or_dir);

}  // namespace qaft
