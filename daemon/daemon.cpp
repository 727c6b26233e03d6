#include "daemon/daemon.hpp"
#include "daemon/event_loop.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/api/api_server.hpp"
#include "daemon/api/router.hpp"
#include "daemon/dashboard/access.hpp"
#include "daemon/dashboard/routes.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/hooks/runner.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/notifier/notifier.hpp"
#include "daemon/sd_notify.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/job_store.hpp"
#include "daemon/store/maintenance.hpp"
#include "daemon/store/migrate.hpp"

#include <boost/asio/co_spawn.hpp>

#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <csignal>
#include <filesystem>
#include <optional>
#include <sys/stat.h>

namespace klingd {

extern const std::string_view k_builtin_catalog;

namespace asio = boost::asio;
namespace fs = std::filesystem;

Result<common::Catalog> load_catalog(const common::Config& config)
{
  if (config.models_file.empty()) {
    return common::Catalog::parse(k_builtin_catalog, "(built-in catalog)");
  }
  return common::Catalog::load_file(config.models_file);
}

namespace {

// Creates `dir` (and parents) with mode 0750 when missing.
Result<Ok> ensure_dir(const std::string& dir, std::string_view what)
{
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    return Ok{};
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return make_error("startup", fmt::format("cannot create {} {}: {}", what, dir, ec.message()));
  }
  ::chmod(dir.c_str(), 0750);
  return Ok{};
}

// Keys that a reload (SIGHUP) cannot change without a restart.
std::vector<std::string> restart_only_changes(const common::Config& a, const common::Config& b)
{
  std::vector<std::string> out;
  if (a.store.db != b.store.db) out.push_back("store.db");
  if (a.store.videos_dir != b.store.videos_dir) out.push_back("store.videos_dir");
  if (a.store.state_dir != b.store.state_dir) out.push_back("store.state_dir");
  if (a.socket.path != b.socket.path) out.push_back("socket.path");
  if (a.socket.mode != b.socket.mode) out.push_back("socket.mode");
  if (a.models_file != b.models_file) out.push_back("models_file");
  if (a.dashboard.listen != b.dashboard.listen) out.push_back("dashboard.listen");
  if (a.store.synchronous != b.store.synchronous) out.push_back("store.synchronous");
  if (a.store.retention.completed_days != b.store.retention.completed_days ||
      a.store.retention.failed_days != b.store.retention.failed_days ||
      a.store.retention.canceled_days != b.store.retention.canceled_days) {
    out.push_back("store.retention");
  }
  return out;
}

} // namespace

