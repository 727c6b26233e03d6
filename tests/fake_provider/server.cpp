#include "tests/fake_provider/server.hpp"

#include "tests/fake_provider/app.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <memory>
#include <vector>

namespace fake {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t k_chunk = 64 * 1024;

std::chrono::steady_clock::duration seconds(double s)
{
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

void abort_connection(beast::tcp_stream& lowest)
{
  boost::system::error_code ec;
  // Linger 0 makes close() send RST: the client sees "connection reset", not a clean EOF.
  lowest.socket().set_option(asio::socket_base::linger(true, 0), ec);
  lowest.socket().close(ec);
}

void close_connection(beast::tcp_stream& lowest)
{
  boost::system::error_code ec;
  lowest.socket().shutdown(tcp::socket::shutdown_both, ec);
  lowest.socket().close(ec);
}

// Writes the header, then the body produced from the layout in chunks. Returns false when
// the connection must not be reused (cut short or a write failed).
template <class Stream>
asio::awaitable<bool> send_video(Stream& stream, beast::tcp_stream& lowest, App& app, Reply& reply)
{
  const double io_timeout = app.config().io_timeout_s;
  http::response_serializer<http::string_body> serializer{reply.response};
  lowest.expires_after(seconds(io_timeout));
  auto [ec, n] = co_await http::async_write_header(stream, serializer, k_tuple);
  if (ec) {
    co_return false;
  }
  const VideoStream& video = *reply.video;
  if (video.head_only) {
    co_return true;
  }
  std::uint64_t limit = video.end - video.begin;
  const bool cut = video.cut_after.has_value();
  if (cut) {
    limit = std::min(limit, *video.cut_after);
  }
  std::vector<char> buffer(k_chunk);
  for (std::uint64_t sent = 0; sent < limit;) {
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(k_chunk, limit - sent));
    video.layout->read(video.begin + sent, buffer.data(), take);
    lowest.expires_after(seconds(io_timeout));
    auto [wec, written] = co_await asio::async_write(stream, asio::buffer(buffer.data(), take), k_tuple);
    app.on_video_bytes(written);
    if (wec) {
      co_return false;
    }
    sent += written;
  }
  if (cut) {
    close_connection(lowest);
    co_return false;
  }
  app.on_video_complete();
  co_return true;
}

template <class Stream>
asio::awaitable<void> serve(Stream& stream, beast::tcp_stream& lowest, App& app)
{
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(app.config().max_body_bytes);
    lowest.expires_after(seconds(app.config().idle_timeout_s));
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, k_tuple);
    if (ec) {
      co_return; // end of stream, idle timeout or garbage: just drop the connection
    }
    lowest.expires_after(seconds(app.config().io_timeout_s));
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      auto [cec, cn] = co_await http::async_write(stream, go_on, k_tuple);
      if (cec) {
        co_return;
      }
    }
    auto [bec, bn] = co_await http::async_read(stream, buffer, parser, k_tuple);
    if (bec == http::error::body_limit) {
      http::response<http::string_body> too_big{http::status::payload_too_large, 11};
      too_big.set(http::field::content_type, "application/json");
      too_big.body() = R"({"message":"Request body too large","statusCode":413})";
      too_big.keep_alive(false);
      too_big.prepare_payload();
      co_await http::async_write(stream, too_big, k_tuple);
      co_return;
    }
    if (bec) {
      co_return;
    }
    Request request = parser.release();
    const bool keep_alive = request.keep_alive();
    const bool is_head = request.method() == http::verb::head;

    Reply reply = co_await app.handle(std::move(request));
    if (reply.delay_s > 0) {
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_after(seconds(reply.delay_s));
      co_await timer.async_wait(k_tuple);
    }
    if (reply.reset) {
      abort_connection(lowest);
      co_return;
    }
    reply.response.version(11);
    reply.response.keep_alive(keep_alive);
    if (reply.video) {
      if (!co_await send_video(stream, lowest, app, reply)) {
        co_return;
      }
    } else {
      reply.response.prepare_payload();
      if (is_head) {
        reply.response.body().clear();
      }
      lowest.expires_after(seconds(app.config().io_timeout_s));
      http::response_serializer<http::string_body> serializer{reply.response};
      auto [wec, wn] = is_head ? co_await http::async_write_header(stream, serializer, k_tuple)
                               : co_await http::async_write(stream, serializer, k_tuple);
      if (wec) {
        co_return;
      }
    }
    if (!keep_alive) {
      co_return;
    }
  }
}

// Keeps the connection gauge right however the coroutine ends.
struct ConnectionCount {
  explicit ConnectionCount(App& app) : m_app(app) { m_app.on_connection_open(); }
  ~ConnectionCount() { m_app.on_connection_close(); }
  ConnectionCount(const ConnectionCount&) = delete;
  ConnectionCount& operator=(const ConnectionCount&) = delete;
  App& m_app;
};

asio::awaitable<void> run_plain(tcp::socket socket, App& app)
{
  ConnectionCount count(app);
  beast::tcp_stream stream(std::move(socket));
  co_await serve(stream, stream, app);
  close_connection(stream);
}

asio::awaitable<void> run_tls(tcp::socket socket, App& app, std::shared_ptr<ssl::context> tls)
{
  ConnectionCount count(app);
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls);
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(seconds(app.config().io_timeout_s));
  auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, k_tuple);
  if (ec) {
    co_return;
  }
  co_await serve(stream, lowest, app);
  if (lowest.socket().is_open()) {
    lowest.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(k_tuple);
  }
  close_connection(lowest);
}

void log_exception(std::exception_ptr e)
{
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    fmt::print(stderr, "fake-aimlapi: connection error: {}\n", ex.what());
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor, App& app, std::shared_ptr<ssl::context> tls)
{
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(k_tuple);
    if (ec == asio::error::operation_aborted) {
      co_return;
    }
    if (ec) {
      // Out of descriptors and the like: back off briefly instead of spinning.
      asio::steady_timer timer(executor, std::chrono::milliseconds(50));
      co_await timer.async_wait(k_tuple);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (tls) {
      asio::co_spawn(executor, run_tls(std::move(socket), app, tls), log_exception);
    } else {
      asio::co_spawn(executor, run_plain(std::move(socket), app), log_exception);
    }
  }
}

} // namespace

std::uint16_t start_server(asio::io_context& ioc, App& app, const ServerOptions& options)
{
  std::shared_ptr<ssl::context> tls;
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    tls = std::make_shared<ssl::context>(ssl::context::tls_server);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3
                     | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls->use_certificate_chain_file(options.tls_cert);
    tls->use_private_key_file(options.tls_key, ssl::context::pem);
  }
  tcp::endpoint endpoint(asio::ip::make_address(options.host), options.port);
  tcp::acceptor acceptor(ioc);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  // A deep backlog: benchmarks open thousands of connections at once.
  acceptor.listen(65535);
  const std::uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(ioc, accept_loop(std::move(acceptor), app, tls), log_exception);
  return port;
}

} // namespace fake
