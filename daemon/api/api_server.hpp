// ApiServer: the socket API of docs/contract.md §4.1 — HTTP/1.1 + JSON over a Unix socket, one
// coroutine per connection on the loop thread. Beast stays in api_server.cpp.
#pragma once

#include "common/result.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace klingd {
class Metrics;
class Notifier;
namespace common {
struct Config;
class Catalog;
} // namespace common
namespace store {
class JobStore;
class GroupCommitter;
} // namespace store
namespace engine {
class Engine;
}
} // namespace klingd

namespace klingd::api {

// How many connections each listener keeps (docs/security.md). Connections beyond a cap
// first push out the oldest one that is only waiting for a request (nginx's "reusable"
// connections); when none is, the new one is closed at once.
struct ConnectionCaps
{
  std::size_t socket = 0;          // Unix socket
  std::size_t dashboard = 0;       // dashboard TCP listener
  std::size_t unauthenticated = 0; // of those, not yet past the token check
  std::size_t fd_limit = 0;        // RLIMIT_NOFILE (soft) they were computed from
  std::size_t reserve = 0;         // descriptors kept for the engine (database, HTTPS, downloads)
  bool lowered = false;            // the configured caps did not fit fd_limit - reserve
};

// The configured caps, lowered (in proportion) so that both listeners together leave
// `reserve` descriptors of `fd_limit` for the engine's own sockets and files.
ConnectionCaps connection_caps(std::size_t fd_limit, std::size_t socket_max, std::size_t dashboard_max,
                               int download_max_concurrent);

// What the handlers use; every reference must outlive the server (and the loop's
// last run, since connections finish after stop()).
struct ApiContext
{
  const common::Config& config;
  const common::Catalog& catalog;
  store::JobStore& store;
  store::GroupCommitter& committer;
  engine::Engine& engine;
  Notifier& events;
  Metrics& metrics;
  std::chrono::steady_clock::time_point started;
};

struct Route;
struct TcpListener;

class ApiServer
{
public:
  // `routes`: the socket's route table (router.hpp). The dashboard's connection cap is kept
  // when config.dashboard.listen is set.
  ApiServer(boost::asio::any_io_executor ex, ApiContext ctx, std::vector<Route> routes);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds the socket: creates its parent directory (0750) if missing, replaces a stale
  // socket file left by a crash, refuses when another daemon answers on it (or the
  // path is not a socket), then chmods the socket to `mode`.
  Result<Ok> listen(const std::string& socket_path, unsigned mode);

  // Binds the dashboard's loopback TCP listener (its host:port; port 0 picks one, told to
  // listener.bound). Its requests go through the same session code, to listener.route
  // (daemon/dashboard/routes.hpp checks the token there).
  Result<Ok> listen_tcp(TcpListener listener);

  // Spawns the accept loop(s); an exception, if any, is logged.
  void start();

  // Stops accepting, ends event streams, closes idle keep-alive connections; requests
  // being handled finish and get their response (with Connection: close). The socket
  // file is removed. Idempotent.
  void stop();

  // Connections open now (for tests and status).
  std::size_t connection_count() const;

  // The caps in force (computed at construction from the config and RLIMIT_NOFILE).
  const ConnectionCaps& caps() const;

private:
  class Impl;
  std::shared_ptr<Impl> m_impl;
};

} // namespace klingd::api