int run_daemon(common::Config config, std::string config_path)
{
  log::info("klingd.starting", {{"version", version()}, {"config", config.source}, {"db", config.store.db},
                                {"socket", config.socket.path}, {"api_key", config.api_key.source}});
  for (const auto& [dir, what] : {std::pair{config.store.state_dir, "state directory"},
                                  std::pair{fs::path(config.store.db).parent_path().string(), "database directory"},
                                  std::pair{config.store.videos_dir, "videos directory"}}) {
    if (auto r = ensure_dir(dir, what); !r) {
      log::error("klingd.startup_failed", {{"error", r.error().message}});
      return 1;
    }
  }

  auto catalog = load_catalog(config);
  if (!catalog) {
    log::error("klingd.startup_failed", {{"error", catalog.error().message}});
    return 1;
  }

  std::unique_ptr<store::Db> db;
  try {
    db = std::make_unique<store::Db>(config.store.db, store::Db::Options{config.store.synchronous, 5000});
    auto migrated = store::migrate(*db);
    if (!migrated) {
      log::error("klingd.startup_failed", {{"error", migrated.error().message}});
      return 1;
    }
  } catch (const std::exception& e) {
    log::error("klingd.startup_failed", {{"error", e.what()}});
    return 1;
  }

  EventLoop io(1);
  store::JobStore job_store(*db);
  store::GroupCommitter committer(io.get_executor(), job_store);
  if (config.store.synchronous == "full" && config.store.db != ":memory:") {
    // Submits are acknowledged after a WAL fdatasync on a worker thread instead of a FULL
    // COMMIT on the loop (docs/reliability.md, "Submits: the WAL sync off the loop").
    committer.enable_deferred_sync();
  }
  Notifier events(io.get_executor());
  Metrics metrics;
  std::optional<hooks::HookRunner> hook_runner; // emplaced with the engine (its HttpClient loads provider.ca_file)
  committer.on_committed = [&](std::vector<store::Event>&& committed) {
    events.notify();
    if (hook_runner && std::any_of(committed.begin(), committed.end(),
                                    [](const auto& e) { return common::is_terminal(e.state); })) {
      hook_runner->wake(); // a terminal transition may have owed a hook (same transaction)
    }
  };
  store::Maintenance maintenance(io.get_executor(), committer, job_store, config.store.retention);

  // The engine opens the provider's TLS context: a provider.ca_file that cannot be loaded is a
  // start-up error, said as such.
  std::optional<engine::Engine> engine_slot;
  try {
    engine_slot.emplace(io.get_executor(), config, *catalog, job_store, committer, metrics);
    hook_runner.emplace(io.get_executor(), config, job_store, committer);
  } catch (const std::exception& e) {
    log::error("klingd.startup_failed", {{"error", e.what()}});
    return 1;
  }
  engine::Engine& engine = *engine_slot;
  std::optional<dashboard::Access> dashboard_access;
  if (!config.dashboard.listen.empty()) {
    auto access = dashboard::open_access(config.store.state_dir, config.dashboard.listen);
    if (!access) {
      log::error("klingd.startup_failed", {{"error", access.error().message}});
      return 1;
    }
    dashboard_access = std::move(*access);
  }
  // Each listener's routes: the socket's own plus the dashboard's; the dashboard's TCP
  // listener routes through its checks to those the page may use.
  api::Routes socket_routes = api::socket_routes();
  dashboard::add_socket_routes(socket_routes, dashboard_access ? &*dashboard_access : nullptr);
  api::ApiServer server(io.get_executor(),
                        api::ApiContext{config, *catalog, job_store, committer, engine, events, metrics,
                                        std::chrono::steady_clock::now()},
                        socket_routes);
  if (auto r = server.listen(config.socket.path, config.socket.mode); !r) {
    log::error("klingd.startup_failed", {{"error", r.error().message}});
    return 1;
  }
  if (dashboard_access) {
    if (auto r = server.listen_tcp(dashboard::tcp_listener(*dashboard_access, socket_routes)); !r) {
      log::error("klingd.startup_failed", {{"error", r.error().message}});
      return 1;
    }
  }
  server.start();
  maintenance.start();

  asio::co_spawn(io, engine.start(), log::coroutine_failure_handler("engine.start"));
  hook_runner->start();

  // Watchdog pings come from the loop itself, so a stuck loop stops them.
  asio::steady_timer watchdog(io);
  std::function<void()> arm_watchdog;
  if (auto interval = sd_watchdog_interval()) {
    arm_watchdog = [&, half = *interval / 2] {
      watchdog.expires_after(half);
      watchdog.async_wait([&](boost::system::error_code ec) {
        if (!ec) {
          sd_notify("WATCHDOG=1");
          arm_watchdog();
        }
      });
    };
    arm_watchdog();
  }

  bool stopping = false;
  std::function<void()> begin_stop;
  // A failed WAL sync of acknowledged-to-be submits: nothing written since can be trusted to be
  // on disk, so klingd stops (exit status 1) and its restart keeps what the disk has, like a
  // crash (docs/reliability.md). The committer already fails every write.
  bool store_failed = false;
  committer.on_sync_failed = [&](const std::string& error) {
    store_failed = true;
    log::error("klingd.stopping_store_failed", {{"error", error}});
    asio::post(io, [&] { begin_stop(); });
  };
  asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int signo) {
      if (ec) {
        return;
      }
      if (signo == SIGHUP) {
        auto fresh = common::load_config(config_path, common::current_environment());
        if (!fresh) {
          log::error("config.reload_refused", {{"error", fresh.error().message}});
          sd_notify("RELOADING=0\nSTATUS=reload refused: bad configuration");
        } else {
          for (const auto& key : restart_only_changes(config, *fresh)) {
            log::warning("config.reload_needs_restart", {{"key", key}});
          }
          // Keep what only a restart can change; take everything else.
          common::Config next = *fresh;
          next.store = config.store;
          next.socket = config.socket;
          next.models_file = config.models_file;
          next.dashboard = config.dashboard;
          config = next;
          log::Level lv;
          if (log::parse_level(config.log.level, lv)) {
            log::set_level(lv);
          }
          engine.reconfigure(config);
          hook_runner->reconfigure(config);
          log::info("config.reloaded", {{"config", config.source}, {"api_key", config.api_key.source}});
        }
        wait_signal();
        return;
      }
      if (stopping) {
        log::warning("klingd.second_signal", {{"signal", signo}});
        wait_signal();
        return;
      }
      log::info("klingd.stopping", {{"signal", signo}, {"grace_s", config.shutdown.grace_s}});
      begin_stop();
      wait_signal();
    });
  };
  begin_stop = [&] {
    if (stopping) {
      return;
    }
    stopping = true;
    sd_notify("STOPPING=1\nSTATUS=stopping");
    server.stop();
    asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto grace = std::chrono::milliseconds(static_cast<long>(config.shutdown.grace_s * 1000));
        const auto deadline = std::chrono::steady_clock::now() + grace;
        co_await engine.shutdown(grace);
        // server.stop() ended the event streams and idle connections; let the
        // last answers reach their clients before the loop stops.
        asio::steady_timer t(io);
        while (server.connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
          t.expires_after(std::chrono::milliseconds(10));
          co_await t.async_wait(asio::use_awaitable);
        }
        watchdog.cancel();
        maintenance.stop();
        hook_runner->stop();
        signals.cancel();
        io.stop();
      },
      log::coroutine_failure_handler("shutdown"));
  };
  wait_signal();

  sd_notify(fmt::format("READY=1\nSTATUS=serving on {}\nMAINPID={}", config.socket.path, ::getpid()));
  log::info("klingd.ready", {{"socket", config.socket.path}});

  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::exception& e) {
      // A bug escaped a handler: log it and keep the loop (and every job) alive.
      log::error("loop.exception", {{"error", e.what()}});
    }
  }
  // Coroutine frames still suspended (loops asleep, a create past the grace) are destroyed
  // now, while the engine, server and store they point into still exist.
  io.destroy_pending();
  log::info("klingd.stopped");
  return store_failed ? 1 : 0;
}

} // namespace klingd
