// HttpClient implementation: Beast over tcp_stream (plain) or ssl::stream<tcp_stream>,
// deadlines through tcp_stream's expiry, one idle pool keyed by scheme://host:port.
#include "daemon/provider/http_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_set>

#include <sys/socket.h>

namespace klingd::provider {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto k_use_tuple = asio::as_tuple(asio::use_awaitable);
// Body pieces handed to on_chunk; bounds a stream's memory whatever the file size.
constexpr std::size_t k_stream_chunk = 64 * 1024;

bool iequals(std::string_view a, std::string_view b)
{
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

bool has_crlf(std::string_view s)
{
  return s.find_first_of("\r\n") != std::string_view::npos;
}

// A server may quote the request's credential back ("invalid key sk-…"); response bodies
// end up in job errors, logs and the database, where the API key must never be (docs/contract.md §4.3).
void redact_credentials(const std::vector<std::pair<std::string, std::string>>& headers, std::string& body)
{
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "Authorization")) {
      continue;
    }
    std::string_view secret = value;
    if (auto space = secret.find(' '); space != std::string_view::npos) {
      secret.remove_prefix(space + 1); // "Bearer <key>": the scheme is no secret
    }
    if (secret.size() < 8) {
      continue; // too short to tell from ordinary text
    }
    constexpr std::string_view k_mask = "[redacted]";
    for (auto pos = body.find(secret); pos != std::string::npos; pos = body.find(secret, pos + k_mask.size())) {
      body.replace(pos, secret.size(), k_mask);
    }
  }
}

TransportError failure(TransportFailure kind, std::string message)
{
  return TransportError{kind, std::move(message)};
}

struct Target
{
  bool tls = false;
  std::string host; // without IPv6 brackets: for resolve, SNI and verification
  std::string port;
  std::string target;      // path and query
  std::string host_header; // as written in the URL (brackets, non-default port)
  std::string pool_key;
};

Result<Target, TransportError> parse_target(std::string_view url)
{
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return failure(TransportFailure::not_sent, "invalid URL");
  }
  const auto& u = *parsed;
  Target t;
  if (u.scheme_id() == boost::urls::scheme::https) {
    t.tls = true;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    return failure(TransportFailure::not_sent,
                   fmt::format("unsupported URL scheme '{}'", std::string_view(u.scheme())));
  }
  t.host = u.host_address();
  if (t.host.empty()) {
    return failure(TransportFailure::not_sent, "URL has no host");
  }
  t.port = u.has_port() ? std::string(u.port()) : std::string(t.tls ? "443" : "80");
  t.target = std::string(u.encoded_target());
  if (t.target.empty() || t.target.front() != '/') {
    t.target.insert(0, "/");
  }
  t.host_header = std::string(u.encoded_host_and_port());
  t.pool_key = fmt::format("{}://{}:{}", t.tls ? "https" : "http", t.host, t.port);
  return t;
}

// Names the endpoint in messages; never the path or query (signed URLs carry secrets).
std::string where(const Target& t)
{
  return fmt::format("{}:{}", t.host, t.port);
}

bool is_parse_error(const beast::error_code& ec)
{
  return ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_buffer;
}

struct Connection
{
  explicit Connection(std::string key) : pool_key(std::move(key)) {}

  std::string pool_key;
  std::optional<beast::tcp_stream> plain;
  std::optional<ssl::stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  Clock::time_point idle_since{};
  bool aborted = false; // close_all() killed it mid-exchange

  beast::tcp_stream& lowest() { return secure ? secure->next_layer() : *plain; }

