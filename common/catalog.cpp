#include "common/catalog.hpp"

#include "common/validate_request.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace klingd::common {

namespace json = boost::json;

namespace {

// The only schema version this code understands; bump it when the format changes meaning.
constexpr std::int64_t k_catalog_version = 1;
// Stop listing after this many problems: the first ones are the ones to fix.
constexpr std::size_t k_max_reported_errors = 12;
constexpr std::size_t k_max_catalog_bytes = 4u << 20;

const std::vector<std::string_view> k_kinds = {
  "text-to-video", "image-to-video", "multi-image-to-video", "effects", "motion-control",
  "reference-to-video", "video-edit", "video-reference", "avatar"};

constexpr std::pair<ParamType, std::string_view> k_type_names[] = {
  {ParamType::string, "string"}, {ParamType::integer, "integer"}, {ParamType::number, "number"},
  {ParamType::boolean, "boolean"}, {ParamType::duration, "duration"}, {ParamType::image, "image"},
  {ParamType::video, "video"}, {ParamType::audio, "audio"}, {ParamType::array, "array"},
  {ParamType::object, "object"}, {ParamType::any_of, "any_of"}};

std::string child(const std::string& path, std::string_view key)
{
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string index(const std::string& path, std::size_t i)
{
  return fmt::format("{}[{}]", path, i);
}

bool valid_name(std::string_view s)
{
  return !s.empty() && s.size() <= 64
         && std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

struct FamilyDefaults
{
  WireType duration_wire = WireType::integer;
  std::vector<NamedParam> params;
};

// Reads the catalog JSON into models, collecting every problem with its JSON path.
class Loader
{
public:
  std::vector<std::string> errors;

  void fail(const std::string& path, std::string message)
  {
    errors.push_back(fmt::format("{}: {}", path.empty() ? "(top level)" : path, std::move(message)));
  }

  // Refuses keys not in `allowed`; keys starting with '_' are comments.
  void check_keys(const json::object& o, const std::string& path, std::initializer_list<std::string_view> allowed)
  {
    for (const auto& [key, value] : o) {
      std::string_view k = key;
      if (!k.empty() && k[0] == '_') continue;
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        fail(child(path, k), fmt::format("unknown key (allowed: {})", fmt::join(allowed, ", ")));
      }
    }
  }

  const json::object* object_at(const json::value& v, const std::string& path)
  {
    if (!v.is_object()) {
      fail(path, fmt::format("must be an object (got {})", json_kind_name(v)));
      return nullptr;
    }
    return &v.get_object();
  }

  std::optional<std::string> string_at(const json::object& o, const std::string& path, std::string_view key, bool required)
  {
    const json::value* v = o.if_contains(key);
    if (!v) {
      if (required) fail(child(path, key), "required");
      return std::nullopt;
    }
    if (!v->is_string() || v->get_string().empty()) {
      fail(child(path, key), fmt::format("must be a non-empty string (got {})", json_kind_name(*v)));
      return std::nullopt;
    }
    return std::string(v->get_string());
  }

  bool bool_at(const json::object& o, const std::string& path, std::string_view key)
  {
    const json::value* v = o.if_contains(key);
    if (!v) return false;
    if (!v->is_bool()) {
      fail(child(path, key), fmt::format("must be true or false (got {})", json_kind_name(*v)));
      return false;
    }
    return v->get_bool();
  }

  std::optional<double> number_at(const json::object& o, const std::string& path, std::string_view key)
  {
    const json::value* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) {
      fail(child(path, key), fmt::format("must be a number (got {})", json_kind_name(*v)));
      return std::nullopt;
    }
    return v->to_number<double>();
  }

  std::optional<std::size_t> count_at(const json::object& o, const std::string& path, std::string_view key)
  {
    const json::value* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (!(v->is_int64() && v->get_int64() >= 0) && !v->is_uint64()) {
      fail(child(path, key), fmt::format("must be a non-negative integer (got {})", json::serialize(*v)));
      return std::nullopt;
    }
    return static_cast<std::size_t>(v->to_number<std::uint64_t>());
  }

  std::vector<std::string> names_at(const json::value& v, const std::string& path)
  {
    std::vector<std::string> out;
    if (!v.is_array()) {
      fail(path, fmt::format("must be an array of names (got {})", json_kind_name(v)));
      return out;
    }
    for (std::size_t i = 0; i < v.get_array().size(); ++i) {
      const auto& item = v.get_array()[i];
      if (!item.is_string() || !valid_name(item.get_string())) {
        fail(index(path, i), fmt::format("must be a field name of a-z, 0-9 and _ (got {})", json::serialize(item)));
        continue;
      }
      out.emplace_back(item.get_string());
    }
    return out;
  }

  ParamSpec param(const json::value& v, const std::string& path);
  std::vector<NamedParam> param_map(const json::value& v, const std::string& path);
  void enum_values(const json::object& o, ParamSpec& s, const std::string& path);
  std::vector<Rule> rules(const json::value& v, const std::string& path, const ModelInfo& m);
  std::optional<ModelInfo> model(const json::value& v, const std::string& path);
  std::vector<ModelInfo> catalog(const json::value& root);

private:
  std::map<std::string, std::vector<NamedParam>, std::less<>> m_sets;
  std::map<Family, FamilyDefaults> m_families;
  std::map<std::string, std::string, std::less<>> m_aliases;
};

void Loader::enum_values(const json::object& o, ParamSpec& s, const std::string& path)
{
  const json::value* e = o.if_contains("enum");
  if (!e) return;
  const std::string epath = child(path, "enum");
  if (s.type != ParamType::string && s.type != ParamType::integer && s.type != ParamType::number
      && s.type != ParamType::duration) {
    fail(epath, fmt::format("only string, integer, number and duration parameters take an enum (this is {})", to_string(s.type)));
    return;
  }
  if (!e->is_array() || e->get_array().empty()) {
    fail(epath, "must be a non-empty array");
    return;
  }
  for (std::size_t i = 0; i < e->get_array().size(); ++i) {
    const json::value& item = e->get_array()[i];
    const bool fits = s.type == ParamType::string ? item.is_string()
                      : s.type == ParamType::number ? item.is_number()
                                                    : (item.is_int64() || item.is_uint64());
    if (!fits) {
      fail(index(epath, i), fmt::format("must be {} like the parameter (got {})",
                                        s.type == ParamType::string ? "a string" : s.type == ParamType::number ? "a number" : "an integer",
                                        json::serialize(item)));
      continue;
    }
    s.enum_values.push_back(item);
  }
}

ParamSpec Loader::param(const json::value& v, const std::string& path)
{
  ParamSpec s;
  const json::object* o = object_at(v, path);
  if (!o) return s;
  check_keys(*o, path, {"type", "any_of", "required", "deprecated", "description", "enum", "minimum", "maximum",
                        "min_length", "max_length", "min_items", "max_items", "items", "properties",
                        "allow_extra", "default"});
  if (const json::value* alts = o->if_contains("any_of")) {
    s.type = ParamType::any_of;
    if (o->contains("type")) fail(child(path, "type"), "give either type or any_of, not both");
    if (!alts->is_array() || alts->get_array().size() < 2) {
      fail(child(path, "any_of"), "must be an array of at least 2 parameter schemas");
    } else {
      for (std::size_t i = 0; i < alts->get_array().size(); ++i) {
        s.alternatives.push_back(param(alts->get_array()[i], index(child(path, "any_of"), i)));
      }
    }
  } else if (auto type = string_at(*o, path, "type", true)) {
    auto it = std::find_if(std::begin(k_type_names), std::end(k_type_names), [&](const auto& p) { return p.second == *type; });
    if (it == std::end(k_type_names) || it->first == ParamType::any_of) {
      fail(child(path, "type"), fmt::format("must be one of string, integer, number, boolean, duration, image, video, audio, array, object (got \"{}\")", *type));
    } else {
      s.type = it->first;
    }
  }
  s.required = bool_at(*o, path, "required");
  s.deprecated = bool_at(*o, path, "deprecated");
  s.description = string_at(*o, path, "description", false).value_or("");
  enum_values(*o, s, path);

  const bool numeric = s.type == ParamType::integer || s.type == ParamType::number || s.type == ParamType::duration;
  auto only_for = [&](std::string_view key, bool allowed, std::string_view what) {
    if (o->contains(key) && !allowed) fail(child(path, key), fmt::format("only {} take {}", what, key));
  };
  only_for("minimum", numeric, "integer, number and duration parameters");
  only_for("maximum", numeric, "integer, number and duration parameters");
  only_for("min_length", s.type == ParamType::string, "string parameters");
  only_for("max_length", s.type == ParamType::string, "string parameters");
  only_for("min_items", s.type == ParamType::array, "array parameters");
  only_for("max_items", s.type == ParamType::array, "array parameters");
  only_for("items", s.type == ParamType::array, "array parameters");
  only_for("properties", s.type == ParamType::object, "object parameters");
  only_for("allow_extra", s.type == ParamType::object, "object parameters");

  s.minimum = number_at(*o, path, "minimum");
  s.maximum = number_at(*o, path, "maximum");
  if (s.minimum && s.maximum && *s.minimum > *s.maximum) {
    fail(child(path, "minimum"), fmt::format("is greater than maximum ({} > {})", *s.minimum, *s.maximum));
  }
  s.min_length = count_at(*o, path, "min_length");
  s.max_length = count_at(*o, path, "max_length");
  if (s.min_length && s.max_length && *s.min_length > *s.max_length) {
    fail(child(path, "min_length"), "is greater than max_length");
  }
  s.min_items = count_at(*o, path, "min_items");
  s.max_items = count_at(*o, path, "max_items");
  if (s.min_items && s.max_items && *s.min_items > *s.max_items) {
    fail(child(path, "min_items"), "is greater than max_items");
  }
  if (s.type == ParamType::duration && s.enum_values.empty() && !(s.minimum && s.maximum)) {
    fail(path, "a duration needs an enum or both minimum and maximum");
  }
  if (s.type == ParamType::array) {
    if (const json::value* items = o->if_contains("items")) {
      s.items = std::make_shared<const ParamSpec>(param(*items, child(path, "items")));
    } else {
      fail(child(path, "items"), "required for an array parameter");
    }
  }
  if (s.type == ParamType::object) {
    s.allow_extra = bool_at(*o, path, "allow_extra");
    if (const json::value* props = o->if_contains("properties")) {
      s.properties = param_map(*props, child(path, "properties"));
    } else if (!s.allow_extra) {
      fail(child(path, "properties"), "required for an object parameter (or set allow_extra)");
    }
  }
  if (const json::value* d = o->if_contains("default")) {
    // A default that its own schema refuses is a catalog bug; durations are checked as integers.
    std::vector<FieldError> problems;
    if (!check_value(s, *d, child(path, "default"), WireType::integer, problems)) {
      for (const auto& p : problems) fail(p.field, p.message);
    } else {
      s.default_value = *d;
    }
  }
  return s;
}

std::vector<NamedParam> Loader::param_map(const json::value& v, const std::string& path)
{
  std::vector<NamedParam> out;
  const json::object* o = object_at(v, path);
  if (!o) return out;
  for (const auto& [key, value] : *o) {
    std::string_view name = key;
    if (!name.empty() && name[0] == '_') continue;
    if (!valid_name(name) || name == "model") {
      fail(child(path, name), "a parameter name must be 1 to 64 of a-z, 0-9 and _, and not \"model\"");
      continue;
    }
    out.push_back({std::string(name), param(value, child(path, name))});
  }
  return out;
}

std::vector<Rule> Loader::rules(const json::value& v, const std::string& path, const ModelInfo& m)
{
  std::vector<Rule> out;
  if (!v.is_array()) {
    fail(path, fmt::format("must be an array (got {})", json_kind_name(v)));
    return out;
  }
  for (std::size_t i = 0; i < v.get_array().size(); ++i) {
    const std::string rpath = index(path, i);
    const json::object* o = object_at(v.get_array()[i], rpath);
    if (!o) continue;
    check_keys(*o, rpath, {"exactly_one_of", "at_least_one_of", "at_most_one_of", "array_when", "if", "in",
                           "requires", "field", "equal"});
    Rule r;
    int kinds = 0;
    for (auto [key, kind] : {std::pair{"exactly_one_of", Rule::Kind::exactly_one_of},
                             {"at_least_one_of", Rule::Kind::at_least_one_of},
                             {"at_most_one_of", Rule::Kind::at_most_one_of}}) {
      if (const json::value* f = o->if_contains(key)) {
        ++kinds;
        r.kind = kind;
        r.fields = names_at(*f, child(rpath, key));
        if (r.fields.size() < 2) fail(child(rpath, key), "needs at least 2 fields");
      }
    }
    if (const json::value* f = o->if_contains("array_when")) {
      ++kinds;
      r.kind = Rule::Kind::array_when;
      if (f->is_string()) r.fields.emplace_back(f->get_string());
      r.when_field = string_at(*o, rpath, "if", true).value_or("");
      if (const json::value* in = o->if_contains("in")) {
        r.when_values = names_at(*in, child(rpath, "in"));
      } else {
        fail(child(rpath, "in"), "required with array_when");
      }
      if (!r.when_field.empty() && !m.param(r.when_field)) {
        fail(child(rpath, "if"), fmt::format("names no parameter of this model (\"{}\")", r.when_field));
      }
    }
    if (const json::value* f = o->if_contains("requires")) {
      ++kinds;
      r.kind = Rule::Kind::requires_value;
      if (f->is_string()) r.fields.emplace_back(f->get_string());
      else fail(child(rpath, "requires"), "must be a field name");
      r.when_field = string_at(*o, rpath, "field", true).value_or("");
      if (const json::value* eq = o->if_contains("equal")) {
        r.equal = *eq;
      } else {
        fail(child(rpath, "equal"), "required with requires");
      }
      if (!r.when_field.empty() && !m.param(r.when_field)) {
        fail(child(rpath, "field"), fmt::format("names no parameter of this model (\"{}\")", r.when_field));
      }
    }
    if (kinds != 1) {
      fail(rpath, "must hold exactly one of exactly_one_of, at_least_one_of, at_most_one_of, array_when, requires");
      continue;
    }
    for (const auto& f : r.fields) {
      const ParamSpec* p = m.param(f);
      if (!p) {
        fail(rpath, fmt::format("names no parameter of this model (\"{}\")", f));
      } else if (p->required && r.kind != Rule::Kind::array_when && r.kind != Rule::Kind::requires_value) {
        fail(rpath, fmt::format("\"{}\" is required, so the rule can never hold as written", f));
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<ModelInfo> Loader::model(const json::value& v, const std::string& path)
{
  const json::object* o = object_at(v, path);
  if (!o) return std::nullopt;
  check_keys(*o, path, {"id", "kind", "family", "description", "duration_wire", "price", "params_from", "params",
                        "aliases", "rules", "allow_extra"});
  ModelInfo m;
  const std::size_t errors_before = errors.size();
  m.id = string_at(*o, path, "id", true).value_or("");
  if (auto kind = string_at(*o, path, "kind", true)) {
    if (std::find(k_kinds.begin(), k_kinds.end(), *kind) == k_kinds.end()) {
      fail(child(path, "kind"), fmt::format("must be one of {} (got \"{}\")", fmt::join(k_kinds, ", "), *kind));
    }
    m.kind = *kind;
  }
  if (auto family = string_at(*o, path, "family", true)) {
    if (*family == "universal") {
      m.family = Family::universal;
    } else if (*family == "legacy") {
      m.family = Family::legacy;
    } else {
      fail(child(path, "family"), fmt::format("must be one of universal, legacy (got \"{}\")", *family));
    }
  }
  m.description = string_at(*o, path, "description", false).value_or("");
  m.allow_extra = bool_at(*o, path, "allow_extra");
  const FamilyDefaults& fam = m_families[m.family];
  m.duration_wire = fam.duration_wire;
  if (auto wire = string_at(*o, path, "duration_wire", false)) {
    if (*wire == "integer" || *wire == "string") {
      m.duration_wire = *wire == "integer" ? WireType::integer : WireType::string;
    } else {
      fail(child(path, "duration_wire"), fmt::format("must be one of integer, string (got \"{}\")", *wire));
    }
  }

  // Parameters: the family's, then each named set, then the model's own (null removes one).
  m.params = fam.params;
  auto merge = [&](const std::vector<NamedParam>& add) {
    for (const auto& p : add) {
      auto it = std::find_if(m.params.begin(), m.params.end(), [&](const NamedParam& q) { return q.name == p.name; });
      if (it != m.params.end()) it->spec = p.spec; else m.params.push_back(p);
    }
  };
  if (const json::value* from = o->if_contains("params_from")) {
    for (const auto& name : names_at(*from, child(path, "params_from"))) {
      auto set = m_sets.find(name);
      if (set == m_sets.end()) {
        fail(child(path, "params_from"), fmt::format("no param_sets entry named \"{}\"", name));
      } else {
        merge(set->second);
      }
    }
  }
  if (const json::value* own = o->if_contains("params")) {
    if (own->is_object()) {
      json::object kept;
      for (const auto& [key, value] : own->get_object()) {
        if (value.is_null()) {
          // Not captured directly: clang before 16 cannot capture a structured binding.
          std::erase_if(m.params, [name = std::string_view(key)](const NamedParam& q) { return q.name == name; });
        } else {
          kept.emplace(key, value);
        }
      }
      merge(param_map(kept, child(path, "params")));
    } else {
      fail(child(path, "params"), fmt::format("must be an object (got {})", json_kind_name(*own)));
    }
  }
  if (m.params.empty() && !m.allow_extra) {
    fail(path, "has no parameters (give params or params_from)");
  }

  // Aliases: the catalog-wide ones apply where their target exists.
  for (const auto& [alias, target] : m_aliases) {
    if (m.param(target) && !m.param(alias)) m.aliases[alias] = target;
  }
  if (const json::value* al = o->if_contains("aliases")) {
    if (const json::object* ao = object_at(*al, child(path, "aliases"))) {
      for (const auto& [key, value] : *ao) {
        if (!key.empty() && key[0] == '_') continue;
        const std::string apath = child(child(path, "aliases"), key);
        if (!value.is_string() || !m.param(value.get_string())) {
          fail(apath, "must name a parameter of this model");
        } else if (m.param(key)) {
          fail(apath, "is itself a parameter of this model");
        } else {
          m.aliases[std::string(key)] = std::string(value.get_string());
        }
      }
    }
  }
  if (const json::value* r = o->if_contains("rules")) {
    m.rules = rules(*r, child(path, "rules"), m);
  }
  if (const json::value* price = o->if_contains("price")) {
    const std::string ppath = child(path, "price");
    if (const json::object* po = object_at(*price, ppath)) {
      check_keys(*po, ppath, {"usd_per_second", "usd_per_video"});
      auto per_second = number_at(*po, ppath, "usd_per_second");
      auto per_video = number_at(*po, ppath, "usd_per_video");
      if (per_second.has_value() == per_video.has_value()) {
        fail(ppath, "give exactly one of usd_per_second or usd_per_video");
      } else {
        m.price_usd = per_second ? per_second : per_video;
        m.price_unit = per_second ? PriceUnit::per_second : PriceUnit::per_video;
        if (!std::isfinite(*m.price_usd) || *m.price_usd < 0) fail(ppath, "must be a finite number ≥ 0");
      }
    }
  }

  // What `klingctl models` and cost estimates show, derived from the parameters.
  if (const ParamSpec* d = m.param("duration")) {
    if (d->type != ParamType::duration) {
      fail(child(child(path, "params"), "duration"), "must have type duration (it is typed per endpoint family)");
    } else if (!d->enum_values.empty()) {
      std::vector<std::int64_t> values;
      for (const auto& e : d->enum_values) values.push_back(e.to_number<std::int64_t>());
      std::sort(values.begin(), values.end());
      for (auto x : values) m.durations.push_back(std::to_string(x));
    } else if (d->minimum && d->maximum) {
      for (auto x = static_cast<std::int64_t>(std::ceil(*d->minimum)); x <= static_cast<std::int64_t>(*d->maximum); ++x) {
        m.durations.push_back(std::to_string(x));
      }
    }
    if (d->default_value) m.default_duration = static_cast<int>(d->default_value->to_number<std::int64_t>());
  }
  if (const ParamSpec* a = m.param("aspect_ratio")) {
    for (const auto& e : a->enum_values) {
      if (e.is_string()) m.aspect_ratios.emplace_back(e.get_string());
    }
  }
  if (errors.size() != errors_before) return std::nullopt;
  return m;
}

std::vector<ModelInfo> Loader::catalog(const json::value& root)
{
  std::vector<ModelInfo> out;
  const json::object* o = object_at(root, "");
  if (!o) return out;
  check_keys(*o, "", {"version", "families", "aliases", "param_sets", "models"});
  const json::value* version = o->if_contains("version");
  if (!version || !version->is_int64() || version->get_int64() != k_catalog_version) {
    fail("version", fmt::format("must be {} (got {})", k_catalog_version, version ? json::serialize(*version) : "nothing"));
    return out;
  }
  if (const json::value* fams = o->if_contains("families")) {
    if (const json::object* fo = object_at(*fams, "families")) {
      check_keys(*fo, "families", {"universal", "legacy"});
      for (auto [name, family] : {std::pair{"universal", Family::universal}, {"legacy", Family::legacy}}) {
        const json::value* f = fo->if_contains(name);
        if (!f) continue;
        const std::string fpath = child("families", name);
        const json::object* fobj = object_at(*f, fpath);
        if (!fobj) continue;
        check_keys(*fobj, fpath, {"description", "duration_wire", "params"});
        FamilyDefaults& d = m_families[family];
        if (auto wire = string_at(*fobj, fpath, "duration_wire", true)) {
          if (*wire != "integer" && *wire != "string") {
            fail(child(fpath, "duration_wire"), fmt::format("must be one of integer, string (got \"{}\")", *wire));
          }
          d.duration_wire = *wire == "string" ? WireType::string : WireType::integer;
        }
        if (const json::value* p = fobj->if_contains("params")) d.params = param_map(*p, child(fpath, "params"));
      }
    }
  }
  if (const json::value* al = o->if_contains("aliases")) {
    if (const json::object* ao = object_at(*al, "aliases")) {
      for (const auto& [key, value] : *ao) {
        if (!key.empty() && key[0] == '_') continue;
        if (!valid_name(key) || !value.is_string() || !valid_name(value.get_string())) {
          fail(child("aliases", key), "must map a field name to a field name");
          continue;
        }
        m_aliases[std::string(key)] = std::string(value.get_string());
      }
    }
  }
  if (const json::value* sets = o->if_contains("param_sets")) {
    if (const json::object* so = object_at(*sets, "param_sets")) {
      for (const auto& [key, value] : *so) {
        if (!key.empty() && key[0] == '_') continue;
        m_sets[std::string(key)] = param_map(value, child("param_sets", key));
      }
    }
  }
  const json::value* models = o->if_contains("models");
  if (!models || !models->is_array() || models->get_array().empty()) {
    fail("models", "must be a non-empty array of models");
    return out;
  }
  std::set<std::string, std::less<>> ids;
  for (std::size_t i = 0; i < models->get_array().size(); ++i) {
    const std::string path = index("models", i);
    auto m = model(models->get_array()[i], path);
    if (!m) continue;
    if (!ids.insert(m->id).second) {
      fail(child(path, "id"), fmt::format("\"{}\" is listed twice", m->id));
      continue;
    }
    out.push_back(std::move(*m));
  }
  return out;
}

std::string compact_durations(const std::vector<std::string>& durations)
{
  if (durations.empty()) return "-";
  if (durations.size() >= 3) {
    const long first = std::stol(durations.front());
    const long last = std::stol(durations.back());
    if (last - first + 1 == static_cast<long>(durations.size())) return fmt::format("{}-{}", first, last);
  }
  return fmt::format("{}", fmt::join(durations, ","));
}

} // namespace

std::string_view to_string(Family family)
{
  return family == Family::legacy ? "legacy" : "universal";
}

std::string_view to_string(ParamType type)
{
  for (const auto& [t, name] : k_type_names) {
    if (t == type) return name;
  }
  return "?";
}

const ParamSpec* ModelInfo::param(std::string_view name) const
{
  auto it = std::find_if(params.begin(), params.end(), [&](const NamedParam& p) { return p.name == name; });
  return it == params.end() ? nullptr : &it->spec;
}

Result<Catalog> Catalog::parse(std::string_view json_text, std::string_view origin)
{
  json::parse_options opts;
  opts.allow_comments = true;
  opts.allow_trailing_commas = true;
  boost::system::error_code ec;
  json::value root = json::parse(json_text, ec, {}, opts);
  if (ec) {
    return make_error("catalog", fmt::format("catalog {}: not valid JSON: {}", origin, ec.message()));
  }
  Loader loader;
  auto models = loader.catalog(root);
  if (!loader.errors.empty()) {
    const std::size_t n = loader.errors.size();
    if (n > k_max_reported_errors) {
      loader.errors.resize(k_max_reported_errors);
      loader.errors.push_back(fmt::format("and {} more", n - k_max_reported_errors));
    }
    return make_error("catalog", fmt::format("catalog {}: {}", origin, fmt::join(loader.errors, "; ")));
  }
  Catalog c;
  c.m_models = std::move(models);
  c.m_origin = std::string(origin);
  for (std::size_t i = 0; i < c.m_models.size(); ++i) {
    c.m_index.emplace(c.m_models[i].id, i);
  }
  return c;
}

Result<Catalog> Catalog::load_file(const std::string& path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error("catalog", fmt::format("catalog {}: cannot read the file", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > k_max_catalog_bytes) {
    return make_error("catalog", fmt::format("catalog {}: larger than {} bytes", path, k_max_catalog_bytes));
  }
  return parse(text.str(), path);
}

const ModelInfo* Catalog::find(std::string_view model_id) const
{
  auto it = m_index.find(model_id);
  return it == m_index.end() ? nullptr : &m_models[it->second];
}

Family Catalog::family_for(std::string_view model_id) const
{
  const ModelInfo* m = find(model_id);
  return m ? m->family : Family::universal;
}

bool Catalog::takes_provider(std::string_view model_id) const
{
  const ModelInfo* m = find(model_id);
  return m && m->param("provider");
}

bool Catalog::apply_route(json::object& request, std::string_view route) const
{
  if (route.empty() || request.contains("provider")) return false;
  const json::value* id = request.if_contains("model");
  if (!id || !id->is_string() || !takes_provider(id->get_string())) return false;
  request["provider"] = route;
  return true;
}

std::optional<std::string> requested_route(const json::object& request)
{
  const json::value* p = request.if_contains("provider");
  if (!p || !p->is_string()) return std::nullopt;
  return std::string(p->get_string());
}

std::string_view to_string(CatalogDrift::Kind kind)
{
  switch (kind) {
  case CatalogDrift::Kind::missing: return "missing";
  case CatalogDrift::Kind::renamed: return "renamed";
  case CatalogDrift::Kind::price: return "price";
  case CatalogDrift::Kind::unpriced: return "unpriced";
  case CatalogDrift::Kind::not_in_catalog: return "not_in_catalog";
  }
  return "?";
}

namespace {

std::optional<double> finite_number(const json::value* v)
{
  if (!v || !v->is_number()) return std::nullopt;
  const double d = v->to_number<double>();
  return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
}

// USD per second from one {price, per, unit|name|measure} rate; nullopt unless it is per second.
std::optional<double> per_second(const json::value& rate)
{
  if (!rate.is_object()) return std::nullopt;
  const auto& o = rate.get_object();
  bool seconds = false;
  for (const char* key : {"unit", "name", "measure"}) {
    if (const json::value* u = o.if_contains(key); u && u->is_string()) {
      std::string_view t = u->get_string();
      seconds = seconds || t == "second" || t == "seconds" || t == "s" || t == "sec";
    }
  }
  auto price = finite_number(o.if_contains("price"));
  auto per = finite_number(o.if_contains("per"));
  if (!seconds || !price || *price < 0) return std::nullopt;
  const double divisor = per && *per > 0 ? *per : 1.0;
  return *price / divisor;
}

// [lowest, highest] USD per second the pricing block quotes; nullopt when it quotes none.
std::optional<std::pair<double, double>> quoted_range(const json::value* pricing)
{
  if (!pricing || !pricing->is_object()) return std::nullopt;
  const auto& o = pricing->get_object();
  std::optional<std::pair<double, double>> range;
  auto add = [&](const json::value& rate) {
    if (auto p = per_second(rate)) {
      range = range ? std::pair{std::min(range->first, *p), std::max(range->second, *p)} : std::pair{*p, *p};
    }
  };
  for (const char* key : {"units", "variants"}) {
    if (const json::value* list = o.if_contains(key); list && list->is_array()) {
      for (const auto& rate : list->get_array()) add(rate);
    }
  }
  return range;
}

std::string usd(double x)
{
  return fmt::format("${:.4g}/s", x);
}

bool is_kling_id(std::string_view id)
{
  return id.starts_with("klingai/") || id.starts_with("kling-video/");
}

} // namespace

Result<std::vector<CatalogDrift>> catalog_drift(const Catalog& catalog, std::string_view models_body)
{
  std::vector<PricedModel> models;
  for (const auto& m : catalog.models()) {
    models.push_back({m.id, m.price_unit == PriceUnit::per_second ? m.price_usd : std::nullopt});
  }
  return catalog_drift(models, models_body);
}

Result<std::vector<CatalogDrift>> catalog_drift(const std::vector<PricedModel>& models, std::string_view models_body)
{
  boost::system::error_code ec;
  json::value root = json::parse(models_body, ec);
  const json::value* data = nullptr;
  if (!ec && root.is_object()) data = root.get_object().if_contains("data");
  if (ec || !data || !data->is_array()) {
    return make_error("malformed", "the provider's model list is not {\"data\": [...]} JSON");
  }
  struct Listed
  {
    std::string id;
    const json::value* pricing = nullptr;
  };
  std::map<std::string, Listed, std::less<>> by_id;
  std::map<std::string, Listed, std::less<>> by_alias;
  for (const auto& item : data->get_array()) {
    if (!item.is_object()) continue;
    const auto& o = item.get_object();
    const json::value* id = o.if_contains("id");
    if (!id || !id->is_string()) continue;
    Listed l{std::string(id->get_string()), o.if_contains("pricing")};
    by_id.emplace(l.id, l);
    if (const json::value* aliases = o.if_contains("aliases"); aliases && aliases->is_array()) {
      for (const auto& a : aliases->get_array()) {
        if (a.is_string()) by_alias.emplace(std::string(a.get_string()), l);
      }
    }
  }
  std::vector<CatalogDrift> out;
  std::set<std::string, std::less<>> ours;
  for (const auto& m : models) ours.insert(m.id);
  for (const auto& m : models) {
    const Listed* l = nullptr;
    if (auto it = by_id.find(m.id); it != by_id.end()) {
      l = &it->second;
    } else if (auto al = by_alias.find(m.id); al != by_alias.end()) {
      l = &al->second;
      out.push_back({CatalogDrift::Kind::renamed, m.id, fmt::format("listed as an alias of {}", l->id)});
    } else {
      out.push_back({CatalogDrift::Kind::missing, m.id, "not listed by the provider (neither as id nor alias)"});
      continue;
    }
    auto range = quoted_range(l->pricing);
    if (!range) {
      out.push_back({CatalogDrift::Kind::unpriced, m.id, "listed without a price per second"});
      continue;
    }
    if (!m.usd_per_second) {
      out.push_back({CatalogDrift::Kind::price, m.id, fmt::format("catalog has no price per second, provider {}", usd(range->first))});
      continue;
    }
    const double mine = *m.usd_per_second;
    constexpr double k_tolerance = 1e-6;
    if (mine < range->first - k_tolerance || mine > range->second + k_tolerance) {
      const std::string theirs = range->first == range->second ? usd(range->first)
                                                               : fmt::format("{} to {}", usd(range->first), usd(range->second));
      out.push_back({CatalogDrift::Kind::price, m.id, fmt::format("catalog {}, provider {}", usd(mine), theirs)});
    }
  }
  for (const auto& [id, l] : by_id) {
    if (is_kling_id(id) && !ours.count(id)) {
      bool alias_known = false;
      for (const auto& [alias, target] : by_alias) {
        alias_known = alias_known || (target.id == id && ours.count(alias));
      }
      if (!alias_known) out.push_back({CatalogDrift::Kind::not_in_catalog, id, "listed by the provider, not in the catalog"});
    }
  }
  return out;
}

std::string format_catalog_table(const Catalog& catalog)
{
  std::vector<std::array<std::string, 6>> rows;
  rows.push_back({"MODEL", "KIND", "FAMILY", "DURATIONS", "USD/S", "ASPECT RATIOS"});
  for (const auto& m : catalog.models()) {
    std::string price = "-";
    if (m.price_usd) price = m.price_unit == PriceUnit::per_second ? fmt::format("{:.3f}", *m.price_usd) : fmt::format("{:.3f}/video", *m.price_usd);
    rows.push_back({m.id, m.kind, std::string(to_string(m.family)), compact_durations(m.durations), price,
                    m.aspect_ratios.empty() ? std::string("-") : fmt::format("{}", fmt::join(m.aspect_ratios, ","))});
  }
  std::array<std::size_t, 6> width{};
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += i + 1 < r.size() ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
    }
    out += line + "\n";
  }
  return out;
}

} // namespace klingd::common
