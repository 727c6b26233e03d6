#include "daemon/engine/job_document.hpp"

#include "daemon/engine/store_files.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>

namespace klingd::engine {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t k_base64_min = 256;

bool looks_base64(std::string_view s)
{
  if (s.size() < k_base64_min) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '/' || c == '=' || c == '-' || c == '_' || c == '\n' || c == '\r';
  });
}

bool is_data_uri(std::string_view s)
{
  return s.size() >= 5 && std::equal(s.begin(), s.begin() + 5, "data:", [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

json::value opt(const std::optional<std::string>& s)
{
  return s ? json::value(*s) : json::value(nullptr);
}

template <typename T>
json::value opt_num(const std::optional<T>& v)
{
  return v ? json::value(*v) : json::value(nullptr);
}

json::value parse_or_null(const std::string& text)
{
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  return ec ? json::value(nullptr) : v;
}

} // namespace

json::value redact_request(const json::value& request)
{
  if (request.is_string()) {
    const std::string_view s = request.as_string();
    const bool uri = is_data_uri(s);
    if (uri || looks_base64(s)) {
      files::Sha256 sha;
      sha.update(s);
      return json::string(
        fmt::format("[redacted {}: {} chars, sha256 {}]", uri ? "data-uri" : "base64", s.size(), sha.hex()));
    }
    return request;
  }
  if (request.is_array()) {
    json::array out;
    for (const auto& v : request.as_array()) {
      out.push_back(redact_request(v));
    }
    return out;
  }
  if (request.is_object()) {
    json::object out;
    for (const auto& [k, v] : request.as_object()) {
      out[k] = redact_request(v);
    }
    return out;
  }
  return request;
}

json::object job_document(const store::Job& job, const fs::path& videos_dir, std::optional<common::JobState> state,
                          const std::optional<VideoFacts>& video)
{
  json::object o;
  o["job_id"] = job.id;
  o["batch_id"] = job.batch;
  o["key"] = opt(job.key);
  o["state"] = common::to_string(state.value_or(job.state));
  o["model"] = job.model;
  o["request"] = redact_request(parse_or_null(job.request));
  o["labels"] = parse_or_null(job.labels);
  o["output"] = job.output;
  o["generation_id"] = opt(job.generation_id);
  o["route"] = json::object{{"asked", opt(job.route_asked)}, {"served", opt(job.route_served)}};
  o["cost"] = json::object{{"usd", opt_num(job.cost_usd)},
                           {"credits", opt_num(job.cost_credits)},
                           {"refund_usd", opt_num(job.refund_usd)}};
  if (video) {
    o["video"] = json::object{{"path", video->path}, {"bytes", video->bytes}, {"sha256", video->sha256}};
  } else if (job.video_sha256 && state.value_or(job.state) == common::JobState::completed) {
    const fs::path path = job.video_path ? fs::path(*job.video_path) : videos_dir / job.output;
    o["video"] = json::object{
      {"path", path.lexically_normal().string()}, {"bytes", opt_num(job.video_bytes)}, {"sha256", *job.video_sha256}};
  } else {
    o["video"] = nullptr;
  }
  if (job.error) {
    json::object e{{"code", job.error->code}, {"message", job.error->message}};
    if (job.error->http_status) {
      e["http_status"] = *job.error->http_status;
    }
    o["error"] = std::move(e);
  } else {
    o["error"] = nullptr;
  }
  const bool completed = state.value_or(job.state) == common::JobState::completed;
  o["timings"] = json::object{{"created_at", job.created_at},
                              {"accepted_at", opt(job.accepted_at)},
                              {"completed_at", completed ? opt(job.finished_at) : json::value(nullptr)},
                              {"finished_at", opt(job.finished_at)},
                              {"attempts", job.attempts},
                              {"polls", job.polls}};
  return o;
}

fs::path sidecar_path(const fs::path& mp4)
{
  std::string name = mp4.filename().string();
  std::string ext = mp4.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".mp4" && name.size() > 4) {
    name.resize(name.size() - 4);
  }
  return mp4.parent_path() / (name + ".json");
}

std::string sidecar_json(const store::Job& job, const fs::path& videos_dir, const VideoFacts& video,
                         std::string_view now)
{
  store::Job j = job;
  j.finished_at = std::string(now);
  auto doc = job_document(j, videos_dir, common::JobState::completed, video);
  json::object out;
  out["format"] = "klingd.sidecar/1";
  for (auto& kv : doc) {
    out[kv.key()] = std::move(kv.value());
  }
  return json::serialize(out) + "\n";
}

} // namespace klingd::engine