  // A pooled connection may have been closed by the server while idle. Writing a create
  // onto it would make the outcome ambiguous, so look before reuse: EOF or any unsolicited
  // byte (a 408, a TLS close_notify) means the server is done with it.
  bool peer_still_open()
  {
    auto& sock = lowest().socket();
    if (!sock.is_open() || buffer.size() != 0) {
      return false;
    }
    char byte;
    const auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void close()
  {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close();
  }
};

// What one exchange on one connection produced, plus what the retry rule needs to know.
struct Exchange
{
  Result<HttpResponse, TransportError> result = failure(TransportFailure::not_sent, "");
  bool response_started = false; // a response byte arrived: never retry
  bool reusable = false;         // may go back into the idle pool
};

http::request<http::string_body> build_message(const HttpRequest& req, const Target& t,
                                               const std::string& user_agent)
{
  http::request<http::string_body> msg;
  msg.version(11);
  const auto verb = http::string_to_verb(req.method);
  if (verb == http::verb::unknown) {
    msg.method_string(req.method);
  } else {
    msg.method(verb);
  }
  msg.target(t.target);
  for (const auto& [name, value] : req.headers) {
    msg.insert(name, value);
  }
  if (msg.find(http::field::host) == msg.end()) {
    msg.set(http::field::host, t.host_header);
  }
  if (msg.find(http::field::user_agent) == msg.end()) {
    msg.set(http::field::user_agent, user_agent);
  }
  msg.body() = req.body;
  msg.prepare_payload();
  return msg;
}

template <class Fields>
HttpResponse copy_head(int status, const Fields& fields)
{
  HttpResponse out;
  out.status = status;
  for (const auto& f : fields) {
    out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  return out;
}

} // namespace

std::string_view to_string(TransportFailure kind)
{
  switch (kind) {
  case TransportFailure::not_sent: return "not_sent";
  case TransportFailure::sent_no_answer: return "sent_no_answer";
  case TransportFailure::bad_response: return "bad_response";
  case TransportFailure::body_too_large: return "body_too_large";
  case TransportFailure::aborted_by_caller: return "aborted_by_caller";
  }
  return "unknown";
}

std::optional<std::string> HttpResponse::header(std::string_view name) const
{
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) {
      return value;
    }
  }
  return std::nullopt;
}

struct HttpClient::Impl
{
  using Streaming = HttpClient::BodySink;

  Impl(asio::any_io_executor e, Options o) : ex(std::move(e)), opt(std::move(o))
  {
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    ctx.set_default_verify_paths();
    if (!opt.ca_file.empty()) {
      beast::error_code ec;
      ctx.load_verify_file(opt.ca_file, ec);
      if (ec) {
        throw std::runtime_error(
          fmt::format("cannot load CA file {}: {}", opt.ca_file, ec.message()));
      }
    }
    ctx.set_verify_mode(ssl::verify_peer);
  }

  asio::any_io_executor ex;
  Options opt;
  ssl::context ctx{ssl::context::tls_client};
  Stats stats;
  std::map<std::string, std::deque<std::unique_ptr<Connection>>> idle; // back = newest
  std::size_t idle_count = 0;
  std::unordered_set<Connection*> active;

  // Keeps close_all() able to reach a connection while an exchange uses it.
  struct ActiveGuard
  {
    Impl* impl;
    Connection* conn;
    ActiveGuard(Impl* i, Connection* c) : impl(i), conn(c) { impl->active.insert(conn); }
    ~ActiveGuard() { impl->active.erase(conn); }
    ActiveGuard(const ActiveGuard&) = delete;
    ActiveGuard& operator=(const ActiveGuard&) = delete;
  };

  std::unique_ptr<Connection> take_idle(const std::string& key)
  {
    auto it = idle.find(key);
    if (it == idle.end()) {
      return nullptr;
    }
    auto& queue = it->second;
    const auto now = Clock::now();
    std::unique_ptr<Connection> found;
    // Newest first: the least likely to have hit the server's keep-alive timeout.
    while (!queue.empty() && !found) {
      auto conn = std::move(queue.back());
      queue.pop_back();
      --idle_count;
      if (now - conn->idle_since <= opt.idle_max && conn->peer_still_open()) {
        found = std::move(conn);
      }
    }
    if (queue.empty()) {
      idle.erase(it);
    }
    return found;
  }

