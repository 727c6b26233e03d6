// `{name}` placeholders (docs/contract.md §2 "output", §4.2 submit --template): one grammar for
// the output names the daemon resolves at submit and the CSV columns klingctl fills in.
// `{{` and `}}` are literal braces; a lone `}` or an unclosed `{` is an error.
#pragma once

#include "common/result.hpp"

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace klingd::common {

// Walks `text`: `literal` gets each run of plain text (escapes already undone), `placeholder`
// each name between braces. Returns an error message ("" when the text is well formed).
std::string scan_placeholders(std::string_view text, const std::function<void(std::string_view)>& literal,
                              const std::function<void(std::string_view)>& placeholder);

// True when `text` has a brace, i.e. is a template rather than a plain name.
bool has_braces(std::string_view text);
// `{` → `{{`, `}` → `}}`: text that a template shows literally.
std::string escape_braces(std::string_view text);

// The placeholders an output template may use: batch, key, id, model, date, index, label.NAME.
bool is_output_placeholder(std::string_view name);

// The "safe short form" of a model id for {model}: the id without its vendor prefix (what
// precedes the first '/'), the remaining '/' as '-', any byte outside [A-Za-z0-9._-] as '_'
// ("klingai/video-v3-pro-text-to-video" → "video-v3-pro-text-to-video",
// "kling-video/v1/pro/text-to-video" → "v1-pro-text-to-video").
std::string model_short_name(std::string_view model);

// Checks an output template as far as it can be checked before the job exists: its braces,
// its placeholder names, and the path shape with every placeholder filled ("" when fine).
std::string check_output_template(std::string_view output);

struct OutputVars
{
  std::string_view batch;
  std::string_view id;
  std::string_view model;
  std::string_view date; // UTC YYYY-MM-DD of the submission
  std::size_t index = 0; // position in the batch, from 0
  const std::optional<std::string>* key = nullptr;
  const std::vector<std::pair<std::string, std::string>>* labels = nullptr;
};

// The output name of one job: every placeholder filled, then common::check_output_path on the
// result (a label "../../etc" is refused there). Errors (code "invalid") name the placeholder or the rule broken.
Result<std::string> resolve_output_template(std::string_view output, const OutputVars& vars);

} // namespace klingd::common
