// Strict JSON parsing for file headers we do not trust (safetensors headers, shard indexes).
//
// nlohmann::json is lenient where file formats are not: it silently keeps the last of duplicate
// keys and will happily build a DOM for arbitrarily deep nesting. parse_json_strict() rejects
// both, and turns every parse failure (syntax, invalid UTF-8 in a string, trailing garbage) into
// a qaft::Error of kind kInvalidFile whose message names the file.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace qaft {

// Parses `text` as one JSON value. `label` names the source in errors ("x.safetensors header").
// `max_depth` is the deepest nesting of objects/arrays allowed (1 = a flat object).
// Throws kInvalidFile on a syntax error, invalid UTF-8, a NUL byte (which nlohmann would take for
// the end of input), a duplicate key in any object, or nesting deeper than max_depth.
nlohmann::json parse_json_strict(std::string_view text, const std::string& label, int max_depth);

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace qaft