  void put_idle(std::unique_ptr<Connection> conn)
  {
    if (opt.max_idle_per_host == 0 || opt.max_idle_total == 0) {
      return;
    }
    conn->idle_since = Clock::now();
    auto& queue = idle[conn->pool_key];
    queue.push_back(std::move(conn));
    ++idle_count;
    const auto now = Clock::now();
    while (!queue.empty() &&
           (queue.size() > opt.max_idle_per_host || now - queue.front()->idle_since > opt.idle_max)) {
      queue.pop_front();
      --idle_count;
    }
    while (idle_count > opt.max_idle_total) {
      auto oldest = idle.end();
      for (auto it = idle.begin(); it != idle.end(); ++it) {
        if (!it->second.empty() &&
            (oldest == idle.end() || it->second.front()->idle_since < oldest->second.front()->idle_since)) {
          oldest = it;
        }
      }
      oldest->second.pop_front();
      --idle_count;
      if (oldest->second.empty()) {
        idle.erase(oldest);
      }
    }
  }

  asio::awaitable<Result<std::unique_ptr<Connection>, TransportError>>
  open(Target t, Clock::time_point deadline)
  {
    // The resolver has no expiry of its own; a timer cancels it. (A getaddrinfo already
    // running finishes first: the system resolver's own timeouts bound that.)
    // Shared with the timer's handler: an expiry queued just as the resolve completes may
    // run after this frame is gone.
    auto resolver = std::make_shared<tcp::resolver>(ex);
    asio::steady_timer timer(ex);
    timer.expires_at(deadline);
    timer.async_wait([resolver](beast::error_code ec) {
      if (!ec) {
        resolver->cancel();
      }
    });
    auto [rec, endpoints] = co_await resolver->async_resolve(t.host, t.port, k_use_tuple);
    const bool resolve_timed_out = Clock::now() >= deadline;
    timer.cancel();
    if (rec) {
      co_return failure(TransportFailure::not_sent,
                        fmt::format("resolve {} failed: {}", t.host,
                                    resolve_timed_out ? "timeout" : rec.message()));
    }

    auto conn = std::make_unique<Connection>(t.pool_key);
    if (t.tls) {
      conn->secure.emplace(ex, ctx);
    } else {
      conn->plain.emplace(ex);
    }
    conn->lowest().expires_at(deadline);
    auto [cec, endpoint] = co_await conn->lowest().async_connect(endpoints, k_use_tuple);
    if (cec) {
      co_return failure(TransportFailure::not_sent,
                        fmt::format("connect to {} failed: {}", where(t), cec.message()));
    }
    ++stats.connections_opened;
    if (!t.tls) {
      co_return std::move(conn);
    }

    auto* native = conn->secure->native_handle();
    beast::error_code addr_ec;
    asio::ip::make_address(t.host, addr_ec);
    // SNI carries host names only (RFC 6066); IP literals are verified against IP SANs.
    if (addr_ec && !SSL_set_tlsext_host_name(native, t.host.c_str())) {
      co_return failure(TransportFailure::not_sent, fmt::format("TLS SNI setup failed for {}", where(t)));
    }
    conn->secure->set_verify_callback(ssl::host_name_verification(t.host));
    conn->lowest().expires_at(deadline);
    auto [hec] = co_await conn->secure->async_handshake(ssl::stream_base::client, k_use_tuple);
    if (hec) {
      const long verify = SSL_get_verify_result(native);
      std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : hec.message();
      if (verify == X509_V_OK && hec.category() == asio::error::get_ssl_category()) {
        why += " (certificate rejected: host name mismatch?)";
      }
      co_return failure(TransportFailure::not_sent,
                        fmt::format("TLS handshake with {} failed: {}", where(t), why));
    }
    ++stats.tls_handshakes;
    co_return std::move(conn);
  }

  // Maps an I/O error after the request started to its classification.
  static TransportError read_failure(const beast::error_code& ec, const Target& t, bool timed_out)
  {
    if (ec == http::error::header_limit) {
      return failure(TransportFailure::bad_response,
                     fmt::format("response head from {} too large", where(t)));
    }
    if (ec == http::error::body_limit) {
      return failure(TransportFailure::body_too_large,
                     fmt::format("response body from {} too large", where(t)));
    }
    if (is_parse_error(ec)) {
      return failure(TransportFailure::bad_response,
                     fmt::format("malformed response from {}: {}", where(t), ec.message()));
    }
    if (ec == http::error::partial_message) {
      return failure(TransportFailure::sent_no_answer,
                     fmt::format("response from {} truncated", where(t)));
    }
    return failure(TransportFailure::sent_no_answer,
                   fmt::format("no complete response from {}: {}", where(t),
                               timed_out ? "timeout" : ec.message()));
  }

