#include "common/job_spec.hpp"
#include "common/placeholders.hpp"

#include "common/job.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/stream_parser.hpp>
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

namespace klingd::common {

namespace json = boost::json;

namespace {

// Counts UTF-8 code points (the text is valid UTF-8: Boost.JSON checked it).
std::size_t char_count(std::string_view s)
{
  std::size_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80;
  }
  return n;
}

bool has_control_chars(std::string_view s)
{
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      return true;
    }
  }
  return false;
}

std::string_view kind_name(const json::value& v)
{
  switch (v.kind()) {
  case json::kind::null: return "null";
  case json::kind::bool_: return "a boolean";
  case json::kind::int64:
  case json::kind::uint64: return "an integer";
  case json::kind::double_: return "a number";
  case json::kind::string: return "a string";
  case json::kind::array: return "an array";
  case json::kind::object: return "an object";
  }
  return "a value";
}

// 1-based line and column of byte `offset` in `text`.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset)
{
  std::size_t line = 1;
  std::size_t col = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return {line, col};
}

void check_key(const json::value& v, JobSpec& out, std::vector<SpecError>& errors)
{
  if (v.is_null()) {
    return;
  }
  if (!v.is_string()) {
    errors.push_back({0, "key", fmt::format("must be a string (got {})", kind_name(v))});
    return;
  }
  std::string_view key = v.get_string();
  auto n = char_count(key);
  if (n == 0 || n > k_max_key_chars) {
    errors.push_back({0, "key", fmt::format("must be 1 to {} characters (got {})", k_max_key_chars, n)});
  } else if (has_control_chars(key)) {
    errors.push_back({0, "key", "must not contain control characters"});
  } else {
    out.key = std::string(key);
  }
}

void check_output(const json::value& v, JobSpec& out, std::vector<SpecError>& errors)
{
  if (v.is_null()) {
    return;
  }
  if (!v.is_string()) {
    errors.push_back({0, "output", fmt::format("must be a string (got {})", kind_name(v))});
    return;
  }
  std::string_view path = v.get_string();
  // With braces it is a template, resolved when the job is stored (JobStore::insert_batch).
  if (auto why = has_braces(path) ? check_output_template(path) : check_output_path(path); !why.empty()) {
    errors.push_back({0, "output", why});
  } else {
    out.output = std::string(path);
  }
}

void check_priority(const json::value& v, JobSpec& out, std::vector<SpecError>& errors)
{
  if (v.is_null()) {
    return;
  }
  std::optional<std::int64_t> p;
  if (v.is_int64()) {
    p = v.get_int64();
  } else if (v.is_uint64()) {
    p = k_max_priority + std::int64_t{1}; // out of range whatever it is
  } else if (v.is_double() && std::trunc(v.get_double()) == v.get_double() && std::abs(v.get_double()) < 1e15) {
    p = static_cast<std::int64_t>(v.get_double());
  }
  if (!p) {
    errors.push_back({0, "priority", fmt::format("must be an integer (got {})", kind_name(v))});
  } else if (*p < k_min_priority || *p > k_max_priority) {
    errors.push_back({0, "priority", fmt::format("must be from {} to {}", k_min_priority, k_max_priority)});
  } else {
    out.priority = static_cast<int>(*p);
  }
}

void check_timeout(const json::value& v, JobSpec& out, std::vector<SpecError>& errors)
{
  if (v.is_null()) {
    return;
  }
  if (!v.is_number()) {
    errors.push_back({0, "timeout_s", fmt::format("must be a number of seconds (got {})", kind_name(v))});
    return;
  }
  double t = v.to_number<double>();
  if (!(t > 0) || t > k_max_timeout_s) {
    errors.push_back({0, "timeout_s", fmt::format("must be more than 0 and at most {} (30 days)", k_max_timeout_s)});
  } else {
    out.timeout_s = t;
  }
}

