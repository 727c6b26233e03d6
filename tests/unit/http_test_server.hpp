// Scriptable HTTP/HTTPS server on 127.0.0.1 for the HttpClient and Downloader tests, plus a
// throwaway PKI (two CAs, leaf certificates) made with the OpenSSL API, and the loop harness.
// Each test supplies a per-connection handler coroutine: read requests, answer raw bytes,
// stall, close or reset, so every transport failure can be produced on purpose.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace klingd::test_http {

// A fresh directory under the system temp dir, removed with everything in it.
class ScratchDir
{
public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

private:
  std::filesystem::path m_path;
};

struct CertKey
{
  std::string cert_pem;
  std::string key_pem;
};

// Made once per process: `ca_file` trusts `good_ca` only.
struct TestPki
{
  std::filesystem::path ca_file;      // PEM of the trusted test CA
  CertKey localhost;                  // SAN DNS:localhost, IP:127.0.0.1; signed by the trusted CA
  CertKey wrong_host;                 // SAN DNS:wrong.example; signed by the trusted CA
  CertKey unknown_ca;                 // SAN DNS:localhost, IP:127.0.0.1; signed by an untrusted CA
};
const TestPki& test_pki();

struct ServerRequest
{
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<std::string> header(std::string_view name) const;
};

class ServerConnection
{
public:
  ServerConnection(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls);

  // TLS handshake when TLS; false if it failed (e.g. the client rejected the certificate).
  boost::asio::awaitable<bool> start();
  // nullopt on EOF or error.
  boost::asio::awaitable<std::optional<ServerRequest>> read_request();
  // Raw bytes; false on error (the client went away).
  boost::asio::awaitable<bool> write(std::string raw);
  // A complete keep-alive response with Content-Length.
  boost::asio::awaitable<bool> respond(int status, std::string body,
                                       std::vector<std::pair<std::string, std::string>> headers = {});
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds d);
  void close(); // orderly FIN
  void reset(); // RST (SO_LINGER 0)
  std::string sni(); // the server name the client sent, empty if none

private:
  boost::asio::ip::tcp::socket& socket();
  boost::asio::any_io_executor m_ex;
  std::optional<boost::asio::ip::tcp::socket> m_plain;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> m_tls;
  boost::beast::flat_buffer m_buffer;
};

class TestServer
{
public:
  using Handler = std::function<boost::asio::awaitable<void>(std::shared_ptr<ServerConnection>)>;

  // Listens on 127.0.0.1, port chosen by the kernel; TLS when `tls` is given.
  TestServer(boost::asio::any_io_executor ex, Handler handler,
             std::optional<CertKey> tls = std::nullopt);
  ~TestServer();

  std::uint16_t port() const { return m_port; }
  // "<scheme>://<host>:<port><path>"
  std::string url(std::string_view path, std::string_view host = "127.0.0.1") const;
  int connections() const { return *m_connections; }

private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::any_io_executor m_ex;
  Handler m_handler;
  std::unique_ptr<boost::asio::ssl::context> m_tls;
  boost::asio::ip::tcp::acceptor m_acceptor;
  std::uint16_t m_port = 0;
  std::shared_ptr<int> m_connections = std::make_shared<int>(0);
};

// A port on 127.0.0.1 with nothing listening (connect is refused).
std::uint16_t closed_port();

// Runs `body` on `ctx` until it finishes (or `limit` passes: the test fails), then stops the
// loop so that servers and clients declared before the call are destroyed with no handler
// running. Rethrows the body's exception.
void run(boost::asio::io_context& ctx, const std::function<boost::asio::awaitable<void>()>& body,
         std::chrono::seconds limit = std::chrono::seconds(15));

// "HTTP/1.1 <status> X\r\n" + headers + "\r\n" + body, with Content-Length.
std::string raw_response(int status, std::string_view body,
                         std::vector<std::pair<std::string, std::string>> headers = {});

} // namespace klingd::test_http
