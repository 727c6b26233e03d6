// HttpClient against a scripted loopback server: pooling, stale-connection detection, TLS
// verification, deadlines and the not_sent / sent_no_answer classification.
#include "daemon/provider/http_client.hpp"
#include "tests/unit/http_test_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

// GCC 12 false positive on coroutine frames with a class-specific operator new/delete
// (GCC PR 109224, fixed in 13): awaitable lambdas here trip it at -O2.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

using namespace klingd;
using namespace klingd::provider;
using namespace klingd::test_http;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Built outside coroutine bodies: GCC 12 rejects braced lists of string literals there.
Headers hdr(std::string k, std::string v, std::string k2 = {}, std::string v2 = {})
{
  Headers out{{std::move(k), std::move(v)}};
  if (!k2.empty()) {
    out.emplace_back(std::move(k2), std::move(v2));
  }
  return out;
}

HttpRequest get(std::string url, std::chrono::milliseconds timeout = 5000ms)
{
  HttpRequest req;
  req.method = "GET";
  req.url = std::move(url);
  req.timeout = timeout;
  return req;
}

HttpRequest post(std::string url, std::string body)
{
  HttpRequest req;
  req.method = "POST";
  req.url = std::move(url);
  req.body = std::move(body);
  req.idempotent = false;
  req.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer sk-very-secret"}};
  req.timeout = 5000ms;
  return req;
}

asio::awaitable<void> pause(std::chrono::milliseconds d)
{
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// Answers every request on the connection with 200 and a JSON body naming the request.
TestServer::Handler keep_alive_json()
{
  return [](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    while (auto req = co_await c->read_request()) {
      co_await c->respond(200, R"({"target":")" + req->target + "\"}", hdr("Content-Type", "application/json"));
    }
  };
}

HttpClient::Options tls_options()
{
  HttpClient::Options opt;
  opt.ca_file = test_pki().ca_file.string();
  return opt;
}

} // namespace

TEST_CASE("HttpClient: JSON response, request shape, case-insensitive headers")
{
  asio::io_context ctx;
  std::optional<ServerRequest> seen;
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    seen = co_await c->read_request();
    co_await c->respond(201, R"({"id":"gen:1"})", hdr("Content-Type", "application/json", "X-Inference-Id", "gen:1"));
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(post(server.url("/v2/video/generations?x=1"), R"({"model":"m"})"));
    REQUIRE(res.ok());
    CHECK(res->status == 201);
    CHECK(res->body == R"({"id":"gen:1"})");
    CHECK(res->header("x-inference-id") == "gen:1");
    CHECK(res->header("CONTENT-TYPE") == "application/json");
    CHECK_FALSE(res->header("x-missing").has_value());
  });
  REQUIRE(seen.has_value());
  CHECK(seen->method == "POST");
  CHECK(seen->target == "/v2/video/generations?x=1");
  CHECK(seen->body == R"({"model":"m"})");
  CHECK(seen->header("Host") == fmt::format("127.0.0.1:{}", server.port()));
  CHECK(seen->header("Content-Length") == "13");
  CHECK(seen->header("Authorization") == "Bearer sk-very-secret");
}

TEST_CASE("HttpClient: a body that quotes the request's credential back gets it redacted")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    auto req = co_await c->read_request();
    auto auth = req->header("Authorization").value_or("");
    co_await c->respond(401, R"x({"message":"invalid key: )x" + auth + " (" + auth + R"x()"})x",
                        hdr("Content-Type", "application/json"));
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(post(server.url("/v2/video/generations"), "{}"));
    REQUIRE(res.ok());
    CHECK(res->status == 401);
    CHECK(res->body == R"x({"message":"invalid key: Bearer [redacted] (Bearer [redacted])"})x");
  });
}

TEST_CASE("HttpClient: keep-alive reuses one connection for 10 requests (http)")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), keep_alive_json());
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10; ++i) {
      auto res = co_await client.request(get(server.url(fmt::format("/poll/{}", i))));
      REQUIRE(res.ok());
      CHECK(res->body == fmt::format(R"({{"target":"/poll/{}"}})", i));
    }
  });
  CHECK(server.connections() == 1);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().requests == 10);
  CHECK(client.stats().reused == 9);
  CHECK(client.idle_connections() == 1);
}