void check_labels(const json::value& v, JobSpec& out, std::vector<SpecError>& errors)
{
  if (v.is_null()) {
    return;
  }
  if (!v.is_object()) {
    errors.push_back({0, "labels", fmt::format("must be an object of strings (got {})", kind_name(v))});
    return;
  }
  const auto& obj = v.get_object();
  if (obj.size() > k_max_labels) {
    errors.push_back({0, "labels", fmt::format("at most {} labels (got {})", k_max_labels, obj.size())});
    return;
  }
  for (const auto& kv : obj) {
    std::string field = fmt::format("labels.{}", std::string_view(kv.key()));
    auto name_chars = char_count(kv.key());
    if (name_chars == 0 || name_chars > k_max_label_name_chars || has_control_chars(kv.key()) ||
        kv.key().find('=') != json::string_view::npos) {
      errors.push_back({0, "labels", fmt::format("label names must be 1 to {} characters without '=' or control "
                                                 "characters",
                                                 k_max_label_name_chars)});
      continue;
    }
    if (!kv.value().is_string()) {
      errors.push_back({0, field, fmt::format("must be a string (got {})", kind_name(kv.value()))});
      continue;
    }
    std::string_view value = kv.value().get_string();
    if (char_count(value) > k_max_label_value_chars || has_control_chars(value)) {
      errors.push_back(
        {0, field, fmt::format("must be at most {} characters without control characters", k_max_label_value_chars)});
      continue;
    }
    out.labels.emplace_back(std::string(kv.key()), std::string(value));
  }
}

void set_index(std::vector<SpecError>& errors, std::size_t from, std::size_t index)
{
  for (std::size_t i = from; i < errors.size(); ++i) {
    errors[i].index = index;
  }
}

} // namespace

std::string to_string(const SpecError& e)
{
  std::string where;
  if (e.index) {
    where = fmt::format("jobs[{}]", *e.index);
  }
  if (!e.field.empty()) {
    where += where.empty() ? e.field : "." + e.field;
  }
  return where.empty() ? e.message : fmt::format("{}: {}", where, e.message);
}

Result<JobSpec, std::vector<SpecError>> parse_job_spec(const json::value& spec, const Catalog& catalog,
                                                       bool allow_unknown_models)
{
  std::vector<SpecError> errors;
  if (!spec.is_object()) {
    errors.push_back({0, "", fmt::format("a job spec must be a JSON object (got {})", kind_name(spec))});
    return errors;
  }
  const auto& obj = spec.get_object();
  JobSpec out;
  for (const auto& kv : obj) {
    std::string_view name = kv.key();
    if (name != "request" && name != "key" && name != "output" && name != "priority" && name != "timeout_s" &&
        name != "labels") {
      errors.push_back({0, std::string(name),
                        "unknown field (a spec has request, key, output, priority, timeout_s, labels; "
                        "provider parameters go inside request)"});
    }
  }
  if (const auto* v = obj.if_contains("key")) {
    check_key(*v, out, errors);
  }
  if (const auto* v = obj.if_contains("output")) {
    check_output(*v, out, errors);
  }
  if (const auto* v = obj.if_contains("priority")) {
    check_priority(*v, out, errors);
  }
  if (const auto* v = obj.if_contains("timeout_s")) {
    check_timeout(*v, out, errors);
  }
  if (const auto* v = obj.if_contains("labels")) {
    check_labels(*v, out, errors);
  }
  const auto* request = obj.if_contains("request");
  if (!request || request->is_null()) {
    errors.push_back({0, "request", "required: the provider request body, e.g. {\"model\": …, \"prompt\": …}"});
  } else {
    auto checked = catalog.validate(*request, allow_unknown_models);
    if (!checked) {
      for (const auto& fe : checked.error()) {
        errors.push_back({0, fe.field.empty() ? std::string("request") : fe.field, fe.message});
      }
    } else {
      out.request = std::move(checked).value();
      if (const auto* m = out.request.if_contains("model"); m && m->is_string()) {
        out.model = std::string(m->get_string());
      }
    }
  }
  if (!errors.empty()) {
    return errors;
  }
  return out;
}

