// Accepting connections, reading requests within limits and deadlines, writing
// responses and event streams. Modelled on Beast's http/server/awaitable example:
// one coroutine per connection, every read and write under a deadline.
#include "daemon/api/api_server.hpp"

#include "common/config.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/api/error.hpp"
#include "daemon/api/json_codec.hpp"
#include "daemon/api/router.hpp"
#include "daemon/api/submit_stream.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/notifier/notifier.hpp"
#include "daemon/store/job_store.hpp"
#include "daemon/store/sqlite.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <functional>
#include <list>

namespace klingd::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using Local = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;
// One session code, compiled once, for both listeners: the Unix socket and the dashboard's
// TCP port. An accepted socket is handed over as a generic stream socket (same descriptor),
// so the coroutine and Beast's read/write templates are instantiated for one stream type
// only (this file was the slowest of the build when it had one per protocol).
using Generic = asio::generic::stream_protocol;
using Stream = beast::basic_stream<Generic, asio::any_io_executor, beast::unlimited_rate_policy>;
using namespace std::chrono_literals;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);
// An idle keep-alive connection is closed after this long without a request.
constexpr auto k_idle_timeout = 60s;
// On the dashboard's TCP port, which every local user reaches: a connection that has not
// shown the token yet gets this long for its request's first byte.
constexpr auto k_unauthenticated_idle_timeout = 5s;
// After refusing a request early, what is drained before the connection closes (lingering close).
constexpr auto k_linger_time = 2s;
constexpr std::size_t k_linger_bytes = 64u << 20;
// Descriptors the listeners leave to the engine: the database (db, WAL, shm), the HTTPS
// pool (up to 256 idle + 32 creates + 64 polls), logs and the loop; plus per download its
// connection, .part and directories.
constexpr std::size_t k_fd_reserve = 512;
constexpr std::size_t k_fd_per_download = 4;
constexpr std::size_t k_min_cap = 8;
// A refused connection is logged at most this often (with how many since the last line).
constexpr auto k_refusal_log_interval = 10s;
// From a request's first byte to the end of its header (slow-loris guard).
constexpr auto k_header_timeout = 10s;
// For the body once the header is in; generous, bodies come over a local socket.
constexpr auto k_body_timeout = 60s;
constexpr auto k_write_timeout = 30s;
// Without events, an event stream checks that its client is still there this often.
constexpr auto k_stream_wait = 15s;
constexpr std::uint32_t k_header_limit = 16 * 1024;
constexpr std::size_t k_events_per_read = 500;

Peer peer_of(Tcp::socket&)
{
  return Peer{};
}

Peer peer_of(Local::socket& sock)
{
  Peer p;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.uid = static_cast<long>(cred.uid);
    p.pid = static_cast<long>(cred.pid);
  }
  return p;
}