  // One exchange on one connection. References stay valid: the caller's frame is
  // suspended on this call for its whole life.
  template <class Stream>
  asio::awaitable<Exchange> exchange(Stream& stream, Connection& conn, const Target& t,
                                     const HttpRequest& req, Clock::time_point deadline,
                                     Streaming* streaming)
  {
    Exchange out;
    auto msg = build_message(req, t, opt.user_agent);
    ++stats.requests;
    conn.lowest().expires_at(deadline);
    auto [wec, written] = co_await http::async_write(stream, msg, k_use_tuple);
    if (wec) {
      // Over TLS a failed write may still have put a record on the wire: assume it did.
      const bool maybe_sent = conn.secure.has_value() || written > 0;
      out.result = failure(maybe_sent ? TransportFailure::sent_no_answer : TransportFailure::not_sent,
                           fmt::format("sending to {} failed: {}", where(t),
                                       wec == beast::error::timeout ? "timeout" : wec.message()));
      co_return out;
    }

    if (streaming) {
      co_return co_await read_streaming(stream, conn, t, req, deadline, *streaming);
    }

    http::response_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(opt.max_header_bytes));
    parser.body_limit(opt.max_response_bytes);
    if (msg.method() == http::verb::head) {
      parser.skip(true);
    }
    conn.lowest().expires_at(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, conn.buffer, parser, k_use_tuple);
    out.response_started = parser.got_some() || conn.buffer.size() > 0;
    if (!hec) {
      conn.lowest().expires_at(deadline);
      std::tie(hec, hn) = co_await http::async_read(stream, conn.buffer, parser, k_use_tuple);
    }
    if (hec) {
      out.result = read_failure(hec, t, hec == beast::error::timeout);
      co_return out;
    }
    auto& res = parser.get();
    HttpResponse response = copy_head(static_cast<int>(res.result_int()), res.base());
    response.body = std::move(res.body());
    out.reusable = res.keep_alive() && !parser.need_eof() && conn.buffer.size() == 0;
    out.result = std::move(response);
    co_return out;
  }

  template <class Stream>
  asio::awaitable<Exchange> read_streaming(Stream& stream, Connection& conn, const Target& t,
                                           const HttpRequest& req, Clock::time_point deadline,
                                           Streaming& streaming)
  {
    Exchange out;
    http::response_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(opt.max_header_bytes));
    parser.body_limit(boost::none); // the caller counts bytes as they come
    conn.lowest().expires_at(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, conn.buffer, parser, k_use_tuple);
    out.response_started = parser.got_some() || conn.buffer.size() > 0;
    if (hec) {
      out.result = read_failure(hec, t, hec == beast::error::timeout);
      co_return out;
    }
    const auto& head = parser.get();
    HttpResponse response = copy_head(static_cast<int>(head.result_int()), head.base());
    const bool keep_alive = head.keep_alive();
    if (!streaming.on_head(response)) {
      out.reusable = parser.is_done() && keep_alive && conn.buffer.size() == 0;
      out.result = std::move(response);
      co_return out;
    }

    // Holds the lent buffer; gives it back unfilled on any early exit.
    struct Lent
    {
      Streaming& sink;
      std::span<char> buf;
      std::size_t got = 0;
      ~Lent()
      {
        if (!buf.empty()) {
          sink.release(buf);
        }
      }
    };
    // Hands a buffer that got bytes to the sink; false (with out.result set) when the sink
    // refused it, which ends the transfer.
    auto hand_over = [&streaming, &out](Lent& lent) -> asio::awaitable<bool> {
      if (lent.got == 0) {
        co_return true; // nothing read: ~Lent gives it back
      }
      auto buf = std::exchange(lent.buf, {});
      auto accepted = co_await streaming.filled(buf, std::exchange(lent.got, 0));
      if (!accepted) {
        out.result = failure(TransportFailure::aborted_by_caller, accepted.error().message);
        co_return false;
      }
      co_return true;
    };

    const auto length = parser.content_length();
    if (length && !parser.chunked() && !parser.need_eof()) {
      // Fast path: the remaining body is exactly *length bytes. What read_header already
      // buffered is copied once; the rest is read from the stream straight into the lent
      // buffers — one composed read per buffer instead of one parser pass per TLS record.
      std::uint64_t left = *length;
      while (left > 0) {
        Lent lent{streaming, co_await streaming.acquire()};
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, lent.buf.size()));
        if (conn.buffer.size() > 0) {
          lent.got = asio::buffer_copy(asio::buffer(lent.buf.data(), want), conn.buffer.data());
          conn.buffer.consume(lent.got);
        }
        beast::error_code rec;
        if (lent.got < want) {
          // tcp_stream's expiry is one deadline for every read started after it is set: it
          // is renewed per k_stream_chunk received, as the parser path renews it per piece, so
          // a body slower than k_stream_chunk per req.timeout (a drip) still times out.
          conn.lowest().expires_after(req.timeout);
          const auto timeout = req.timeout;
          auto& lowest = conn.lowest();
          std::size_t renewed_at = 0;
          std::size_t rn = 0;
          std::tie(rec, rn) = co_await asio::async_read(
            stream, asio::buffer(lent.buf.data() + lent.got, want - lent.got),
            [&lowest, timeout, &renewed_at](const beast::error_code& ec, std::size_t n) -> std::size_t {
              if (ec) {
                return 0;
              }
              if (n - renewed_at >= k_stream_chunk) {
                lowest.expires_after(timeout);
                renewed_at = n;
              }
              return std::numeric_limits<std::size_t>::max();
            },
            k_use_tuple);
          lent.got += rn;
        }
        left -= lent.got;
        if (!co_await hand_over(lent)) {
          co_return out;
        }
        if (rec) {
          const bool truncated = rec == asio::error::eof || rec == asio::ssl::error::stream_truncated;
          out.result = truncated ? failure(TransportFailure::sent_no_answer,
                                           fmt::format("response from {} truncated", where(t)))
                                 : read_failure(rec, t, rec == beast::error::timeout);
          co_return out;
        }
      }
      out.reusable = keep_alive && conn.buffer.size() == 0;
      out.result = std::move(response);
      co_return out;
    }

    // Chunked or close-delimited: Beast's parser frames the body into the lent buffers.
    while (!parser.is_done()) {
      Lent lent{streaming, co_await streaming.acquire()};
      beast::error_code rec;
      while (!parser.is_done() && lent.got < lent.buf.size()) {
        parser.get().body().data = lent.buf.data() + lent.got;
        // At most k_stream_chunk per read, each with its own expiry: a big download may
        // legitimately take long, a stall may not.
        parser.get().body().size = std::min(k_stream_chunk, lent.buf.size() - lent.got);
        const std::size_t offered = parser.get().body().size;
        conn.lowest().expires_after(req.timeout);
        std::size_t rn = 0;
        std::tie(rec, rn) = co_await http::async_read(stream, conn.buffer, parser, k_use_tuple);
        if (rec == http::error::need_buffer) {
          rec = {};
        }
        lent.got += offered - parser.get().body().size;
        if (rec) {
          break;
        }
      }
      if (!co_await hand_over(lent)) {
        co_return out;
      }
      if (rec) {
        out.result = read_failure(rec, t, rec == beast::error::timeout);
        co_return out;
      }
    }
    out.reusable = keep_alive && !parser.need_eof() && conn.buffer.size() == 0;
    out.result = std::move(response);
    co_return out;
  }

  asio::awaitable<Result<HttpResponse, TransportError>> run(HttpRequest req, Streaming* streaming)
  {
    auto target = parse_target(req.url);
    if (!target) {
      co_return target.error();
    }
    for (const auto& [name, value] : req.headers) {
      if (name.empty() || has_crlf(name) || has_crlf(value)) {
        co_return failure(TransportFailure::not_sent, fmt::format("invalid header '{}'", name));
      }
    }
    const Target& t = *target;
    const auto deadline = Clock::now() + req.timeout;

    for (int attempt = 0;; ++attempt) {
      // A retry always opens a fresh connection: the pool just failed us once.
      auto conn = attempt == 0 ? take_idle(t.pool_key) : nullptr;
      const bool reused = conn != nullptr;
      if (reused) {
        ++stats.reused;
      } else {
        auto opened = co_await open(t, deadline);
        if (!opened) {
          co_return std::move(opened).error();
        }
        conn = std::move(opened).value();
      }

      Exchange out;
      {
        ActiveGuard guard(this, conn.get());
        // if/else, not ?: — GCC 12 miscompiles co_await inside a conditional expression.
        if (conn->secure) {
          out = co_await exchange(*conn->secure, *conn, t, req, deadline, streaming);
        } else {
          out = co_await exchange(*conn->plain, *conn, t, req, deadline, streaming);
        }
      }
      if (out.result) {
        if (out.reusable && !conn->aborted) {
          put_idle(std::move(conn));
        }
        co_return std::move(out.result);
      }
      // A server may close a pooled connection just as we write to it. Before any response
      // byte that is indistinguishable from a dead socket: retry once on a fresh connection
      // if repeating is harmless (idempotent, or provably nothing was sent).
      const auto kind = out.result.error().kind;
      const bool retry = attempt == 0 && reused && !out.response_started && !conn->aborted &&
                         Clock::now() < deadline &&
                         (kind == TransportFailure::not_sent ||
                          (kind == TransportFailure::sent_no_answer && req.idempotent));
      if (!retry) {
        co_return std::move(out.result);
      }
    }
  }
};