namespace {

// Finds a member name given twice in one object ({"prompt": "a", "prompt": "b"}). Boost.JSON
// keeps the last one silently; a spec that says two things must not be guessed at.
class DuplicateKeyFinder
{
public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::string duplicate; // the name, once found

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&)
  {
    m_levels.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&)
  {
    m_levels.pop_back();
    return true;
  }
  bool on_array_begin(boost::system::error_code&) { return true; }
  bool on_array_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&)
  {
    m_key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code& ec)
  {
    m_key.append(s.data(), s.size());
    if (!m_levels.back().insert(m_key).second) {
      duplicate = std::move(m_key);
      ec = json::error::syntax; // stops the parser here
      return false;
    }
    m_key.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_uint64(std::uint64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_double(double, json::string_view, boost::system::error_code&) { return true; }
  bool on_bool(bool, boost::system::error_code&) { return true; }
  bool on_null(boost::system::error_code&) { return true; }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

private:
  std::vector<std::unordered_set<std::string>> m_levels;
  std::string m_key;
};

} // namespace

Result<json::value> parse_json_text(std::string_view text)
{
  json::parse_options opts;
  opts.max_depth = k_max_json_depth;
  json::stream_parser parser({}, opts);
  boost::system::error_code ec;
  std::size_t consumed = parser.write(text.data(), text.size(), ec);
  if (!ec) {
    parser.finish(ec);
    consumed = text.size();
  }
  if (ec) {
    auto [line, col] = line_column(text, consumed);
    std::string what = ec.message();
    if (consumed < text.size() && static_cast<unsigned char>(text[consumed]) >= 0x80) {
      what = "invalid UTF-8";
    } else if (ec == json::error::too_deep) {
      what = fmt::format("nested deeper than {} levels", k_max_json_depth);
    } else if (ec == json::error::incomplete) {
      what = "unexpected end of input";
    } else if (ec == json::error::extra_data) {
      what = "unexpected data after the JSON value";
    }
    return make_error("invalid_json", fmt::format("invalid JSON at line {}, column {}: {}", line, col, what));
  }
  json::basic_parser<DuplicateKeyFinder> dup(opts);
  const std::size_t at = dup.write_some(false, text.data(), text.size(), ec);
  if (!dup.handler().duplicate.empty()) {
    auto [line, col] = line_column(text, at);
    std::string name = dup.handler().duplicate;
    if (name.size() > 64) {
      name = name.substr(0, 64) + "…";
    }
    return make_error("invalid_json",
                      fmt::format("invalid JSON at line {}, column {}: member \"{}\" is given twice in one object",
                                  line, col, name));
  }
  return parser.release();
}

NdjsonSpecReader::NdjsonSpecReader(const Catalog& catalog, bool allow_unknown_models, Sink sink)
  : m_catalog(catalog), m_allow_unknown(allow_unknown_models), m_sink(std::move(sink))
{
}

void NdjsonSpecReader::feed(std::string_view chunk)
{
  while (!chunk.empty()) {
    auto nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      m_partial.append(chunk);
      return;
    }
    if (m_partial.empty()) {
      line(chunk.substr(0, nl)); // the whole line is in this chunk: no copy
    } else {
      m_partial.append(chunk.substr(0, nl));
      line(m_partial);
      m_partial.clear();
    }
    chunk.remove_prefix(nl + 1);
  }
}

Result<std::size_t, std::vector<SpecError>> NdjsonSpecReader::finish()
{
  if (!m_partial.empty()) {
    line(m_partial);
    std::string().swap(m_partial);
  }
  if (m_too_many) {
    return std::vector<SpecError>{{std::nullopt, "", fmt::format("at most {} jobs per request", k_max_batch_jobs)}};
  }
  if (!m_errors.empty()) {
    return std::move(m_errors);
  }
  if (m_index == 0) {
    return std::vector<SpecError>{{std::nullopt, "", "the body has no job specs (NDJSON: one spec per line)"}};
  }
  return m_index;
}