std::string media_type(std::string_view content_type)
{
  auto semi = content_type.find(';');
  auto t = content_type.substr(0, semi);
  while (!t.empty() && t.back() == ' ') {
    t.remove_suffix(1);
  }
  std::string out(t);
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Builds our Request from Beast's; nullopt when the target is not a valid origin-form URL.
std::optional<Request> to_request(http::request<http::string_body>&& in, const Peer& peer, bool dashboard)
{
  auto url = boost::urls::parse_origin_form(in.target());
  if (!url) {
    return std::nullopt;
  }
  Request r;
  r.method = std::string(in.method_string());
  r.target = std::string(in.target());
  for (auto seg : url->segments()) {
    r.segments.push_back(std::string(seg));
  }
  for (auto param : url->params()) {
    r.query.emplace(std::string(param.key), std::string(param.value));
  }
  r.content_type = media_type(in[http::field::content_type]);
  if (dashboard) {
    // Only the dashboard's checks read header fields; the socket API needs none.
    for (const auto& f : in) {
      std::string name(f.name_string());
      for (auto& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      r.headers[name] = std::string(f.value());
    }
    r.dashboard = true;
  }
  r.body = std::move(in.body());
  r.peer = peer;
  return r;
}

// Fires after the deadline: cancels the socket's pending read (basic_stream's own
// expiry would close the socket, and then no 408 could be written).
template <typename Stream>
asio::awaitable<void> watchdog(asio::steady_timer* timer, Stream* stream, bool* timed_out)
{
  auto [ec] = co_await timer->async_wait(k_tuple);
  if (!ec) {
    *timed_out = true;
    boost::system::error_code ignored;
    stream->socket().cancel(ignored);
  }
}

// Runs a read with a deadline that leaves the socket open; beast::error::timeout when it passes.
template <typename Stream>
asio::awaitable<boost::system::error_code> read_within(Stream* stream, std::chrono::steady_clock::duration limit,
                                                      asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> op)
{
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(stream->get_executor(), limit);
  bool timed_out = false;
  stream->expires_never();
  auto r = co_await (std::move(op) || watchdog(&timer, stream, &timed_out));
  if (timed_out) {
    co_return beast::error::timeout;
  }
  if (r.index() == 0) {
    co_return std::get<0>(std::get<0>(r));
  }
  co_return asio::error::operation_aborted;
}

// POST /v1/jobs with an NDJSON body: read by SubmitStream as it arrives, not into a string.
bool is_streamed_submit(const http::request_header<>& h)
{
  if (h.method() != http::verb::post || !is_ndjson_type(media_type(h[http::field::content_type]))) {
    return false;
  }
  auto target = h.target();
  return target.substr(0, target.find('?')) == "/v1/jobs";
}

// Reads the body in pieces into `sink` (64 KiB at a time, whatever the body's framing), all
// of it within k_body_timeout.
template <typename Stream>
asio::awaitable<boost::system::error_code> read_streamed(Stream* stream, beast::flat_buffer* buffer,
                                                         http::request_parser<http::buffer_body>* parser,
                                                         SubmitStream* sink)
{
  std::vector<char> chunk(64 * 1024);
  const auto deadline = std::chrono::steady_clock::now() + k_body_timeout;
  while (!parser->is_done()) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      co_return beast::error::timeout;
    }
    parser->get().body().data = chunk.data();
    parser->get().body().size = chunk.size();
    auto ec = co_await read_within(stream, left, http::async_read_some(*stream, *buffer, *parser, k_tuple));
    sink->feed(std::string_view(chunk.data(), chunk.size() - parser->get().body().size));
    if (ec && ec != http::error::need_buffer) {
      co_return ec;
    }
  }
  sink->finish();
  co_return boost::system::error_code{};
}

std::size_t nofile_limit()
{
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
    return std::size_t{1} << 20;
  }
  return static_cast<std::size_t>(rl.rlim_cur);
}

} // namespace

ConnectionCaps connection_caps(std::size_t fd_limit, std::size_t socket_max, std::size_t dashboard_max,
                               int download_max_concurrent)
{
  ConnectionCaps c;
  c.fd_limit = fd_limit;
  c.reserve = k_fd_reserve + k_fd_per_download * static_cast<std::size_t>(std::max(download_max_concurrent, 0));
  c.socket = socket_max;
  c.dashboard = dashboard_max;
  const std::size_t budget = fd_limit > c.reserve ? fd_limit - c.reserve : 0;
  const std::size_t want = socket_max + dashboard_max;
  if (want > budget) {
    c.lowered = true;
    c.socket = std::max(k_min_cap, budget * socket_max / want);
    c.dashboard = dashboard_max == 0 ? 0 : std::max(k_min_cap, budget * dashboard_max / want);
  }
  c.unauthenticated = std::max<std::size_t>(1, c.dashboard / 4);
  return c;
}

class ApiServer::Impl : public std::enable_shared_from_this<Impl>
{
public:
  Impl(asio::any_io_executor ex, ApiContext ctx, Routes routes)
    : m_ex(ex), m_ctx(ctx), m_routes(std::move(routes)), m_acceptor(ex),
      m_caps(connection_caps(nofile_limit(), ctx.config.socket.max_connections,
                             ctx.config.dashboard.listen.empty() ? 0 : ctx.config.dashboard.max_connections,
                             ctx.config.download.max_concurrent))
  {
  }

