// HttpClient: the HTTP/1.1 client every outbound call of the daemon goes through (provider
// API and video downloads). Keep-alive pooling per (scheme, host, port), HTTPS with
// verification always on, a deadline on every operation, and failures classified by what
// the server can have seen, because a paid create that may have reached the provider must
// never be treated like one that provably did not (docs/contract.md §3.2).
//
// Beast/Asio stay out of this header (pimpl): the engine includes it.
#pragma once

#include "common/result.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace klingd::provider {

struct HttpRequest
{
  std::string method;
  // http:// or https:// only; anything else fails with not_sent. The caller decides
  // whether plain http is acceptable.
  std::string url;
  // Sent as given; Host, Content-Length and User-Agent are added unless present.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // request(): deadline for the whole exchange (connect to last body byte).
  // stream(): deadline up to the response head, then an inactivity limit per body read.
  std::chrono::milliseconds timeout{30000};
  // An idempotent request that fails on a reused connection before any response byte is
  // retried once on a fresh one; a non-idempotent one (a create) never is.
  bool idempotent = true;
};

struct HttpResponse
{
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // First header of that name, compared case-insensitively; nullopt when absent.
  std::optional<std::string> header(std::string_view name) const;
};

enum class TransportFailure {
  // Provably nothing of the request reached the server: bad URL, DNS, connect refused or
  // timed out, TLS handshake or certificate failure. Always safe to retry.
  not_sent,
  // At least one byte was written, then reset/EOF/timeout before a complete response.
  // For a paid create this is AMBIGUOUS.
  sent_no_answer,
  // The server answered something that is not valid HTTP/1.1 (or headers too large).
  bad_response,
  // request(): the body exceeded Options::max_response_bytes.
  body_too_large,
  // stream(): on_chunk returned an error; message is that error's message.
  aborted_by_caller,
};

std::string_view to_string(TransportFailure kind);

// message never contains header values (Authorization in particular) or URL queries
// (signed CDN URLs carry secrets).
struct TransportError
{
  TransportFailure kind;
  std::string message;
};

class HttpClient
{
public:
  struct Options
  {
    // Extra PEM CA bundle trusted in addition to the system store; empty = none.
    std::string ca_file;
    // request() bodies above this fail with body_too_large (stream() has no limit: the
    // caller counts).
    std::size_t max_response_bytes = 4 << 20;
    // An idle pooled connection older than this is closed instead of reused.
    std::chrono::seconds idle_max{20};
    std::size_t max_idle_per_host = 64;
    // Cap over all hosts; the oldest idle connection is closed first.
    std::size_t max_idle_total = 256;
    // Response head (status line + headers) limit; above it → bad_response.
    std::size_t max_header_bytes = 64 * 1024;
    std::string user_agent = "klingd";
  };

  struct Stats
  {
    std::uint64_t connections_opened = 0; // TCP connections established
    std::uint64_t tls_handshakes = 0;     // successful TLS handshakes
    std::uint64_t requests = 0;           // requests written (retries count again)
    std::uint64_t reused = 0;             // requests sent on a pooled connection
  };

  // Throws if ca_file is set and cannot be loaded (a config error: klingd reports it as
  // klingd.startup_failed and exits 1, daemon.cpp).
  // Destroy only when no request is in flight (close_all() and let them finish first).
  HttpClient(boost::asio::any_io_executor ex, Options options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One exchange, whole body in memory. Any HTTP status is a success here; only transport
  // failures are errors. Redirects are not followed. The request's Authorization credential
  // never appears in the returned body: a server that quotes it back gets "[redacted]".
  boost::asio::awaitable<Result<HttpResponse, TransportError>> request(HttpRequest req);

  // Streaming exchange for downloads, constant memory: on_head is called once with status
  // and headers (return false to stop reading; the connection is then closed unless the
  // body was empty), then on_chunk for each body piece (an error stops the transfer with
  // aborted_by_caller). Returns status and headers with an empty body. A body that ends
  // early is sent_no_answer: the caller has seen the bytes that did arrive.
  boost::asio::awaitable<Result<HttpResponse, TransportError>>
  stream(HttpRequest req,
         std::function<bool(const HttpResponse&)> on_head,
         std::function<Result<Ok>(std::string_view)> on_chunk);

  // Streaming into the caller's buffers (downloads that hash and write on another thread):
  // acquire() lends the buffer the next body bytes are read into — it may wait, which is the
  // back-pressure of a bounded pool — and filled() takes it back with its first n bytes read
  // (n ≥ 1; a buffer is filled as far as the body allows before it is handed back). Every
  // acquire() is matched by exactly one filled() or release(): release() returns a buffer that
  // got no bytes (end of body, failure). An error from filled() stops the transfer with
  // aborted_by_caller. A Content-Length body is read straight from the (TLS) stream into
  // the lent buffers, past Beast's parser: no intermediate copy, one hand-over per buffer.
  struct BodySink
  {
    std::function<bool(const HttpResponse&)> on_head;
    std::function<boost::asio::awaitable<std::span<char>>()> acquire;
    std::function<boost::asio::awaitable<Result<Ok>>(std::span<char> buffer, std::size_t n)> filled;
    std::function<void(std::span<char> buffer)> release;
  };
  boost::asio::awaitable<Result<HttpResponse, TransportError>> stream(HttpRequest req, BodySink sink);

  const Stats& stats() const;

  // Number of connections currently in the idle pool (for tests and metrics).
  std::size_t idle_connections() const;

  // Closes idle connections and aborts in-flight exchanges (they fail with their current
  // classification). For shutdown; the client stays usable afterwards.
  void close_all();

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace klingd::provider