TEST_CASE("HttpClient: https with the extra CA file, SNI, one handshake for 10 requests")
{
  asio::io_context ctx;
  std::vector<std::string> sni;
  TestServer server(
    ctx.get_executor(),
    [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
      sni.push_back(c->sni());
      while (co_await c->read_request()) {
        co_await c->respond(200, "{}");
      }
    },
    test_pki().localhost);
  HttpClient client(ctx.get_executor(), tls_options());
  run(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10; ++i) {
      auto res = co_await client.request(get(server.url("/", "localhost")));
      REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().message));
      CHECK(res->status == 200);
    }
    // An IP literal is verified against the certificate's IP SAN (and sends no SNI).
    auto by_ip = co_await client.request(get(server.url("/", "127.0.0.1")));
    CHECK_MESSAGE(by_ip.ok(), (by_ip.ok() ? "" : by_ip.error().message));
  });
  REQUIRE(sni.size() == 2);
  CHECK(sni[0] == "localhost");
  CHECK(sni[1] == "");
  CHECK(server.connections() == 2);
  CHECK(client.stats().tls_handshakes == 2);
  CHECK(client.stats().reused == 9);
}

TEST_CASE("HttpClient: a connection the server closed while idle is not reused for a POST")
{
  asio::io_context ctx;
  int posts_seen = 0;
  // Answers one request while claiming keep-alive, then closes (a server idle timeout).
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    if (auto req = co_await c->read_request()) {
      posts_seen += req->method == "POST";
      co_await c->respond(200, "{}");
      c->close();
    }
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    REQUIRE((co_await client.request(get(server.url("/a")))).ok());
    CHECK(client.idle_connections() == 1);
    co_await pause(100ms); // let the FIN arrive
    auto res = co_await client.request(post(server.url("/create"), "{}"));
    REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().message));
    CHECK(res->status == 200);
  });
  CHECK(posts_seen == 1);
  CHECK(client.stats().connections_opened == 2);
  CHECK(client.stats().reused == 0);
}

TEST_CASE("HttpClient: idle connections older than idle_max are not reused")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), keep_alive_json());
  HttpClient::Options opt;
  opt.idle_max = 0s;
  HttpClient client(ctx.get_executor(), opt);
  run(ctx, [&]() -> asio::awaitable<void> {
    REQUIRE((co_await client.request(get(server.url("/a")))).ok());
    co_await pause(20ms);
    REQUIRE((co_await client.request(get(server.url("/b")))).ok());
  });
  CHECK(client.stats().connections_opened == 2);
  CHECK(server.connections() == 2);
}

TEST_CASE("HttpClient: max_idle_per_host caps the pool")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), [](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    while (co_await c->read_request()) {
      co_await c->sleep(50ms); // keeps the three requests overlapping
      co_await c->respond(200, "{}");
    }
  });
  HttpClient::Options opt;
  opt.max_idle_per_host = 2;
  HttpClient client(ctx.get_executor(), opt);
  run(ctx, [&]() -> asio::awaitable<void> {
    int finished = 0;
    auto one = [&]() -> asio::awaitable<void> {
      CHECK((co_await client.request(get(server.url("/")))).ok());
      ++finished;
    };
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 3; ++i) {
      asio::co_spawn(ex, one(), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    }
    while (finished < 3) {
      co_await pause(10ms);
    }
  });
  CHECK(server.connections() == 3);
  CHECK(client.idle_connections() == 2);
}