  // One accepted connection; registered in its listener's list (oldest first) from accept
  // to the end of its session.
  struct Conn
  {
    std::function<void()> cancel; // set once the session runs
    bool dashboard = false;
    bool idle = true;          // waiting for a request's first byte
    bool reading = true;       // reading a request (idle, header or body)
    bool authenticated = false; // dashboard: a request carried the token or a video link
    bool evicted = false;       // pushed out for a newer connection
    std::list<Conn*>::iterator pos;
  };
  struct Listener
  {
    std::list<Conn*> conns;
    std::uint64_t refused = 0; // since the last log line
    std::chrono::steady_clock::time_point logged{};
  };

  // Whether `conn` may be pushed out for a newer connection: only while it waits for a
  // request, and on the dashboard also while an unauthenticated one reads it.
  static bool evictable(const Conn& c, bool unauthenticated_only)
  {
    if (c.evicted || !c.reading) {
      return false;
    }
    if (unauthenticated_only) {
      return !c.authenticated;
    }
    return c.idle || (c.dashboard && !c.authenticated);
  }
  // Makes room for one more connection on `l` (capped at `cap`, counting only what
  // `unauthenticated_only` selects); false when nothing could be pushed out.
  bool make_room(Listener& l, std::size_t cap, bool unauthenticated_only);
  // Registers a newly accepted connection, or returns nullptr when it is to be closed.
  std::shared_ptr<Conn> admit(bool dashboard);
  void unregister(Conn& conn);

  template <typename Acceptor>
  static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self, Acceptor* acceptor, bool dashboard);
  static asio::awaitable<void> session(std::shared_ptr<Impl> self, Generic::socket sock, Peer peer,
                                       std::shared_ptr<Conn> conn);
  template <typename Stream>
  static asio::awaitable<bool> write_response(Stream& stream, Response res, bool keep_alive, unsigned version,
                                              bool head);
  template <typename Stream>
  static asio::awaitable<bool> write_file(Stream& stream, Response res, bool keep_alive, unsigned version, bool head);
  template <typename Stream>
  static asio::awaitable<void> stream_events(std::shared_ptr<Impl> self, Stream& stream, std::int64_t after);

  asio::any_io_executor m_ex;
  ApiContext m_ctx;
  Routes m_routes;     // the socket's
  TcpListener m_tcp_listener; // set by listen_tcp
  Local::acceptor m_acceptor;
  Tcp::acceptor m_tcp_acceptor{m_ex};
  std::string m_path;
  bool m_stopping = false;
  ConnectionCaps m_caps;
  Listener m_local;
  Listener m_tcp;
};

bool ApiServer::Impl::make_room(Listener& l, std::size_t cap, bool unauthenticated_only)
{
  std::size_t count = 0;
  Conn* oldest = nullptr;
  for (auto* c : l.conns) {
    if (unauthenticated_only && c->authenticated) {
      continue;
    }
    ++count;
    if (!oldest && evictable(*c, unauthenticated_only)) {
      oldest = c;
    }
  }
  if (count < cap) {
    return true;
  }
  if (!oldest) {
    return false;
  }
  // Leaves the list now; its descriptor closes when its session sees the cancel.
  oldest->evicted = true;
  l.conns.erase(oldest->pos);
  if (oldest->cancel) {
    oldest->cancel();
  }
  return true;
}

std::shared_ptr<ApiServer::Impl::Conn> ApiServer::Impl::admit(bool dashboard)
{
  Listener& l = dashboard ? m_tcp : m_local;
  bool room = true;
  if (dashboard) {
    room = make_room(l, m_caps.unauthenticated, true);
  }
  room = room && make_room(l, dashboard ? m_caps.dashboard : m_caps.socket, false);
  if (!room) {
    ++l.refused;
    const auto now = std::chrono::steady_clock::now();
    if (now - l.logged >= k_refusal_log_interval) {
      log::warning(dashboard ? "dashboard.connections_refused" : "api.connections_refused",
                   {{"refused", l.refused}, {"open", l.conns.size()},
                    {"cap", dashboard ? m_caps.dashboard : m_caps.socket}});
      l.logged = now;
      l.refused = 0;
    }
    return nullptr;
  }
  auto conn = std::make_shared<Conn>();
  conn->dashboard = dashboard;
  conn->pos = l.conns.insert(l.conns.end(), conn.get());
  return conn;
}

