#include "daemon/api/error.hpp"

#include "daemon/engine/engine.hpp"

#include <boost/json/serialize.hpp>

namespace klingd::api {

std::string_view to_string(ApiError error)
{
  switch (error) {
  case ApiError::bad_request: return "bad_request";
  case ApiError::invalid_json: return "invalid_json";
  case ApiError::invalid_spec: return "invalid_spec";
  case ApiError::not_found: return "not_found";
  case ApiError::conflict: return "conflict";
  case ApiError::method_not_allowed: return "method_not_allowed";
  case ApiError::payload_too_large: return "payload_too_large";
  case ApiError::headers_too_large: return "headers_too_large";
  case ApiError::request_timeout: return "request_timeout";
  case ApiError::unsupported_media_type: return "unsupported_media_type";
  case ApiError::unauthorized: return "unauthorized";
  case ApiError::forbidden: return "forbidden";
  case ApiError::range_not_satisfiable: return "range_not_satisfiable";
  case ApiError::shutting_down: return "shutting_down";
  case ApiError::storage_full: return "storage_full";
  case ApiError::internal: return "internal";
  }
  return "internal";
}

unsigned http_status(ApiError error)
{
  switch (error) {
  case ApiError::bad_request: return 400;
  case ApiError::invalid_json: return 400;
  case ApiError::invalid_spec: return 400;
  case ApiError::not_found: return 404;
  case ApiError::conflict: return 409;
  case ApiError::method_not_allowed: return 405;
  case ApiError::payload_too_large: return 413;
  case ApiError::headers_too_large: return 431;
  case ApiError::request_timeout: return 408;
  case ApiError::unsupported_media_type: return 415;
  case ApiError::unauthorized: return 401;
  case ApiError::forbidden: return 403;
  case ApiError::range_not_satisfiable: return 416;
  case ApiError::shutting_down: return 503;
  case ApiError::storage_full: return 507;
  case ApiError::internal: return 500;
  }
  return 500;
}

ApiError from_engine(engine::ActionError error)
{
  switch (error) {
  case engine::ActionError::not_found:
    return ApiError::not_found;
  case engine::ActionError::conflict:
    return ApiError::conflict;
  }
  return ApiError::internal;
}

Response error_response(ApiError error, std::string message, boost::json::array details)
{
  boost::json::object inner;
  inner["code"] = to_string(error);
  inner["message"] = std::move(message);
  inner["details"] = std::move(details);
  boost::json::object outer;
  outer["error"] = std::move(inner);
  Response res;
  res.status = http_status(error);
  res.body = boost::json::serialize(outer);
  res.body += '\n';
  return res;
}

} // namespace klingd::api
