#include "common/validate_request.hpp"

#include "common/validate_media.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace klingd::common {

namespace json = boost::json;

namespace {

// Model ids end up in logs, the database and file names: keep them printable and short.
constexpr std::size_t k_max_model_id_length = 200;

std::string show(const json::value& v)
{
  std::string s = json::serialize(v);
  if (s.size() > 60) {
    s = s.substr(0, 57) + "...";
  }
  return s;
}

std::string show_allowed(const std::vector<json::value>& values)
{
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) {
      out += ", ";
    }
    out += v.is_string() ? std::string(v.get_string()) : json::serialize(v);
  }
  return out;
}

std::optional<double> number_of(const json::value& v)
{
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// An integer given as a JSON integer or as an integral double (5.0).
std::optional<std::int64_t> integer_of(const json::value& v)
{
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    return v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX) ? std::optional<std::int64_t>(static_cast<std::int64_t>(v.get_uint64())) : std::nullopt;
  }
  if (v.is_double() && std::isfinite(v.get_double()) && std::floor(v.get_double()) == v.get_double()
      && std::fabs(v.get_double()) < 1e15) {
    return static_cast<std::int64_t>(v.get_double());
  }
  return std::nullopt;
}

// Durations also arrive as digit strings ("5"): the docs write defaults that way.
std::optional<std::int64_t> duration_of(const json::value& v)
{
  if (v.is_string()) {
    std::string_view s = v.get_string();
    if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoll(std::string(s));
  }
  return integer_of(v);
}