void ApiServer::Impl::unregister(Conn& conn)
{
  if (!conn.evicted) {
    (conn.dashboard ? m_tcp : m_local).conns.erase(conn.pos);
    conn.evicted = true;
  }
}

template <typename Acceptor>
asio::awaitable<void> ApiServer::Impl::accept_loop(std::shared_ptr<Impl> self, Acceptor* acceptor, bool dashboard)
{
  while (!self->m_stopping) {
    auto [ec, sock] = co_await acceptor->async_accept(k_tuple);
    if (ec) {
      if (self->m_stopping || ec == asio::error::operation_aborted) {
        break;
      }
      // EMFILE and friends: back off briefly instead of spinning.
      log::warning("api.accept_failed", {{"error", ec.message()}});
      asio::steady_timer t(self->m_ex, 100ms);
      co_await t.async_wait(k_tuple);
      continue;
    }
    auto conn = self->admit(dashboard);
    if (!conn) {
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    const Peer peer = peer_of(sock);
    const auto protocol = sock.local_endpoint(ec).protocol();
    Generic::socket generic(self->m_ex);
    if (!ec) {
      generic.assign(Generic(protocol.family(), protocol.protocol()), sock.release(ec), ec);
    }
    if (ec) {
      log::warning("api.accept_failed", {{"error", ec.message()}});
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    asio::co_spawn(self->m_ex, session(self, std::move(generic), peer, std::move(conn)), [](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::error("api.session_failed", {{"error", ex.what()}});
        }
      }
    });
  }
}

namespace {

// The header fields every answer carries: status, Server, Content-Type, the handler's own
// fields, keep-alive.
template <typename Message>
void fill_head(Message& out, const Response& res, bool keep_alive, unsigned version)
{
  out.version(version);
  out.result(res.status);
  out.set(http::field::server, fmt::format("klingd/{}", klingd::version()));
  out.set(http::field::content_type, res.content_type);
  for (const auto& [name, value] : res.headers) {
    out.set(name, value);
  }
  out.keep_alive(keep_alive);
}

} // namespace

template <typename Stream>
asio::awaitable<bool> ApiServer::Impl::write_response(Stream& stream, Response res, bool keep_alive, unsigned version,
                                                     bool head)
{
  http::response<http::string_body> out;
  fill_head(out, res, keep_alive, version);
  if (!head) {
    out.body() = std::move(res.body);
  }
  out.prepare_payload();
  stream.expires_after(k_write_timeout);
  auto [ec, n] = co_await http::async_write(stream, out, k_tuple);
  co_return !ec;
}

template <typename Stream>
asio::awaitable<bool> ApiServer::Impl::write_file(Stream& stream, Response res, bool keep_alive, unsigned version,
                                                 bool head)
{
  // Opened before the header goes out, so a file gone since the handler looked is a 404.
  const auto& f = *res.file;
  int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    co_return co_await write_response(stream, error_response(ApiError::not_found, "the video is no longer on disk"),
                                      keep_alive, version, head);
  }
  struct Closer
  {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  http::response<http::empty_body> out;
  fill_head(out, res, keep_alive, version);
  out.content_length(f.length);
  http::response_serializer<http::empty_body> sr{out};
  stream.expires_after(k_write_timeout);
  auto [hec, hn] = co_await http::async_write_header(stream, sr, k_tuple);
  if (hec || head) {
    co_return !hec;
  }
  // Chunks of 256 KiB: pread on a local file is quick, and the loop serves others between them.
  std::vector<char> buf(256 * 1024);
  std::uint64_t pos = f.offset;
  std::uint64_t left = f.length;
  while (left > 0) {
    auto n = ::pread(fd, buf.data(), std::min<std::uint64_t>(left, buf.size()), static_cast<off_t>(pos));
    if (n <= 0) {
      // Truncated under us: the length promised cannot be kept, so end the connection.
      log::warning("dashboard.video_read_failed", {{"path", f.path}, {"error", n < 0 ? std::strerror(errno) : "eof"}});
      co_return false;
    }
    stream.expires_after(k_write_timeout);
    auto [ec, w] = co_await asio::async_write(stream, asio::buffer(buf.data(), static_cast<std::size_t>(n)), k_tuple);
    if (ec) {
      co_return false;
    }
    pos += static_cast<std::uint64_t>(n);
    left -= static_cast<std::uint64_t>(n);
  }
  co_return true;
}