TEST_CASE("HttpClient: a GET that dies on a reused connection is retried once on a fresh one; a POST is not")
{
  asio::io_context ctx;
  // First connection answers its first request, then resets on the second one after reading
  // it (the server died mid-request). Later connections answer normally.
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    const bool first = server.connections() == 1;
    for (int n = 0; auto req = co_await c->read_request(); ++n) {
      if (first && n == 1) {
        c->reset();
        co_return;
      }
      co_await c->respond(200, req->method);
    }
  });
  SUBCASE("GET retried")
  {
    HttpClient client(ctx.get_executor(), {});
    run(ctx, [&]() -> asio::awaitable<void> {
      REQUIRE((co_await client.request(get(server.url("/")))).ok());
      auto res = co_await client.request(get(server.url("/")));
      REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().message));
      CHECK(res->body == "GET");
    });
    CHECK(client.stats().connections_opened == 2);
    CHECK(client.stats().requests == 3);
  }
  SUBCASE("POST reported sent_no_answer")
  {
    HttpClient client(ctx.get_executor(), {});
    run(ctx, [&]() -> asio::awaitable<void> {
      REQUIRE((co_await client.request(get(server.url("/")))).ok());
      auto res = co_await client.request(post(server.url("/"), "{}"));
      REQUIRE_FALSE(res.ok());
      CHECK(res.error().kind == TransportFailure::sent_no_answer);
    });
    CHECK(client.stats().connections_opened == 1);
  }
}

TEST_CASE("HttpClient: certificate from an unknown CA is rejected as not_sent")
{
  asio::io_context ctx;
  int requests_read = 0;
  TestServer server(
    ctx.get_executor(),
    [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
      requests_read += (co_await c->read_request()).has_value();
    },
    test_pki().unknown_ca);
  HttpClient client(ctx.get_executor(), tls_options());
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(post(server.url("/", "localhost"), "{}"));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::not_sent);
    CHECK(res.error().message.find("TLS handshake") != std::string::npos);
  });
  CHECK(requests_read == 0);
  CHECK(client.stats().tls_handshakes == 0);
}

TEST_CASE("HttpClient: certificate for another host name is rejected as not_sent")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), keep_alive_json(), test_pki().wrong_host);
  HttpClient client(ctx.get_executor(), tls_options());
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(get(server.url("/", "localhost")));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::not_sent);
  });
  CHECK(client.stats().tls_handshakes == 0);
}

TEST_CASE("HttpClient: without the CA file the test CA is not trusted")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), keep_alive_json(), test_pki().localhost);
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(get(server.url("/", "localhost")));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::not_sent);
  });
}

TEST_CASE("HttpClient: no answer within the timeout is sent_no_answer")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), [](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    if (co_await c->read_request()) {
      co_await c->sleep(3s);
    }
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    auto req = post(server.url("/"), "{}");
    req.timeout = 200ms;
    const auto start = std::chrono::steady_clock::now();
    auto res = co_await client.request(req);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::sent_no_answer);
    CHECK(elapsed >= 190ms);
    CHECK(elapsed < 1500ms);
  });
  CHECK(client.idle_connections() == 0);
}

TEST_CASE("HttpClient: reset after reading the request is sent_no_answer; secrets stay out of the message")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), [](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    if (co_await c->read_request()) {
      c->reset();
    }
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(post(server.url("/create?ksSecret=abc"), "{}"));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::sent_no_answer);
    CHECK(res.error().message.find("sk-very-secret") == std::string::npos);
    CHECK(res.error().message.find("ksSecret") == std::string::npos);
  });
  CHECK(client.stats().connections_opened == 1);
}

TEST_CASE("HttpClient: connect refused and unsupported schemes are not_sent")
{
  asio::io_context ctx;
  HttpClient client(ctx.get_executor(), {});
  const auto port = closed_port();
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(post(fmt::format("http://127.0.0.1:{}/", port), "{}"));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::not_sent);
    auto ftp = co_await client.request(get("ftp://127.0.0.1/x"));
    REQUIRE_FALSE(ftp.ok());
    CHECK(ftp.error().kind == TransportFailure::not_sent);
    auto injected = get(fmt::format("http://127.0.0.1:{}/", port));
    injected.headers.emplace_back("X-Client-Request-Id", "a\r\nX-Evil: 1");
    auto bad = co_await client.request(injected);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind == TransportFailure::not_sent);
  });
  CHECK(client.stats().connections_opened == 0);
}

