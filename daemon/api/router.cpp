#include "daemon/api/router.hpp"

#include "daemon/api/error.hpp"
#include "daemon/api/handlers.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <array>
#include <string_view>

namespace klingd::api {

namespace {

const std::array k_routes{
  Route{"POST", "/v1/jobs", handle_submit},
  Route{"GET", "/v1/jobs", handle_list},
  Route{"GET", "/v1/jobs/{id}", handle_get},
  Route{"POST", "/v1/jobs/{id}/cancel", handle_cancel},
  Route{"POST", "/v1/jobs/{id}/retry", handle_retry},
  Route{"GET", "/v1/batches/{id}", handle_batch},
  Route{"POST", "/v1/batches/{id}/retry", handle_batch_retry},
  Route{"POST", "/v1/batches/{id}/cancel", handle_batch_cancel},
  Route{"GET", "/v1/events", handle_events},
  Route{"GET", "/v1/status", handle_status},
  Route{"POST", "/v1/pause", handle_pause},
  Route{"POST", "/v1/resume", handle_resume},
  Route{"GET", "/metrics", handle_metrics},
  Route{"POST", "/v1/prune", handle_prune},
  Route{"GET", "/v1/models", handle_models},
  Route{"GET", "/v1/cost", handle_cost},
};

// Matches `segments` against `pattern`; fills `params` on success.
bool match(std::string_view pattern, const std::vector<std::string>& segments, PathParams& params)
{
  params.clear();
  std::size_t i = 0;
  std::size_t pos = 1; // skip the leading '/'
  while (pos <= pattern.size()) {
    auto slash = pattern.find('/', pos);
    auto part = pattern.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    pos = slash == std::string_view::npos ? pattern.size() + 1 : slash + 1;
    if (i >= segments.size()) {
      return false;
    }
    if (part == "{id}") {
      if (segments[i].empty()) {
        return false;
      }
      params.push_back(segments[i]);
    } else if (part != segments[i]) {
      return false;
    }
    ++i;
  }
  return i == segments.size();
}

} // namespace

Routes socket_routes()
{
  return Routes(k_routes.begin(), k_routes.end());
}

boost::asio::awaitable<Routed> route_request(const Routes& routes, ApiContext ctx, Request req)
{
  PathParams params;
  std::string allow;
  for (const auto& r : routes) {
    if (!match(r.pattern, req.segments, params)) {
      continue;
    }
    if (r.method == req.method) {
      auto pattern = r.pattern;
      Response res = co_await r.handler(ctx, std::move(req), std::move(params));
      co_return Routed{std::move(res), std::move(pattern)};
    }
    allow += allow.empty() ? "" : ", ";
    allow += r.method;
  }
  if (!allow.empty()) {
    auto res = error_response(ApiError::method_not_allowed,
                              fmt::format("method {} is not allowed here (allowed: {})", req.method, allow));
    res.headers.emplace_back("Allow", allow);
    co_return Routed{std::move(res), "method_not_allowed"};
  }
  std::string path;
  for (const auto& s : req.segments) {
    path += "/" + s;
  }
  co_return Routed{error_response(ApiError::not_found, fmt::format("no such route: {} {}", req.method, path.empty() ? "/" : path)), "unmatched"};
}

} // namespace klingd::api