template <typename Stream>
asio::awaitable<void> ApiServer::Impl::stream_events(std::shared_ptr<Impl> self, Stream& stream, std::int64_t after)
{
  using namespace asio::experimental::awaitable_operators;
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, fmt::format("klingd/{}", klingd::version()));
  res.set(http::field::content_type, "application/x-ndjson");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(false);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  stream.expires_after(k_write_timeout);
  auto [hec, hn] = co_await http::async_write_header(stream, sr, k_tuple);
  if (hec) {
    co_return;
  }
  std::int64_t last = after;
  while (!self->m_stopping) {
    // Each subscriber reads the committed log itself: no per-subscriber queue to overflow.
    auto events = self->m_ctx.store.events_since(last, k_events_per_read);
    if (!events.empty()) {
      std::string chunk;
      for (const auto& e : events) {
        chunk += json::serialize(event_to_json(e));
        chunk += '\n';
      }
      last = events.back().seq;
      stream.expires_after(k_write_timeout);
      auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(chunk)), k_tuple);
      if (ec) {
        co_return;
      }
      continue;
    }
    // Wait for the next commit, or notice the client leaving (EOF on our read).
    stream.expires_never();
    std::array<char, 1> byte{};
    auto which = co_await (self->m_ctx.events.wait(k_stream_wait) ||
                           stream.socket().async_read_some(asio::buffer(byte), k_tuple));
    if (which.index() == 1) {
      co_return; // the client closed (or sent data it should not have)
    }
  }
  stream.expires_after(k_write_timeout);
  co_await asio::async_write(stream, http::make_chunk_last(), k_tuple);
}

