// The socket API's view of one HTTP exchange, without Beast types, so the router
// and the handlers compile without Beast (only api_server.cpp speaks HTTP).
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace klingd::api {

// Who is on the other end of the socket (SO_PEERCRED); -1 when unknown.
struct Peer
{
  long uid = -1;
  long pid = -1;
};

class SubmitStream; // submit_stream.hpp

struct Request
{
  std::string method;                              // "GET", "POST", …
  std::string target;                              // as sent
  std::vector<std::string> segments;               // path segments, percent-decoded
  std::multimap<std::string, std::string> query;   // percent-decoded
  std::string content_type;                        // media type only, lower case, no parameters
  std::string body;
  // POST /v1/jobs with an NDJSON body: the specs were parsed while the body arrived and
  // `body` stays empty (submit_stream.hpp).
  std::shared_ptr<SubmitStream> submit_stream;
  Peer peer;
  // Header fields by lower-case name (the last one wins); the dashboard reads Host,
  // Origin, Cookie, Authorization and Range.
  std::map<std::string, std::string> headers;
  // Came in on the dashboard's TCP listener (already past its token check).
  bool dashboard = false;

  // The first value of query parameter `name`, if given.
  std::optional<std::string> query_value(const std::string& name) const
  {
    auto it = query.find(name);
    return it == query.end() ? std::nullopt : std::optional<std::string>(it->second);
  }

  // Header field `name` (lower case), empty when absent.
  std::string header(const std::string& name) const
  {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Response
{
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // GET /v1/events: the server streams events after this sequence number
  // instead of sending `body`.
  std::optional<std::int64_t> stream_events_after;
  // Sends `length` bytes of the file at `path` from `offset` instead of `body`
  // (a video for the dashboard; the handler checked that it exists).
  struct File
  {
    std::string path;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };
  std::optional<File> file;
};

// A JSON response (serialized with a trailing newline).
Response json_response(unsigned status, const boost::json::value& body);

} // namespace klingd::api
