// The route table of the socket API: method + path pattern → handler. Unknown paths
// answer 404, known paths with another method 405 with an Allow header.
#pragma once

#include "daemon/api/api_server.hpp"
#include "daemon/api/http.hpp"

#include <boost/asio/awaitable.hpp>

#include <string>
#include <vector>

namespace klingd::api {

// Path parameters ({id}) in pattern order, percent-decoded.
using PathParams = std::vector<std::string>;
using Handler = boost::asio::awaitable<Response> (*)(ApiContext ctx, Request req, PathParams params);

struct Routed
{
  Response response;
  std::string route; // the route pattern ("/v1/jobs/{id}"), or "unmatched" — a metrics label
};

// Finds the handler for `req` and runs it. Handler exceptions propagate (the server
// turns them into 500).
boost::asio::awaitable<Routed> route_request(ApiContext ctx, Request req);

} // namespace klingd::api