HttpClient::HttpClient(asio::any_io_executor ex, Options options)
  : m_impl(std::make_unique<Impl>(std::move(ex), std::move(options)))
{
}

HttpClient::~HttpClient() = default;

asio::awaitable<Result<HttpResponse, TransportError>> HttpClient::request(HttpRequest req)
{
  auto headers = req.headers;
  auto out = co_await m_impl->run(std::move(req), nullptr);
  if (out) {
    redact_credentials(headers, out->body);
  }
  co_return out;
}

asio::awaitable<Result<HttpResponse, TransportError>>
HttpClient::stream(HttpRequest req, std::function<bool(const HttpResponse&)> on_head,
                   std::function<Result<Ok>(std::string_view)> on_chunk)
{
  // The piece-by-piece interface over the buffer one: one k_stream_chunk buffer, handed to
  // on_chunk as soon as it holds anything.
  auto chunk = std::make_unique<char[]>(k_stream_chunk);
  BodySink sink;
  sink.on_head = std::move(on_head);
  sink.acquire = [&chunk]() -> asio::awaitable<std::span<char>> {
    co_return std::span<char>(chunk.get(), k_stream_chunk);
  };
  sink.filled = [&on_chunk](std::span<char> buf, std::size_t n) -> asio::awaitable<Result<Ok>> {
    co_return on_chunk(std::string_view(buf.data(), n));
  };
  sink.release = [](std::span<char>) {};
  co_return co_await m_impl->run(std::move(req), &sink);
}

asio::awaitable<Result<HttpResponse, TransportError>> HttpClient::stream(HttpRequest req, BodySink sink)
{
  co_return co_await m_impl->run(std::move(req), &sink);
}

const HttpClient::Stats& HttpClient::stats() const
{
  return m_impl->stats;
}

std::size_t HttpClient::idle_connections() const
{
  return m_impl->idle_count;
}

void HttpClient::close_all()
{
  m_impl->idle.clear();
  m_impl->idle_count = 0;
  for (auto* conn : m_impl->active) {
    conn->aborted = true;
    conn->close();
  }
}

} // namespace klingd::provider