asio::awaitable<void> ApiServer::Impl::session(std::shared_ptr<Impl> self, Generic::socket sock, Peer peer,
                                               std::shared_ptr<Conn> conn_ptr)
{
  Conn& conn = *conn_ptr;
  const bool dashboard = conn.dashboard;
  Stream stream(std::move(sock));
  conn.cancel = [&stream] { stream.cancel(); };
  struct Unregister
  {
    Impl* impl;
    Conn* conn;
    ~Unregister()
    {
      conn->cancel = nullptr;
      impl->unregister(*conn);
    }
  } unregister{self.get(), &conn};

  const auto max_body = self->m_ctx.config.socket.max_body_bytes;
  beast::flat_buffer buffer;
  bool linger = false; // a refused request's body may still be on its way
  for (;;) {
    conn.reading = true;
    if (buffer.size() == 0) {
      // Idle between requests: a longer deadline, and stop() may cancel it.
      conn.idle = true;
      if (self->m_stopping || conn.evicted) {
        break;
      }
      if (dashboard && !conn.authenticated) {
        stream.expires_after(k_unauthenticated_idle_timeout);
      } else {
        stream.expires_after(k_idle_timeout);
      }
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), k_tuple);
      if (ec) {
        break;
      }
      buffer.commit(n);
    }
    conn.idle = false;
    const auto t0 = std::chrono::steady_clock::now();

    // Answers a request that could not be read, logs it, and ends the connection.
    auto refuse = [&](ApiError error, std::string message) -> asio::awaitable<void> {
      auto res = error_response(error, message);
      log::info("api.request_refused", {{"status", res.status}, {"code", to_string(error)}, {"message", message},
                                        {"uid", peer.uid}, {"pid", peer.pid}});
      co_await write_response(stream, std::move(res), false, 11, false);
      linger = true;
    };

    http::request_parser<http::string_body> parser;
    parser.header_limit(k_header_limit);
    parser.body_limit(max_body);
    auto hec = co_await read_within(&stream, k_header_timeout, http::async_read_header(stream, buffer, parser, k_tuple));
    if (hec) {
      if (hec == http::error::body_limit) {
        // Content-Length over body_limit is caught while parsing the header.
        co_await refuse(ApiError::payload_too_large,
                        fmt::format("request body is over the limit of {} bytes (socket.max_body_bytes)", max_body));
      } else if (hec == http::error::header_limit) {
        co_await refuse(ApiError::headers_too_large, fmt::format("request header larger than {} bytes", k_header_limit));
      } else if (hec == beast::error::timeout) {
        co_await refuse(ApiError::request_timeout, fmt::format("request header not received within {} s",
                                                               k_header_timeout.count()));
      } else if (hec != http::error::end_of_stream && hec != asio::error::eof &&
                 hec != asio::error::connection_reset && hec != asio::error::operation_aborted) {
        co_await refuse(ApiError::bad_request, fmt::format("malformed HTTP request: {}", hec.message()));
      }
      break;
    }
    if (auto len = parser.content_length(); len && *len > max_body) {
      co_await refuse(ApiError::payload_too_large,
                      fmt::format("request body of {} bytes is over the limit of {} bytes (socket.max_body_bytes)",
                                  *len, max_body));
      break;
    }
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
      stream.expires_after(k_write_timeout);
      auto [cec, cn] = co_await http::async_write(stream, cont, k_tuple);
      if (cec) {
        break;
      }
    }
    std::shared_ptr<SubmitStream> submit_stream;
    std::optional<http::request_parser<http::buffer_body>> streamed;
    boost::system::error_code bec;
    if (!dashboard && is_streamed_submit(parser.get())) {
      submit_stream = std::make_shared<SubmitStream>(self->m_ctx.catalog, self->m_ctx.config.allow_unknown_models);
      streamed.emplace(std::move(parser));
      streamed->body_limit(max_body);
      bec = co_await read_streamed(&stream, &buffer, &*streamed, submit_stream.get());
    } else {
      bec = co_await read_within(&stream, k_body_timeout, http::async_read(stream, buffer, parser, k_tuple));
    }
    if (bec) {
      if (bec == http::error::body_limit) {
        co_await refuse(ApiError::payload_too_large,
                        fmt::format("request body is over the limit of {} bytes (socket.max_body_bytes)", max_body));
      } else if (bec == beast::error::timeout) {
        co_await refuse(ApiError::request_timeout,
                        fmt::format("request body not received within {} s", k_body_timeout.count()));
      } else if (bec != http::error::end_of_stream && bec != asio::error::eof &&
                 bec != asio::error::connection_reset && bec != asio::error::operation_aborted) {
        co_await refuse(ApiError::bad_request, fmt::format("malformed HTTP request body: {}", bec.message()));
      }
      break;
    }

    conn.reading = false;
    http::request<http::string_body> in;
    if (streamed) {
      in = http::request<http::string_body>(std::move(streamed->release().base()));
    } else {
      in = parser.release();
    }
    const unsigned version = in.version();
    const bool head = in.method() == http::verb::head;
    bool keep_alive = in.keep_alive() && !head;
    std::string method(in.method_string());
    // The dashboard's first page load carries its token in the query: keep it out of logs.
    std::string target = dashboard ? self->m_tcp_listener.redact_target(in.target()) : std::string(in.target());
    Response res;
    std::string route = "unmatched";
    if (auto req = to_request(std::move(in), peer, dashboard); !req) {
      res = error_response(ApiError::bad_request, fmt::format("invalid request target \"{}\"", target));
    } else {
      req->submit_stream = std::move(submit_stream);
      if (dashboard && !conn.authenticated) {
        conn.authenticated = self->m_tcp_listener.has_credential(*req);
      }
      try {
        // Not `?:`: GCC 12 miscompiles co_await inside a conditional expression.
        Routed routed;
        if (dashboard) {
          routed = co_await self->m_tcp_listener.route(self->m_ctx, std::move(*req));
        } else {
          routed = co_await route_request(self->m_routes, self->m_ctx, std::move(*req));
        }
        res = std::move(routed.response);
        route = std::move(routed.route);
      } catch (const store::SqliteError& e) {
        log::error("api.handler_failed", {{"method", method}, {"path", target}, {"error", e.what()}, {"uid", peer.uid}});
        if (e.is_full()) {
          res = error_response(ApiError::storage_full,
                               fmt::format("the disk of the state directory is full: nothing was changed ({})", e.what()));
        } else {
          res = error_response(ApiError::internal, fmt::format("internal error: {}", e.what()));
        }
      } catch (const std::exception& e) {
        log::error("api.handler_failed", {{"method", method}, {"path", target}, {"error", e.what()}, {"uid", peer.uid}});
        res = error_response(ApiError::internal, fmt::format("internal error: {}", e.what()));
      }
    }
    if (self->m_stopping) {
      keep_alive = false;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log::info(dashboard ? "dashboard.request" : "api.request",
              {{"method", method}, {"path", target}, {"status", res.status}, {"uid", peer.uid}, {"pid", peer.pid},
               {"duration_ms", fmt::format("{:.1f}", seconds * 1000)}});
    self->m_ctx.metrics.request_latency(route).Observe(seconds);
    if (res.stream_events_after) {
      co_await stream_events(self, stream, *res.stream_events_after);
      break;
    }
    // Not `?:`: GCC 12 miscompiles co_await inside a conditional expression.
    bool written = false;
    if (res.file) {
      written = co_await write_file(stream, std::move(res), keep_alive, version, head);
    } else {
      written = co_await write_response(stream, std::move(res), keep_alive, version, head);
    }
    if (!written || !keep_alive) {
      break;
    }
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::socket_base::shutdown_send, ignored);
  if (linger) {
    // Lingering close: a client still sending the body of a request refused early (413, 400)
    // must not get EPIPE/ECONNRESET before it reads the answer. Read and drop what comes, for a
    // bounded time and amount, until the client closes its side.
    stream.expires_after(k_linger_time);
    std::size_t drained = 0;
    while (drained < k_linger_bytes) {
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(65536), k_tuple);
      if (ec) {
        break;
      }
      drained += n;
      buffer.consume(buffer.size());
    }
  }
  stream.socket().close(ignored);
}

