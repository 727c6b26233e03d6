#include "daemon/dashboard/routes.hpp"

#include "common/config.hpp"
#include "daemon/api/error.hpp"
#include "daemon/dashboard/access.hpp"
#include "daemon/store/job_store.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <fmt/format.h>

#include <sys/stat.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <memory>

namespace klingd::dashboard {

// Embedded at build time from daemon/dashboard/assets/ (daemon/CMakeLists.txt).
extern const std::string_view k_index_html;
extern const std::string_view k_app_js;
extern const std::string_view k_app_css;

namespace asio = boost::asio;
namespace json = boost::json;
using api::ApiError;
using api::Request;
using api::Response;
using api::Routed;

namespace {

// Every response from the listener: the page loads only its own files, nobody frames it,
// and the token in the first URL does not leak through Referer.
void harden(Response& res)
{
  res.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "media-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'none'");
  res.headers.emplace_back("X-Content-Type-Options", "nosniff");
  res.headers.emplace_back("Referrer-Policy", "no-referrer");
  res.headers.emplace_back("X-Frame-Options", "DENY");
}

Response asset(std::string_view body, std::string_view type)
{
  Response res;
  res.body = std::string(body);
  res.content_type = std::string(type);
  res.headers.emplace_back("Cache-Control", "no-cache");
  return res;
}

// The API routes the page uses. Submitting, pause/resume and metrics stay on the socket.
bool allowed_api(const Request& req)
{
  const auto& s = req.segments;
  if (s.empty() || s[0] != "v1") {
    return false;
  }
  if (req.method == "GET") {
    if (s.size() == 2) {
      return s[1] == "jobs" || s[1] == "events" || s[1] == "status" || s[1] == "cost" || s[1] == "models";
    }
    if (s.size() == 3) {
      return s[1] == "jobs" || s[1] == "batches";
    }
    return false;
  }
  if (req.method == "POST") {
    return s.size() == 4 && (s[1] == "jobs" || s[1] == "batches") && (s[3] == "cancel" || s[3] == "retry");
  }
  return false;
}

// The file of a completed job: the path comes from the store, never from the request.
Response video(api::ApiContext ctx, const Request& req, const std::string& id)
{
  auto job = ctx.store.get(id);
  if (!job || job->state != common::JobState::completed || !job->video_sha256) {
    return api::error_response(ApiError::not_found, fmt::format("no completed job \"{}\" with a video", id));
  }
  // As job_to_json reports it: video_path, else the output under the videos directory.
  std::filesystem::path path = job->video_path ? std::filesystem::path(*job->video_path) : std::filesystem::path(job->output);
  if (path.is_relative()) {
    path = std::filesystem::path(ctx.config.store.videos_dir) / path;
  }
  struct stat st{};
  // lstat: a symlink put in place of a finished video is not followed (write_file opens
  // with O_NOFOLLOW as well).
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return api::error_response(ApiError::not_found, fmt::format("the video of job \"{}\" is no longer on disk", id));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  Response res;
  res.content_type = "video/mp4";
  res.headers.emplace_back("Accept-Ranges", "bytes");
  res.headers.emplace_back("Cache-Control", "private, max-age=3600");
  auto range = parse_range(req.header("range"), size);
  if (range && !*range) {
    auto err = api::error_response(ApiError::range_not_satisfiable,
                                   fmt::format("Range \"{}\" is outside the {} bytes of the video", req.header("range"), size));
    err.headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
    return err;
  }
  Response::File file{path.string(), 0, size};
  if (range) {
    file.offset = (*range)->offset;
    file.length = (*range)->length;
    res.status = 206;
    res.headers.emplace_back("Content-Range",
                             fmt::format("bytes {}-{}/{}", file.offset, file.offset + file.length - 1, size));
  }
  res.file = std::move(file);
  return res;
}

// GET /v1/jobs/{id}/video_link: a link for <video src> and downloads, signed with the token,
// valid for k_video_link_ttl_s; for completed jobs with a video only.
Response video_link_response(const Access& access, api::ApiContext ctx, const std::string& id)
{
  auto job = ctx.store.get(id);
  if (!job || job->state != common::JobState::completed || !job->video_sha256) {
    return api::error_response(ApiError::not_found, fmt::format("no completed job \"{}\" with a video", id));
  }
  const auto now = std::chrono::system_clock::now();
  const auto expires = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() + k_video_link_ttl_s;
  json::object o;
  o["url"] = dashboard::video_link(access, job->id, expires);
  o["expires_in_s"] = k_video_link_ttl_s;
  auto res = api::json_response(200, o);
  res.headers.emplace_back("Cache-Control", "no-store");
  return res;
}

// GET /v1/dashboard (socket): {"enabled", "url"} — the URL carries the token.
asio::awaitable<Response> handle_info(const Access* access)
{
  json::object o;
  o["enabled"] = access != nullptr;
  o["url"] = access ? json::value(access->url()) : json::value(nullptr);
  co_return api::json_response(200, o);
}

} // namespace

void add_socket_routes(api::Routes& routes, const Access* access)
{
  routes.push_back({"GET", "/v1/dashboard",
                    [access](api::ApiContext, Request, api::PathParams) { return handle_info(access); }});
  routes.push_back({"GET", "/v1/batches", handle_batches});
}

