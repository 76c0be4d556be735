// Registering a dataset (`qaft dataset create NAME FILE --model M`): the JSONL file is copied into
// the workspace (hashed with SHA-256 while copying, synced), the copy is validated line by line with
// the model's tokenizer and chat template (data/dataset.h), and the row is recorded with its
// statistics — in that order, so that the statistics and the hash describe exactly the bytes that
// training will read. A file with invalid lines is refused unless allow_errors (training skips
// them); one with no valid example always is. Any failure leaves neither a row nor a file.
#pragma once

#include "data/dataset.h"
#include "registry/workspace.h"

#include <filesystem>
#include <string>

namespace qaft {

struct DatasetImportOptions {
  DatasetOptions scan;        // validation limits and policies (max_length, on_overflow, ...)
  bool allow_errors = false;  // register a file with invalid lines (they are skipped in training)
};

struct DatasetImport {
  DatasetRecord record;  // the row as recorded
  DatasetStats stats;    // the full statistics of the copy
};

// `tokenizer_dir` holds tokenizer.json and tokenizer_config.json (a model directory);
// `tokenizer_label` names it in the recorded statistics (the model's registry name or directory).
DatasetImport import_dataset(Workspace& ws, const std::string& name, const std::filesystem::path& file,
                             const std::filesystem::path& tokenizer_dir, const std::string& tokenizer_label,
                             const DatasetImportOptions& options = {});


}  // namespace qaft
