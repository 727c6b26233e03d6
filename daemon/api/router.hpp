// Route tables: method + path pattern → handler. Unknown paths answer 404, known paths
// with another method 405 with an Allow header. daemon.cpp gives each listener its table:
// the socket API's own routes (socket_routes()) plus those the dashboard adds
// (daemon/dashboard/routes.hpp), so this folder never includes the dashboard.
#pragma once

#include "daemon/api/api_server.hpp"
#include "daemon/api/http.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::api {

// Path parameters ({id}) in pattern order, percent-decoded.
using PathParams = std::vector<std::string>;
// A std::function, so that whoever registers a route can bind what its handler needs.
using Handler = std::function<boost::asio::awaitable<Response>(ApiContext ctx, Request req, PathParams params)>;

struct Route
{
  std::string method;
  std::string pattern; // segments separated by '/', "{id}" matches one segment
  Handler handler;
};
// A listener's routes, tried in order.
using Routes = std::vector<Route>;

struct Routed
{
  Response response;
  std::string route; // the route pattern ("/v1/jobs/{id}"), or "unmatched" — a metrics label
};

// The socket API's own routes (docs/contract.md §4.1).
Routes socket_routes();

// Finds the handler for `req` in `routes` (which must outlive the call) and runs it.
// Handler exceptions propagate (the server turns them into 500).
boost::asio::awaitable<Routed> route_request(const Routes& routes, ApiContext ctx, Request req);

// The dashboard's loopback TCP listener as daemon.cpp hands it to ApiServer::listen_tcp:
// where it listens, how its requests are routed, what the server asks of it per request.
struct TcpListener
{
  std::string host; // as configured: 127.0.0.1, localhost, [::1]
  std::string port; // as configured; "0" picks a free port
  // Routes one request, the listener's own checks (token, Host, Origin) included.
  std::function<boost::asio::awaitable<Routed>(ApiContext ctx, Request req)> route;
  // Whether `req` carries a credential: its connection then counts as authenticated for
  // the connection caps.
  std::function<bool(const Request& req)> has_credential;
  // The request target as it may be logged (secrets in the query hidden).
  std::function<std::string(std::string_view target)> redact_target;
  // Told the port once bound; returns the address to log.
  std::function<std::string(unsigned short port)> bound;
};

} // namespace klingd::api