void NdjsonSpecReader::line(std::string_view text)
{
  ++m_line_no;
  if (m_too_many || text.find_first_not_of(" \t\r") == std::string_view::npos) {
    return;
  }
  if (m_index >= k_max_batch_jobs) {
    m_too_many = true; // the body as a whole is refused; no point checking more lines
    m_errors.clear();
    return;
  }
  const std::size_t index = m_index++;
  auto v = parse_json_text(text);
  if (!v) {
    // Name the body's line: the column within it is what parse_json_text found.
    auto msg = v.error().message;
    auto at = msg.find(" at line 1, ");
    if (at != std::string::npos) {
      msg.replace(at, 12, fmt::format(" at line {}, ", m_line_no));
    }
    m_errors.push_back({index, "", std::move(msg)});
    return;
  }
  auto spec = parse_job_spec(*v, m_catalog, m_allow_unknown);
  if (!spec) {
    std::size_t before = m_errors.size();
    auto errs = std::move(spec).error();
    m_errors.insert(m_errors.end(), std::make_move_iterator(errs.begin()), std::make_move_iterator(errs.end()));
    set_index(m_errors, before, index);
    return;
  }
  if (m_errors.empty()) {
    m_sink(std::move(spec).value(), index);
  }
}

Result<SubmitBody, std::vector<SpecError>> parse_submit_body(std::string_view body, bool ndjson, const Catalog& catalog,
                                                             bool allow_unknown_models)
{
  SubmitBody out;
  std::vector<SpecError> errors;
  auto take = [&](const json::value& v, std::size_t index) {
    std::size_t before = errors.size();
    auto spec = parse_job_spec(v, catalog, allow_unknown_models);
    if (spec) {
      if (errors.empty()) {
        out.jobs.push_back(std::move(spec).value());
      }
    } else {
      auto errs = std::move(spec).error();
      errors.insert(errors.end(), std::make_move_iterator(errs.begin()), std::make_move_iterator(errs.end()));
      set_index(errors, before, index);
      out.jobs.clear(); // nothing will be stored: free the memory early
    }
  };

  if (ndjson) {
    NdjsonSpecReader reader(catalog, allow_unknown_models,
                            [&](JobSpec&& spec, std::size_t) { out.jobs.push_back(std::move(spec)); });
    reader.feed(body);
    auto done = reader.finish();
    if (!done) {
      return std::move(done).error();
    }
  } else {
    auto parsed = parse_json_text(body);
    if (!parsed) {
      return std::vector<SpecError>{{std::nullopt, "", parsed.error().message, true}};
    }
    json::value v = std::move(parsed).value();
    const auto* obj = v.if_object();
    if (obj && obj->contains("jobs")) {
      for (const auto& kv : *obj) {
        if (kv.key() != "jobs" && kv.key() != "max_usd") {
          errors.push_back({std::nullopt, std::string(kv.key()), "unknown field (a batch has jobs and max_usd)"});
        }
      }
      if (const auto* m = obj->if_contains("max_usd"); m && !m->is_null()) {
        if (!m->is_number() || !(m->to_number<double>() > 0)) {
          errors.push_back({std::nullopt, "max_usd", "must be a number of US dollars greater than 0"});
        } else {
          out.max_usd = m->to_number<double>();
        }
      }
      const auto& jobs = obj->at("jobs");
      if (!jobs.is_array()) {
        errors.push_back({std::nullopt, "jobs", fmt::format("must be an array of job specs (got {})", kind_name(jobs))});
      } else if (jobs.get_array().empty()) {
        errors.push_back({std::nullopt, "jobs", "must not be empty"});
      } else if (jobs.get_array().size() > k_max_batch_jobs) {
        errors.push_back({std::nullopt, "jobs", fmt::format("at most {} jobs per request", k_max_batch_jobs)});
      } else if (errors.empty()) {
        std::size_t i = 0;
        for (const auto& spec : jobs.get_array()) {
          take(spec, i++);
        }
      }
    } else {
      take(v, 0);
    }
  }
  if (!errors.empty()) {
    return errors;
  }
  return out;
}

} // namespace klingd::common
