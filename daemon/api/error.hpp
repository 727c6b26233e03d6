// The socket API's error codes (stable names users and scripts match on) and
// their HTTP statuses, mapped in exactly one place.
#pragma once

#include "daemon/api/http.hpp"

#include <boost/json/array.hpp>

#include <string>
#include <string_view>

namespace klingd::engine {
enum class ActionError;
}

namespace klingd::api {

enum class ApiError {
  bad_request,          // a malformed query parameter, path or header
  invalid_json,         // the body is not JSON (message names line and column)
  invalid_spec,         // a job spec breaks the rules; details list each bad index
  not_found,            // no such job, batch or route
  conflict,             // the job's state forbids it (cancel a terminal job), or an output already claimed
  method_not_allowed,   // the route exists, the method does not (Allow lists the methods)
  payload_too_large,    // body over socket.max_body_bytes
  headers_too_large,    // request header over the header limit
  request_timeout,      // header or body not received within its deadline
  unsupported_media_type,
  unauthorized,         // dashboard: no or wrong token
  forbidden,            // dashboard: a non-loopback Host, or a POST from another Origin
  range_not_satisfiable, // a Range outside the file (video)
  shutting_down,        // the daemon is stopping
  storage_full,         // the state directory's disk is full (507)
  internal,             // a bug or an I/O failure; logged
};

std::string_view to_string(ApiError error);

// The HTTP status of each error: the one place where that mapping lives.
unsigned http_status(ApiError error);

// Why the engine refused a cancel or retry, as the API answers it.
ApiError from_engine(engine::ActionError error);

// {"error": {"code", "message", "details"}} with the error's status.
Response error_response(ApiError error, std::string message, boost::json::array details = {});

} // namespace klingd::api