api::TcpListener tcp_listener(Access& access, api::Routes api_routes)
{
  auto routes = std::make_shared<const api::Routes>(std::move(api_routes));
  api::TcpListener l;
  l.host = access.host;
  l.port = access.port;
  l.route = [a = &access, routes](api::ApiContext ctx, Request req) { return route(*a, *routes, ctx, std::move(req)); };
  l.has_credential = [a = &access](const Request& req) { return has_credential(*a, req); };
  l.redact_target = [](std::string_view target) { return redact_target(target); };
  l.bound = [a = &access](unsigned short port) {
    a->bound_port = port;
    return a->origin();
  };
  return l;
}

std::optional<std::optional<ByteRange>> parse_range(std::string_view header, std::uint64_t size)
{
  constexpr std::string_view prefix = "bytes=";
  if (header.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  auto spec = header.substr(prefix.size());
  if (spec.find(',') != std::string_view::npos) {
    return std::nullopt; // several ranges: the whole file is a valid answer
  }
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) {
    return std::nullopt;
  }
  auto num = [](std::string_view s, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  auto first_s = spec.substr(0, dash);
  auto last_s = spec.substr(dash + 1);
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  if (first_s.empty()) {
    // bytes=-N: the last N bytes.
    if (!num(last_s, last)) {
      return std::nullopt;
    }
    if (last == 0 || size == 0) {
      return std::optional<ByteRange>();
    }
    last = std::min(last, size);
    return std::optional<ByteRange>(ByteRange{size - last, last});
  }
  if (!num(first_s, first) || (!last_s.empty() && (!num(last_s, last) || last < first))) {
    return std::nullopt;
  }
  if (first >= size) {
    return std::optional<ByteRange>();
  }
  if (last_s.empty() || last >= size) {
    last = size - 1;
  }
  return std::optional<ByteRange>(ByteRange{first, last - first + 1});
}

asio::awaitable<Routed> route(const Access& access, const api::Routes& api_routes, api::ApiContext ctx, Request req)
{
  const bool old_cookie = carries_old_cookie(access, req);
  // HEAD is GET without a body (the server drops it).
  if (req.method == "HEAD") {
    req.method = "GET";
  }
  const auto& s = req.segments;
  const bool get = req.method == "GET";
  const bool root = s.empty() || (s.size() == 1 && s[0].empty());
  const bool asset_path = s.size() == 2 && s[0] == "assets" && (s[1] == "app.js" || s[1] == "app.css");
  const bool job_sub = s.size() == 4 && s[0] == "v1" && s[1] == "jobs";
  const bool video_path = get && job_sub && s[3] == "video";
  // The page and its assets are the same for everybody and hold no data: they load without
  // the token, which the page then reads from its own address's fragment.
  Need need = Need::token;
  if (get && (root || asset_path)) {
    need = Need::nothing;
  } else if (video_path) {
    need = Need::token_or_video_link;
  }
  Routed out{Response{}, ""};
  if (auto refused = check_request(access, req, need, video_path ? std::string_view(s[2]) : std::string_view())) {
    out = {std::move(*refused), "dashboard_refused"};
  } else if (get && root) {
    out = {asset(k_index_html, "text/html; charset=utf-8"), "/"};
  } else if (get && asset_path && s[1] == "app.js") {
    out = {asset(k_app_js, "text/javascript; charset=utf-8"), "/assets"};
  } else if (get && asset_path) {
    out = {asset(k_app_css, "text/css; charset=utf-8"), "/assets"};
  } else if (video_path) {
    out = {video(ctx, req, s[2]), "/v1/jobs/{id}/video"};
  } else if (get && job_sub && s[3] == "video_link") {
    out = {video_link_response(access, ctx, s[2]), "/v1/jobs/{id}/video_link"};
  } else if (get && s.size() == 2 && s[0] == "v1" && s[1] == "batches") {
    auto res = co_await handle_batches(ctx, req, {});
    out = {std::move(res), "/v1/batches"};
  } else if (allowed_api(req)) {
    out = co_await api::route_request(api_routes, ctx, std::move(req));
  } else {
    out = {api::error_response(ApiError::not_found, "not on the dashboard (the socket API has the rest)"), "unmatched"};
  }
  if (old_cookie) {
    // Set by versions that kept the token in a cookie, which every server on this host
    // received: delete it.
    out.response.headers.emplace_back("Set-Cookie",
                                      fmt::format("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", access.cookie_name()));
  }
  harden(out.response);
  co_return out;
}

asio::awaitable<Response> handle_batches(api::ApiContext ctx, Request, api::PathParams)
{
  json::array batches;
  for (const auto& summary : ctx.store.recent_batches(20)) {
    json::object b;
    b["batch"] = summary.id;
    b["created_at"] = summary.created_at;
    json::object counts;
    for (auto name : {"queued", "submitting", "generating", "downloading", "completed", "failed", "canceled"}) {
      counts[name] = 0;
    }
    std::int64_t total = 0;
    for (const auto& [state, n] : summary.counts) {
      counts[common::to_string(state)] = n;
      total += n;
    }
    b["counts"] = std::move(counts);
    b["total"] = total;
    batches.push_back(std::move(b));
  }
  json::object o;
  o["batches"] = std::move(batches);
  co_return api::json_response(200, o);
}

} // namespace klingd::dashboard