ApiServer::ApiServer(asio::any_io_executor ex, ApiContext ctx, std::vector<Route> routes)
  : m_impl(std::make_shared<Impl>(ex, ctx, std::move(routes)))
{
}

ApiServer::~ApiServer()
{
  stop();
}

Result<Ok> ApiServer::listen(const std::string& socket_path, unsigned mode)
{
  namespace fs = std::filesystem;
  auto fail = [&](std::string why) { return make_error("socket", fmt::format("socket {}: {}", socket_path, why)); };
  fs::path path(socket_path);
  if (path.empty()) {
    return fail("no path configured (socket.path)");
  }
  std::error_code fec;
  if (auto parent = path.parent_path(); !parent.empty() && !fs::exists(parent, fec)) {
    fs::create_directories(parent, fec);
    if (fec) {
      return fail(fmt::format("cannot create directory {}: {}", parent.string(), fec.message()));
    }
    // Only the service user and its group may enter (issue 6: socket security).
    ::chmod(parent.c_str(), 0750);
  }
  boost::system::error_code ec;
  Local::endpoint endpoint;
  try {
    endpoint = Local::endpoint(socket_path);
  } catch (const std::exception& e) {
    return fail(fmt::format("unusable path: {}", e.what()));
  }
  struct stat st{};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail("exists and is not a socket; refusing to replace it");
    }
    Local::socket probe(m_impl->m_ex);
    probe.connect(endpoint, ec);
    if (!ec) {
      return fail("another process (a running klingd?) answers on it; stop it first or set another socket.path");
    }
    // Nobody listens: a stale file from a crash.
    if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return fail(fmt::format("cannot remove the stale socket file: {}", std::strerror(errno)));
    }
    log::info("api.stale_socket_removed", {{"path", socket_path}});
  }
  auto& acc = m_impl->m_acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) {
    // The file is created owner-only (whatever the process umask) and given socket.mode
    // before listen(): no moment in which others could connect.
    const mode_t old_umask = ::umask(0177);
    acc.bind(endpoint, ec);
    ::umask(old_umask);
  }
  if (!ec && ::chmod(socket_path.c_str(), static_cast<mode_t>(mode)) != 0) {
    auto err = std::strerror(errno);
    acc.close(ec);
    ::unlink(socket_path.c_str());
    return fail(fmt::format("chmod {:o}: {}", mode, err));
  }
  if (!ec) {
    acc.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    acc.close(ec);
    return fail(ec.message());
  }
  m_impl->m_path = socket_path;
  log::info("api.listening", {{"socket", socket_path}, {"mode", fmt::format("{:04o}", mode)}});
  return Ok{};
}