std::size_t utf8_length(std::string_view s)
{
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

bool in_enum(const std::vector<json::value>& allowed, const json::value& v)
{
  return std::any_of(allowed.begin(), allowed.end(), [&](const json::value& a) {
    if (a.is_string() || v.is_string()) {
      return a.is_string() && v.is_string() && a.get_string() == v.get_string();
    }
    auto x = number_of(a);
    auto y = number_of(v);
    return x && y && *x == *y;
  });
}

std::string range_text(const ParamSpec& s)
{
  if (s.minimum && s.maximum) return fmt::format("between {} and {}", *s.minimum, *s.maximum);
  if (s.minimum) return fmt::format("at least {}", *s.minimum);
  return fmt::format("at most {}", *s.maximum);
}

bool out_of_range(const ParamSpec& s, double n)
{
  return (s.minimum && n < *s.minimum) || (s.maximum && n > *s.maximum);
}

std::string items_text(const ParamSpec& s)
{
  if (s.min_items && s.max_items) {
    return *s.min_items == *s.max_items ? fmt::format("exactly {}", *s.min_items)
                                        : fmt::format("between {} and {}", *s.min_items, *s.max_items);
  }
  if (s.min_items) return fmt::format("at least {}", *s.min_items);
  return fmt::format("at most {}", *s.max_items);
}

std::string describe(const ParamSpec& s);

std::string describe_plural(const ParamSpec& s)
{
  switch (s.type) {
  case ParamType::string: return "strings";
  case ParamType::image: return "images";
  case ParamType::video: return "video URLs";
  case ParamType::audio: return "audio URLs";
  case ParamType::object: return "objects";
  default: return fmt::format("items that are each {}", describe(s));
  }
}

// How a schema is described in "must be … or …" messages.
std::string describe(const ParamSpec& s)
{
  switch (s.type) {
  case ParamType::string: return "a string";
  case ParamType::integer: return "an integer";
  case ParamType::number: return "a number";
  case ParamType::boolean: return "a boolean";
  case ParamType::duration: return "a duration in seconds";
  case ParamType::image: return "an image (https URL or base64 data URI)";
  case ParamType::video: return "a video https URL";
  case ParamType::audio: return "an audio https URL";
  case ParamType::array:
    return s.items ? fmt::format("an array of {}", describe_plural(*s.items)) : std::string("an array");
  case ParamType::object: return "an object";
  case ParamType::any_of: return "one of several shapes";
  }
  return "?";
}

bool kind_matches(const ParamSpec& s, const json::value& v)
{
  switch (s.type) {
  case ParamType::string:
  case ParamType::image:
  case ParamType::video:
  case ParamType::audio: return v.is_string();
  case ParamType::integer:
  case ParamType::number: return v.is_number();
  case ParamType::duration: return v.is_number() || v.is_string();
  case ParamType::boolean: return v.is_bool();
  case ParamType::array: return v.is_array();
  case ParamType::object: return v.is_object();
  case ParamType::any_of: return true;
  }
  return false;
}

struct Checker
{
  WireType wire;
  std::vector<FieldError>& errors;

  std::nullopt_t fail(const std::string& path, std::string message)
  {
    errors.push_back({path, std::move(message)});
    return std::nullopt;
  }

  std::nullopt_t wrong_kind(const std::string& path, std::string_view what, const json::value& v)
  {
    return fail(path, fmt::format("must be {} (got {})", what, json_kind_name(v)));
  }

  std::optional<json::value> check(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    switch (s.type) {
    case ParamType::string: return check_string(s, v, path);
    case ParamType::integer:
    case ParamType::number: return check_number(s, v, path);
    case ParamType::duration: return check_duration(s, v, path);
    case ParamType::boolean:
      if (!v.is_bool()) return wrong_kind(path, "a boolean", v);
      return v;
    case ParamType::image:
    case ParamType::video:
    case ParamType::audio: return check_media(s, v, path);
    case ParamType::array: return check_array(s, v, path);
    case ParamType::object: return check_object(s, v, path);
    case ParamType::any_of: return check_any_of(s, v, path);
    }
    return std::nullopt;
  }

  std::optional<json::value> check_string(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    if (!v.is_string()) return wrong_kind(path, "a string", v);
    if (!s.enum_values.empty() && !in_enum(s.enum_values, v)) {
      return fail(path, fmt::format("must be one of {} (got {})", show_allowed(s.enum_values), show(v)));
    }
    const std::size_t n = utf8_length(v.get_string());
    if (s.min_length && n < *s.min_length) {
      return fail(path, *s.min_length == 1 ? std::string("must not be empty")
                                           : fmt::format("must be at least {} characters (got {})", *s.min_length, n));
    }
    if (s.max_length && n > *s.max_length) {
      return fail(path, fmt::format("must be at most {} characters (got {})", *s.max_length, n));
    }
    return v;
  }

  std::optional<json::value> check_number(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    json::value out = v;
    double n = 0;
    if (s.type == ParamType::integer) {
      auto i = integer_of(v);
      if (!i) return wrong_kind(path, "an integer", v);
      out = *i;
      n = static_cast<double>(*i);
    } else {
      auto d = number_of(v);
      if (!d) return wrong_kind(path, "a number", v);
      n = *d;
    }
    if (!s.enum_values.empty() && !in_enum(s.enum_values, out)) {
      return fail(path, fmt::format("must be one of {} (got {})", show_allowed(s.enum_values), show(v)));
    }
    if (out_of_range(s, n)) {
      return fail(path, fmt::format("must be {} (got {})", range_text(s), show(v)));
    }
    return out;
  }

  std::optional<json::value> check_duration(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    auto i = duration_of(v);
    if (!i) {
      return fail(path, fmt::format("must be a whole number of seconds, as 5 or \"5\" (got {})", show(v)));
    }
    const json::value as_int = *i;
    if (!s.enum_values.empty() && !in_enum(s.enum_values, as_int)) {
      return fail(path, fmt::format("must be one of {} (got {})", show_allowed(s.enum_values), *i));
    }
    if (out_of_range(s, static_cast<double>(*i))) {
      return fail(path, fmt::format("must be {} (got {})", range_text(s), *i));
    }
    if (wire == WireType::string) {
      return json::value(std::to_string(*i));
    }
    return as_int;
  }

  std::optional<json::value> check_media(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    if (!v.is_string()) return wrong_kind(path, describe(s), v);
    std::string_view text = v.get_string();
    auto problem = s.type == ParamType::image ? check_image_input(text, k_max_image_bytes) : check_https_url(text);
    if (problem) {
      return fail(path, *problem);
    }
    return v;
  }

  std::optional<json::value> check_array(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    if (!v.is_array()) return wrong_kind(path, describe(s), v);
    const auto& a = v.get_array();
    if ((s.min_items && a.size() < *s.min_items) || (s.max_items && a.size() > *s.max_items)) {
      return fail(path, fmt::format("must have {} items (got {})", items_text(s), a.size()));
    }
    json::array out;
    out.reserve(a.size());
    bool ok = true;
    for (std::size_t i = 0; i < a.size(); ++i) {
      auto item = s.items ? check(*s.items, a[i], fmt::format("{}[{}]", path, i)) : std::optional<json::value>(a[i]);
      if (item) {
        out.push_back(std::move(*item));
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return json::value(std::move(out));
  }

  std::optional<json::value> check_object(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    if (!v.is_object()) return wrong_kind(path, "an object", v);
    const auto& o = v.get_object();
    json::object out;
    bool ok = true;
    for (const auto& [key, value] : o) {
      const std::string child = fmt::format("{}.{}", path, std::string_view(key));
      // Not captured directly: clang before 16 cannot capture a structured binding.
      auto it = std::find_if(s.properties.begin(), s.properties.end(),
                             [name = std::string_view(key)](const NamedParam& p) { return p.name == name; });
      if (it == s.properties.end()) {
        if (s.allow_extra) {
          out.emplace(key, value);
          continue;
        }
        std::vector<std::string_view> names;
        for (const auto& p : s.properties) names.push_back(p.name);
        fail(child, fmt::format("unknown field (allowed: {})", fmt::join(names, ", ")));
        ok = false;
        continue;
      }
      if (auto checked = check(it->spec, value, child)) {
        out.emplace(key, std::move(*checked));
      } else {
        ok = false;
      }
    }
    for (const auto& p : s.properties) {
      if (p.spec.required && !o.contains(p.name)) {
        fail(fmt::format("{}.{}", path, p.name), "required");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return json::value(std::move(out));
  }

  std::optional<json::value> check_any_of(const ParamSpec& s, const json::value& v, const std::string& path)
  {
    for (const auto& alt : s.alternatives) {
      if (kind_matches(alt, v)) {
        return check(alt, v, path);
      }
    }
    std::vector<std::string> names;
    for (const auto& alt : s.alternatives) names.push_back(describe(alt));
    return fail(path, fmt::format("must be {} (got {})", fmt::join(names, " or "), json_kind_name(v)));
  }
};

// Roughly the serialised size, without serialising: strings and keys dominate.
std::size_t approx_size(const json::value& v)
{
  switch (v.kind()) {
  case json::kind::string: return v.get_string().size() + 2;
  case json::kind::array: {
    std::size_t n = 2;
    for (const auto& x : v.get_array()) n += approx_size(x) + 1;
    return n;
  }
  case json::kind::object: {
    std::size_t n = 2;
    for (const auto& [k, x] : v.get_object()) n += k.size() + 4 + approx_size(x);
    return n;
  }
  default: return 8;
  }
}

std::string join_or(const std::vector<std::string>& fields, std::string_view word)
{
  if (fields.size() == 2) return fmt::format("{} {} {}", fields[0], word, fields[1]);
  return fmt::format("{} {} {}", fmt::join(fields.begin(), fields.end() - 1, ", "), word, fields.back());
}

// The rules that span fields; `out` holds the normalised fields by their sent names.
void check_rules(const ModelInfo& model, const json::object& out, const std::map<std::string, std::string>& given_as,
                 std::vector<FieldError>& errors)
{
  for (const auto& rule : model.rules) {
    std::size_t present = 0;
    for (const auto& f : rule.fields) present += out.contains(f) ? 1 : 0;
    switch (rule.kind) {
    case Rule::Kind::exactly_one_of:
      if (present != 1) {
        errors.push_back({"request", fmt::format("give exactly one of {} ({})", join_or(rule.fields, "or"),
                                                 present == 0 ? "got none" : "got more than one")});
      }
      break;
    case Rule::Kind::at_least_one_of:
      if (present == 0) {
        errors.push_back({"request", fmt::format("give at least one of {}", join_or(rule.fields, "or"))});
      }
      break;
    case Rule::Kind::at_most_one_of:
      if (present > 1) {
        errors.push_back({"request", fmt::format("give at most one of {}", join_or(rule.fields, "or"))});
      }
      break;
    case Rule::Kind::requires_value: {
      if (!out.contains(rule.fields[0])) break;
      const json::value* other = out.if_contains(rule.when_field);
      const ParamSpec* other_spec = model.param(rule.when_field);
      const json::value* effective = other ? other : (other_spec && other_spec->default_value ? &*other_spec->default_value : nullptr);
      if (effective && *effective == rule.equal) break;
      auto it = given_as.find(rule.fields[0]);
      const std::string path = "request." + (it != given_as.end() ? it->second : rule.fields[0]);
      errors.push_back({path, fmt::format("is allowed only with {} {} (got {}{})", rule.when_field, json::serialize(rule.equal),
                                          effective ? json::serialize(*effective) : std::string("nothing"),
                                          other ? "" : ", its default")});
      break;
    }
    case Rule::Kind::array_when: {
      const json::value* field = out.if_contains(rule.fields[0]);
      const json::value* when = out.if_contains(rule.when_field);
      if (!field || !when || !when->is_string()) break;
      const bool listed = std::find(rule.when_values.begin(), rule.when_values.end(),
                                    std::string_view(when->get_string())) != rule.when_values.end();
      auto it = given_as.find(rule.fields[0]);
      const std::string path = "request." + (it != given_as.end() ? it->second : rule.fields[0]);
      if (listed && !field->is_array()) {
        errors.push_back({path, fmt::format("must be an array when {} is {} (got {})", rule.when_field,
                                            std::string_view(when->get_string()), json_kind_name(*field))});
      } else if (!listed && field->is_array()) {
        errors.push_back({path, fmt::format("must be a single value when {} is {}; arrays are only for {}",
                                            rule.when_field, std::string_view(when->get_string()),
                                            fmt::join(rule.when_values, ", "))});
      }
      break;
    }
    }
  }
}

} // namespace

std::string_view json_kind_name(const json::value& value)
{
  switch (value.kind()) {
  case json::kind::null: return "null";
  case json::kind::bool_: return "a boolean";
  case json::kind::int64:
  case json::kind::uint64:
  case json::kind::double_: return "a number";
  case json::kind::string: return "a string";
  case json::kind::array: return "an array";
  case json::kind::object: return "an object";
  }
  return "?";
}

std::optional<json::value> check_value(const ParamSpec& spec, const json::value& value, const std::string& path,
                                       WireType wire, std::vector<FieldError>& errors)
{
  return Checker{wire, errors}.check(spec, value, path);
}

std::string to_string(const FieldError& error)
{
  return fmt::format("{}: {}", error.field, error.message);
}

Result<json::object, std::vector<FieldError>> Catalog::validate(const json::value& request,
                                                                 bool allow_unknown_models) const
{
  std::vector<FieldError> errors;
  if (!request.is_object()) {
    errors.push_back({"request", fmt::format("must be an object (got {})", json_kind_name(request))});
    return errors;
  }
  const auto& in = request.get_object();
  if (const std::size_t size = approx_size(request); size > k_max_request_bytes) {
    errors.push_back({"request", fmt::format("is about {} bytes; at most {}", size, k_max_request_bytes)});
    return errors;
  }
  const json::value* model_value = in.if_contains("model");
  if (!model_value) {
    errors.push_back({"request.model", "required"});
    return errors;
  }
  if (!model_value->is_string()) {
    errors.push_back({"request.model", fmt::format("must be a string (got {})", json_kind_name(*model_value))});
    return errors;
  }
  const std::string_view model_id = model_value->get_string();
  if (model_id.empty() || model_id.size() > k_max_model_id_length
      || std::any_of(model_id.begin(), model_id.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; })) {
    errors.push_back({"request.model", fmt::format("must be a model id of 1 to {} printable characters", k_max_model_id_length)});
    return errors;
  }
  const ModelInfo* model = find(model_id);
  if (!model) {
    if (allow_unknown_models) {
      return in; // not ours to judge: the provider will
    }
    errors.push_back({"request.model", fmt::format("unknown model \"{}\" ({} models are known; `klingctl models` lists them)",
                                                   model_id, m_models.size())});
    return errors;
  }

  json::object out;
  std::map<std::string, std::string> given_as; // sent name → the name the client used
  for (const auto& [key_sv, value] : in) {
    const std::string key(key_sv);
    if (key == "model") {
      out.emplace("model", value);
      continue;
    }
    std::string name = key;
    if (auto alias = model->aliases.find(key); alias != model->aliases.end()) {
      name = alias->second;
      if (in.contains(name)) {
        errors.push_back({"request." + key, fmt::format("is an alias of {}; give only one of them", name)});
        continue;
      }
    }
    const ParamSpec* spec = model->param(name);
    if (!spec) {
      if (model->allow_extra) {
        out.emplace(key, value);
        continue;
      }
      std::vector<std::string_view> names;
      for (const auto& p : model->params) names.push_back(p.name);
      errors.push_back({"request." + key, fmt::format("unknown field for model {} (allowed: model, {})", model->id,
                                                      fmt::join(names, ", "))});
      continue;
    }
    given_as[name] = key;
    if (auto checked = check_value(*spec, value, "request." + key, model->duration_wire, errors)) {
      out.emplace(name, std::move(*checked));
    }
  }
  for (const auto& p : model->params) {
    if (p.spec.required && !given_as.count(p.name)) {
      errors.push_back({"request." + p.name, fmt::format("required for model {}", model->id)});
    }
  }
  check_rules(*model, out, given_as, errors);
  if (!errors.empty()) {
    return errors;
  }
  return out;
}

std::optional<std::int64_t> Catalog::video_seconds(const json::object& request) const
{
  if (const json::value* d = request.if_contains("duration")) {
    return duration_of(*d);
  }
  if (const json::value* shots = request.if_contains("multi_prompt"); shots && shots->is_array()) {
    std::int64_t total = 0;
    for (const auto& shot : shots->get_array()) {
      const json::value* d = shot.is_object() ? shot.get_object().if_contains("duration") : nullptr;
      const auto s = d ? duration_of(*d) : std::nullopt;
      if (!s) {
        return std::nullopt;
      }
      total += *s;
    }
    return total;
  }
  const json::value* id = request.if_contains("model");
  const ModelInfo* model = id && id->is_string() ? find(id->get_string()) : nullptr;
  return model ? model->default_duration : std::nullopt;
}

std::optional<double> Catalog::estimate_usd(const json::object& request) const
{
  const json::value* id = request.if_contains("model");
  const ModelInfo* model = id && id->is_string() ? find(id->get_string()) : nullptr;
  if (!model || !model->price_usd) {
    return std::nullopt;
  }
  if (model->price_unit == PriceUnit::per_video) {
    return *model->price_usd;
  }
  const auto seconds = video_seconds(request);
  if (!seconds) {
    return std::nullopt;
  }
  return *model->price_usd * static_cast<double>(*seconds);
}

} // namespace klingd::common
