// A small blocking HTTP/1.1 client over klingd's Unix socket: Content-Length and
// chunked bodies, keep-alive with one reconnect, and line-by-line streaming for
// GET /v1/events. klingctl must not link the daemon, so this is its own.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::cli {

struct HttpResponse
{
  int status = 0;
  std::string content_type;
  std::string body;
};

// Nothing answers on the socket (missing file, refused, permission denied).
class Unreachable : public std::runtime_error
{
public:
  using std::runtime_error::runtime_error;
};

class HttpClient
{
public:
  // `socket_path`: where klingd listens. `timeout_s` bounds each read and write
  // (not streams, which wait as long as the daemon has nothing to say).
  explicit HttpClient(std::string socket_path, double timeout_s = 60);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const std::string& socket_path() const { return m_path; }

  // Sends one request and reads the whole response. Throws Unreachable when the
  // socket cannot be connected, std::runtime_error on a broken exchange.
  HttpResponse request(std::string_view method, std::string_view target, std::string_view body = {},
                       std::string_view content_type = "application/json");

  // GETs a streaming NDJSON response and calls `on_line` for each line until it
  // returns false or the server ends the stream. Non-200 answers are returned whole
  // (on_line not called); a 200 stream returns status 200 with an empty body.
  HttpResponse stream_lines(std::string_view target, const std::function<bool(std::string_view)>& on_line);

private:
  void connect();
  void close();
  void send_all(std::string_view data);
  // Reads at least one more byte into m_buf; false on EOF.
  bool fill();
  std::string read_line();
  std::string read_exact(std::size_t n);
  // Reads status line and headers; returns the response with status and content type.
  HttpResponse read_head(bool& chunked, long long& content_length, bool& close_after);

  std::string m_path;
  double m_timeout_s;
  int m_fd = -1;
  std::string m_buf;
  std::size_t m_pos = 0;
};

} // namespace klingd::cli
