// The dashboard's side of the API server: what a request on the TCP listener may reach
// (its page, assets, videos, recent batches, and the read + cancel/retry routes of the
// socket API), and GET /v1/dashboard on the socket for `klingctl dashboard`. daemon.cpp
// registers these on the server (add_socket_routes, tcp_listener): the api never includes
// this folder.
#pragma once

#include "daemon/api/router.hpp"

namespace klingd::dashboard {

struct Access;

// Adds the dashboard's routes on the socket to `routes`: GET /v1/dashboard ({"enabled",
// "url"}; the URL carries the token) and GET /v1/batches. `access` (null when
// dashboard.listen is not set) must outlive the server.
void add_socket_routes(api::Routes& routes, const Access* access);

// The TCP listener for `access` (which must outlive the server; its bound_port is set once
// listening): token, Host and Origin checks, then the dashboard's routes or the allowed
// ones of `api_routes`. Everything else is 404.
api::TcpListener tcp_listener(Access& access, api::Routes api_routes);

// A request from the TCP listener, as tcp_listener routes it.
boost::asio::awaitable<api::Routed> route(const Access& access, const api::Routes& api_routes, api::ApiContext ctx,
                                          api::Request req);

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