Result<Ok> ApiServer::listen_tcp(TcpListener listener)
{
  m_impl->m_tcp_listener = std::move(listener);
  const TcpListener* access = &m_impl->m_tcp_listener;
  auto fail = [&](std::string why) {
    return make_error("dashboard", fmt::format("dashboard.listen {}:{}: {}", access->host, access->port, why));
  };
  auto host = access->host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  asio::ip::tcp::resolver resolver(m_impl->m_ex);
  auto results = resolver.resolve(host, access->port, asio::ip::tcp::resolver::numeric_service, ec);
  if (ec) {
    return fail(ec.message());
  }
  auto& acc = m_impl->m_tcp_acceptor;
  for (const auto& entry : results) {
    auto ep = entry.endpoint();
    // The config allows loopback names only; check what the name resolved to as well.
    if (!ep.address().is_loopback()) {
      continue;
    }
    acc.open(ep.protocol(), ec);
    if (!ec) {
      acc.set_option(asio::socket_base::reuse_address(true), ec);
      acc.bind(ep, ec);
    }
    if (!ec) {
      acc.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (!ec) {
      log::info("dashboard.listening", {{"address", access->bound(acc.local_endpoint().port())}});
      return Ok{};
    }
    boost::system::error_code ignored;
    acc.close(ignored);
  }
  return fail(ec ? ec.message() : std::string("resolves to no loopback address"));
}

void ApiServer::start()
{
  const auto& c = m_impl->m_caps;
  const std::initializer_list<log::Field> caps{{"socket", c.socket},       {"dashboard", c.dashboard},
                                              {"unauthenticated", c.unauthenticated},
                                              {"fd_limit", c.fd_limit}, {"reserve", c.reserve}};
  if (c.lowered) {
    // Raise LimitNOFILE= (or ulimit -n) to keep the configured caps.
    log::warning("api.connection_caps_lowered", caps);
  } else {
    log::info("api.connection_caps", caps);
  }
  if (m_impl->m_tcp_acceptor.is_open()) {
    asio::co_spawn(m_impl->m_ex, Impl::accept_loop(m_impl, &m_impl->m_tcp_acceptor, true), [](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::error("dashboard.accept_loop_failed", {{"error", ex.what()}});
        }
      }
    });
  }
  asio::co_spawn(m_impl->m_ex, Impl::accept_loop(m_impl, &m_impl->m_acceptor, false), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("api.accept_loop_failed", {{"error", ex.what()}});
      }
    }
  });
}

void ApiServer::stop()
{
  auto& impl = *m_impl;
  if (impl.m_stopping) {
    return;
  }
  impl.m_stopping = true;
  boost::system::error_code ec;
  if (impl.m_acceptor.is_open()) {
    impl.m_acceptor.close(ec);
    if (!impl.m_path.empty()) {
      ::unlink(impl.m_path.c_str());
    }
  }
  if (impl.m_tcp_acceptor.is_open()) {
    impl.m_tcp_acceptor.close(ec);
  }
  for (auto* l : {&impl.m_local, &impl.m_tcp}) {
    for (auto* conn : l->conns) {
      if (conn->idle && conn->cancel) {
        conn->cancel();
      }
    }
  }
  // Event streams wait on the notifier; waking them lets them see m_stopping.
  impl.m_ctx.events.notify();
}

std::size_t ApiServer::connection_count() const
{
  return m_impl->m_local.conns.size() + m_impl->m_tcp.conns.size();
}

const ConnectionCaps& ApiServer::caps() const
{
  return m_impl->m_caps;
}

} // namespace klingd::api
