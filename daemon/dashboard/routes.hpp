// The dashboard's side of the API server: what a request on the TCP listener may reach
// (its page, assets, videos, recent batches, and the read + cancel/retry routes of the
// socket API), and GET /v1/dashboard on the socket for `klingctl dashboard`.
#pragma once

#include "daemon/api/router.hpp"

namespace klingd::dashboard {

// A request from the TCP listener: token, Host and Origin checks, then the dashboard's
// routes or the allowed API routes. Everything else is 404.
boost::asio::awaitable<api::Routed> route(api::ApiContext ctx, api::Request req);

// GET /v1/dashboard (socket): {"enabled", "url"} — the URL carries the token.
boost::asio::awaitable<api::Response> handle_info(api::ApiContext ctx, api::Request req, api::PathParams params);

// GET /v1/batches: the 20 newest batches with counts by state (the page's progress bars).
boost::asio::awaitable<api::Response> handle_batches(api::ApiContext ctx, api::Request req, api::PathParams params);

// Byte range of a Range header against a file of `size` bytes. nullopt: serve it all
// (no header, or a form we do not support — RFC 9110 lets us ignore it); an empty
// optional inside: unsatisfiable (416).
struct ByteRange
{
  std::uint64_t offset;
  std::uint64_t length;
};
std::optional<std::optional<ByteRange>> parse_range(std::string_view header, std::uint64_t size);

} // namespace klingd::dashboard
