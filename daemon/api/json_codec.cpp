#include "daemon/api/json_codec.hpp"

#include "common/catalog.hpp"
#include "daemon/api/http.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>

namespace klingd::api {

namespace json = boost::json;

namespace {

json::value opt(const std::optional<std::string>& s)
{
  return s ? json::value(*s) : json::value(nullptr);
}

json::value parse_or_null(const std::string& text)
{
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  return ec ? json::value(nullptr) : v;
}

json::value error_json(const std::optional<store::JobError>& e)
{
  if (!e) {
    return nullptr;
  }
  json::object o;
  o["code"] = e->code;
  o["message"] = e->message;
  if (e->http_status) {
    o["http_status"] = *e->http_status;
  }
  return o;
}

constexpr common::JobState k_states[] = {common::JobState::queued,      common::JobState::submitting,
                                         common::JobState::generating,  common::JobState::downloading,
                                         common::JobState::completed,   common::JobState::failed,
                                         common::JobState::canceled};

json::value spec_to_json(const common::ParamSpec& spec);

template <typename T>
void put_if(json::object& o, std::string_view name, const std::optional<T>& v)
{
  if (v) {
    o[name] = *v;
  }
}

json::array params_to_json(const std::vector<common::NamedParam>& params)
{
  json::array out;
  for (const auto& p : params) {
    json::object o = spec_to_json(p.spec).as_object();
    o.emplace("name", p.name);
    out.push_back(std::move(o));
  }
  return out;
}

json::value spec_to_json(const common::ParamSpec& spec)
{
  json::object o;
  o["type"] = common::to_string(spec.type);
  o["required"] = spec.required;
  if (spec.deprecated) {
    o["deprecated"] = true;
  }
  if (!spec.description.empty()) {
    o["description"] = spec.description;
  }
  if (!spec.enum_values.empty()) {
    o["enum"] = json::array(spec.enum_values.begin(), spec.enum_values.end());
  }
  put_if(o, "minimum", spec.minimum);
  put_if(o, "maximum", spec.maximum);
  put_if(o, "min_length", spec.min_length);
  put_if(o, "max_length", spec.max_length);
  put_if(o, "min_items", spec.min_items);
  put_if(o, "max_items", spec.max_items);
  if (spec.items) {
    o["items"] = spec_to_json(*spec.items);
  }
  if (!spec.properties.empty()) {
    o["properties"] = params_to_json(spec.properties);
  }
  if (spec.default_value) {
    o["default"] = *spec.default_value;
  }
  return o;
}

} // namespace

Response json_response(unsigned status, const json::value& body)
{
  Response res;
  res.status = status;
  res.body = json::serialize(body);
  res.body += '\n';
  return res;
}

json::object job_to_json(const store::Job& job, const common::Config& config)
{
  json::object o;
  o["id"] = job.id;
  o["key"] = opt(job.key);
  o["batch"] = job.batch;
  o["state"] = common::to_string(job.state);
  o["step"] = opt(job.step);
  o["model"] = job.model;
  o["request"] = parse_or_null(job.request);
  o["output"] = job.output;
  o["priority"] = job.priority;
  o["timeout_s"] = job.timeout_s;
  o["labels"] = parse_or_null(job.labels);
  o["generation_id"] = opt(job.generation_id);
  o["provider_status"] = opt(job.provider_status);
  if (job.route_asked || job.route_served) {
    o["route"] = json::object{{"asked", opt(job.route_asked)}, {"served", opt(job.route_served)}};
  } else {
    o["route"] = nullptr;
  }
  o["attempts"] = job.attempts;
  o["polls"] = job.polls;
  o["error"] = error_json(job.error);
  if (job.state == common::JobState::completed && job.video_sha256) {
    json::object v;
    std::filesystem::path path = job.video_path ? std::filesystem::path(*job.video_path) : std::filesystem::path(job.output);
    if (path.is_relative()) {
      path = std::filesystem::path(config.store.videos_dir) / path;
    }
    v["path"] = path.lexically_normal().string();
    v["bytes"] = job.video_bytes ? json::value(*job.video_bytes) : json::value(nullptr);
    v["sha256"] = *job.video_sha256;
    v["url"] = opt(job.video_url);
    o["video"] = std::move(v);
  } else {
    o["video"] = nullptr;
  }
  if (job.cost_usd || job.cost_credits) {
    json::object c;
    c["usd"] = job.cost_usd ? json::value(*job.cost_usd) : json::value(nullptr);
    c["credits"] = job.cost_credits ? json::value(*job.cost_credits) : json::value(nullptr);
    if (job.refund_usd) {
      c["refunded_usd"] = *job.refund_usd; // the ledger refunded this much of it
    }
    o["cost"] = std::move(c);
  } else {
    o["cost"] = nullptr;
  }
  o["created_at"] = job.created_at;
  o["updated_at"] = job.updated_at;
  o["finished_at"] = opt(job.finished_at);
  return o;
}

json::object history_to_json(const store::Event& e)
{
  json::object o;
  o["state"] = common::to_string(e.state);
  o["at"] = e.at;
  if (e.step) {
    o["step"] = *e.step;
  }
  if (e.error) {
    o["error"] = error_json(e.error);
  }
  return o;
}

json::object event_to_json(const store::Event& e)
{
  json::object o;
  o["seq"] = e.seq;
  o["job"] = e.job_id;
  o["batch"] = e.batch;
  for (auto& kv : history_to_json(e)) {
    o[kv.key()] = std::move(kv.value());
  }
  return o;
}

json::object counts_to_json(const std::vector<std::pair<common::JobState, std::int64_t>>& counts,
                            std::int64_t* total)
{
  json::object o;
  std::int64_t sum = 0;
  for (auto s : k_states) {
    std::int64_t n = 0;
    for (const auto& [state, count] : counts) {
      if (state == s) {
        n += count;
      }
    }
    o[common::to_string(s)] = n;
    sum += n;
  }
  if (total) {
    *total = sum;
  }
  return o;
}

json::object catalog_to_json(const common::Catalog& catalog)
{
  json::array models;
  for (const auto& m : catalog.models()) {
    json::object o;
    o["id"] = m.id;
    o["kind"] = m.kind;
    o["family"] = common::to_string(m.family);
    o["description"] = m.description;
    o["durations"] = json::array(m.durations.begin(), m.durations.end());
    o["aspect_ratios"] = json::array(m.aspect_ratios.begin(), m.aspect_ratios.end());
    o["default_duration"] = m.default_duration ? json::value(*m.default_duration) : json::value(nullptr);
    o["price_usd"] = m.price_usd ? json::value(*m.price_usd) : json::value(nullptr);
    o["price_unit"] = m.price_unit == common::PriceUnit::per_second ? "per_second" : "per_video";
    o["params"] = params_to_json(m.params);
    models.push_back(std::move(o));
  }
  json::object out;
  out["models"] = std::move(models);
  return out;
}

} // namespace klingd::api
