// The handlers of the socket API's routes (docs/contract.md §4.1), one per route.
// Each takes the context, the request and its path parameters by value.
#pragma once

#include <optional>
#include <string_view>

#include "daemon/api/router.hpp"

namespace klingd::api {

// handlers_jobs.cpp
boost::asio::awaitable<Response> handle_submit(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_list(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_get(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_cancel(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_retry(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_batch(ApiContext ctx, Request req, PathParams params);
// A boolean query parameter such as dry_run: "1"/"true" → true, "0"/"false" → false, else nullopt.
inline std::optional<bool> query_flag(std::string_view value)
{
  if (value == "1" || value == "true") {
    return true;
  }
  if (value == "0" || value == "false") {
    return false;
  }
  return std::nullopt;
}

// POST /v1/batches/{id}/retry|cancel: bulk actions, each job through the engine (handlers_bulk.cpp).
boost::asio::awaitable<Response> handle_batch_retry(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_batch_cancel(ApiContext ctx, Request req, PathParams params);

// handlers_system.cpp
boost::asio::awaitable<Response> handle_events(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_status(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_pause(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_resume(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_metrics(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_prune(ApiContext ctx, Request req, PathParams params);
boost::asio::awaitable<Response> handle_models(ApiContext ctx, Request req, PathParams params);

// handlers_cost.cpp
boost::asio::awaitable<Response> handle_cost(ApiContext ctx, Request req, PathParams params);

} // namespace klingd::api
