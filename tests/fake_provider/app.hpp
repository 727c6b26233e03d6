// The fake provider's request handling, independent of the transport: a request goes in, a
// Reply comes out saying what to send (or that the connection must be reset, delayed, or a
// video streamed and maybe cut short). server.cpp turns Replies into bytes on a socket.
#pragma once

#include "tests/fake_provider/fake_config.hpp"
#include "tests/fake_provider/generations.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include <memory>
#include <optional>
#include <string>

namespace fake {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct VideoStream {
  std::shared_ptr<const VideoLayout> layout;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;                   // exclusive
  std::optional<std::uint64_t> cut_after;  // close the connection after this many body bytes
  bool head_only = false;
};

struct Reply {
  Response response;
  double delay_s = 0;  // wait this long before answering
  bool reset = false;  // abort the connection (RST) instead of answering
  std::optional<VideoStream> video; // header in `response`, body streamed from the layout
};

// Per-request facts the API handlers share.
struct ApiCall {
  std::string request_id;
  std::string client_request_id; // empty when absent or invalid (silently dropped)
  std::string path;
  std::string base_url; // scheme://host:port the client used, for absolute video URLs
};

class App {
public:
  App(boost::asio::any_io_executor executor, FakeConfig startup,
      std::shared_ptr<const std::string> base_mp4, std::string scheme);
  ~App();

  boost::asio::awaitable<Reply> handle(Request request);

  void on_video_bytes(std::uint64_t n) { m_state.bytes_served += n; }
  void on_video_complete() { ++m_state.downloads_completed; }
  void on_connection_open();
  void on_connection_close() { --m_connections_open; }
  const FakeConfig& config() const { return m_config; }
  // Fault script given on the command line; POST /__admin/reset restores it with the config.
  void set_startup_script(std::vector<ScriptStep> steps);

private:
  Reply handle_create(const Request& request, bool legacy, const ApiCall& call);
  Reply handle_poll(const Request& request, const ApiCall& call);
  Reply handle_download(const Request& request);
  Reply handle_logs(const Request& request, const ApiCall& call);
  Reply handle_billing(const Request& request, const ApiCall& call, bool transactions);
  // The balance now: opening balance - charges of completed generations + refunds.
  double current_balance() const;
  boost::asio::awaitable<Reply> handle_admin(const Request& request);
  boost::asio::awaitable<boost::json::value> stats_json(bool with_sha);

  // Shared reply builders: every API answer echoes x-client-request-id.
  Reply json_reply(http::status status, const boost::json::value& body, const ApiCall& call) const;
  Reply error_reply(http::status status, std::string_view message, const ApiCall& call) const;
  // 5xx / 429 / reset answers for the generic faults; nullopt for the others.
  std::optional<Reply> generic_fault_reply(FaultType fault, const ApiCall& call) const;
  Reply malformed_reply(const boost::json::value& intended, const ApiCall& call) const;
  // 200 with `body`, cut short under malformed_json, delayed under slow (logs, billing).
  Reply read_reply(const boost::json::value& body, FaultType fault, const ApiCall& call) const;

  Generation& record_generation(const boost::json::value& body, bool legacy, const ApiCall& call);
  void add_log_row(const ApiCall& call, std::string model, Generation* generation, bool is_poll);
  boost::json::object status_object(Generation& generation, const ApiCall& call, bool from_poll,
                                    bool& terminal);
  std::string signed_video_url(const Generation& generation, const std::string& base_url) const;
  std::string url_signature(std::string_view path, std::string_view ks_time) const;
  void note_create_call(double now);

  boost::asio::any_io_executor m_executor;
  FakeConfig m_startup;
  FakeConfig m_config;
  std::vector<ScriptStep> m_startup_script;
  State m_state;
  std::uint64_t m_epoch = 0; // bumped by reset, so late hash results are dropped
  double m_opened_wall = 0;  // when the ledger's opening (INIT) row was written: start and reset
  std::shared_ptr<const std::string> m_base_mp4;
  std::string m_scheme;
  std::string m_url_secret;
  std::uint64_t m_request_ordinal = 0;
  std::uint64_t m_connections_open = 0;
  std::uint64_t m_connections_peak = 0;
  std::unique_ptr<VideoHasher> m_hasher;
};

} // namespace fake
