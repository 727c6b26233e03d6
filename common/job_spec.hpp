// Job specs (docs/contract.md §2) as clients submit them: one spec checked field by field, and
// the three shapes of a submit body (one spec, {"jobs": [...]}, NDJSON). Shared by
// the socket API (which stores the result) and klingctl (which builds bodies).
#pragma once

#include "common/catalog.hpp"
#include "common/result.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace klingd::common {

// Limits on the fields of a spec (besides the request, which the catalog checks).
inline constexpr std::size_t k_max_key_chars = 256;
inline constexpr int k_min_priority = -1000;
inline constexpr int k_max_priority = 1000;
inline constexpr double k_default_timeout_s = 86400;
inline constexpr double k_max_timeout_s = 30 * 86400;
inline constexpr std::size_t k_max_labels = 32;
inline constexpr std::size_t k_max_label_name_chars = 64;
inline constexpr std::size_t k_max_label_value_chars = 256;
// JSON nesting deeper than this is refused before any field is looked at.
inline constexpr std::size_t k_max_json_depth = 64;
// Jobs in one submit body.
inline constexpr std::size_t k_max_batch_jobs = 100000;

// One validated job spec: the request is the catalog's normalised body.
struct JobSpec
{
  boost::json::object request;
  std::string model;
  std::optional<std::string> key;
  std::optional<std::string> output;
  int priority = 0;
  double timeout_s = k_default_timeout_s;
  std::vector<std::pair<std::string, std::string>> labels; // in the client's order
};

// A problem with one spec of a body. `index` is its position (0 for a single spec,
// the line's position among non-blank lines for NDJSON); nullopt when the body as a
// whole is wrong (not JSON, empty, wrong shape). `field` is a JSON path in the spec
// ("key", "labels.team", "request.duration") or empty.
struct SpecError
{
  std::optional<std::size_t> index;
  std::string field;
  std::string message;
  bool not_json = false; // the whole body is not JSON (invalid_json, not invalid_spec)
};

// "jobs[3].request.duration: must be one of 5, 10 (got 7)" — for logs and klingctl.
std::string to_string(const SpecError& error);

// Checks one spec. Every problem is reported (not only the first), each with its field;
// unknown top-level fields are errors; null for an optional field means "not given".
Result<JobSpec, std::vector<SpecError>> parse_job_spec(const boost::json::value& spec, const Catalog& catalog,
                                                       bool allow_unknown_models);

struct SubmitBody
{
  std::vector<JobSpec> jobs;
  std::optional<double> max_usd; // the batch's budget ({"jobs": …, "max_usd": …} only)
};

// Parses JSON text with the daemon's limits (max depth, UTF-8 checked, no comments).
// Errors name line and column: "invalid JSON at line 3, column 14: syntax error".
Result<boost::json::value> parse_json_text(std::string_view text);

// Reads an NDJSON submit body as it arrives: complete lines are parsed and checked at once
// and only the unfinished last line is kept, so a batch is never held as text and as specs
// at the same time. Blank lines are skipped; a line's index is its position among non-blank
// lines, its errors name the body's line number. All-or-nothing like parse_submit_body:
// after the first bad line `sink` is no longer called (the caller drops what it kept), but
// every further line is still checked so that all bad indexes are reported.
class NdjsonSpecReader
{
public:
  using Sink = std::function<void(JobSpec&& spec, std::size_t index)>;
  NdjsonSpecReader(const Catalog& catalog, bool allow_unknown_models, Sink sink);

  // Any split of the body into chunks gives the same result.
  void feed(std::string_view chunk);
  // Ends the body (a last line without a newline counts). The number of specs passed to
  // the sink, or every error; an empty body is an error.
  Result<std::size_t, std::vector<SpecError>> finish();
  // True once a line was refused.
  bool failed() const { return !m_errors.empty(); }

private:
  void line(std::string_view text);

  const Catalog& m_catalog;
  bool m_allow_unknown;
  Sink m_sink;
  std::string m_partial; // the last line so far, when a chunk ended inside it
  std::size_t m_index = 0;
  std::size_t m_line_no = 0;
  bool m_too_many = false;
  std::vector<SpecError> m_errors;
};

// Parses and checks a whole submit body. `ndjson`: one spec per non-blank line (a line's
// errors carry its index). Otherwise the body is one spec, or an object with "jobs" (and
// optionally "max_usd"). All-or-nothing: any error fails the whole body; every bad
// index is reported. An empty batch is an error.
Result<SubmitBody, std::vector<SpecError>> parse_submit_body(std::string_view body, bool ndjson, const Catalog& catalog,
                                                             bool allow_unknown_models);

} // namespace klingd::common