TEST_CASE("HttpClient: an endless body is body_too_large")
{
  asio::io_context ctx;
  std::size_t written = 0;
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    if (!co_await c->read_request()) {
      co_return;
    }
    // Neither Content-Length nor chunked: the body runs until the server closes.
    if (!co_await c->write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")) {
      co_return;
    }
    const std::string piece(16 * 1024, 'x');
    while (co_await c->write(piece)) {
      written += piece.size();
    }
  });
  HttpClient::Options opt;
  opt.max_response_bytes = 256 * 1024;
  HttpClient client(ctx.get_executor(), opt);
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(get(server.url("/")));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::body_too_large);
  });
  CHECK(written >= 256 * 1024);
  CHECK(client.idle_connections() == 0);
}

TEST_CASE("HttpClient: oversized or malformed heads are bad_response")
{
  asio::io_context ctx;
  std::string reply;
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    if (co_await c->read_request()) {
      co_await c->write(reply);
      c->close();
    }
  });
  HttpClient client(ctx.get_executor(), {});
  SUBCASE("huge header")
  {
    reply = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(100 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n";
  }
  SUBCASE("not HTTP")
  {
    reply = "SSH-2.0-OpenSSH\r\n\r\n";
  }
  run(ctx, [&]() -> asio::awaitable<void> {
    auto res = co_await client.request(get(server.url("/")));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::bad_response);
  });
}

TEST_CASE("HttpClient: stream() hands the body over in pieces and reuses the connection")
{
  asio::io_context ctx;
  const std::string body(300 * 1024, 'v');
  TestServer server(ctx.get_executor(), [&](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    while (co_await c->read_request()) {
      co_await c->respond(200, body, hdr("Content-Type", "video/mp4"));
    }
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 2; ++i) {
      std::size_t total = 0;
      std::size_t largest = 0;
      int heads = 0;
      auto res = co_await client.stream(
        get(server.url("/v.mp4")),
        [&](const HttpResponse& head) {
          ++heads;
          CHECK(head.status == 200);
          CHECK(head.header("content-type") == "video/mp4");
          return true;
        },
        [&](std::string_view piece) -> Result<Ok> {
          total += piece.size();
          largest = std::max(largest, piece.size());
          return Ok{};
        });
      REQUIRE(res.ok());
      CHECK(res->body.empty());
      CHECK(heads == 1);
      CHECK(total == body.size());
      CHECK(largest <= 64 * 1024);
    }
    // A caller error stops the transfer.
    auto stopped = co_await client.stream(
      get(server.url("/v.mp4")), [](const HttpResponse&) { return true; },
      [](std::string_view) -> Result<Ok> { return make_error("disk_full", "no space"); });
    REQUIRE_FALSE(stopped.ok());
    CHECK(stopped.error().kind == TransportFailure::aborted_by_caller);
    CHECK(stopped.error().message == "no space");
  });
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().reused == 2);
  // The aborted transfer left its connection mid-body: it must not go back to the pool.
  CHECK(client.idle_connections() == 0);
}

TEST_CASE("HttpClient: close_all aborts an exchange in flight and empties the pool")
{
  asio::io_context ctx;
  TestServer server(ctx.get_executor(), [](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
    while (auto req = co_await c->read_request()) {
      if (req->target == "/slow") {
        co_await c->sleep(3s);
      }
      co_await c->respond(200, "{}");
    }
  });
  HttpClient client(ctx.get_executor(), {});
  run(ctx, [&]() -> asio::awaitable<void> {
    REQUIRE((co_await client.request(get(server.url("/")))).ok());
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer later(ex, 100ms);
    later.async_wait([&](auto) { client.close_all(); });
    const auto start = std::chrono::steady_clock::now();
    auto res = co_await client.request(get(server.url("/slow")));
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == TransportFailure::sent_no_answer);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    CHECK(client.idle_connections() == 0);
  });
  // Aborted on a reused connection, yet not retried: close_all means stop.
  CHECK(client.stats().connections_opened == 1);
}
