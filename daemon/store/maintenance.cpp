#include "daemon/store/maintenance.hpp"

#include "common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sqlite3.h>

namespace klingd::store {

namespace asio = boost::asio;

namespace {
std::optional<std::string> cutoff(const std::optional<double>& days, SysTime now)
{
  if (!days) {
    return std::nullopt;
  }
  return format_rfc3339(now - std::chrono::milliseconds(static_cast<std::int64_t>(*days * 86400.0 * 1000.0)));
}
} // namespace

PruneCutoffs retention_cutoffs(const common::Config::Store::Retention& r, SysTime now)
{
  return PruneCutoffs{cutoff(r.completed_days, now), cutoff(r.failed_days, now), cutoff(r.canceled_days, now)};
}

asio::awaitable<PruneStats> prune_all(GroupCommitter& gc, JobStore& store, PruneCutoffs cutoffs, bool dry_run,
                                      std::size_t chunk)
{
  PruneStats total;
  std::optional<std::string> after;
  for (;;) {
    PruneStats part;
    if (dry_run) {
      part = store.prune(cutoffs, chunk, after, true);
      // Reads only; still let other handlers run between chunks.
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    } else {
      co_await gc.run([&](JobStore& s) { part = s.prune(cutoffs, chunk, after, false); });
    }
    total += part;
    if (!part.next) {
      break;
    }
    after = part.next;
  }
  co_return total;
}

struct Maintenance::Impl
{
  GroupCommitter& gc;
  JobStore& store;
  common::Config::Store::Retention retention;
  Intervals intervals;
  asio::steady_timer checkpoint_timer;
  asio::steady_timer retention_timer;
  std::uint64_t commits_seen = 0;
  bool stopped = false;
  // The idle TRUNCATE checkpoint fsyncs the database: on a busy disk that took over half a
  // second, a stall of the loop (watchdog pings, API answers). It runs on a worker thread, on a
  // connection of its own that only that thread uses.
  asio::any_io_executor loop;
  asio::thread_pool worker{1};
  sqlite3* checkpointer = nullptr; // worker thread only
  bool checkpointing = false;

  Impl(asio::any_io_executor ex, GroupCommitter& g, JobStore& s, common::Config::Store::Retention r, Intervals i)
    : gc(g), store(s), retention(r), intervals(i), checkpoint_timer(ex), retention_timer(ex), loop(ex)
  {
  }
  ~Impl()
  {
    worker.join();
    if (checkpointer) {
      sqlite3_close_v2(checkpointer);
    }
  }

  // Runs on the worker: TRUNCATE without waiting for anyone (busy timeout 0: a reader or a
  // writer in the way means "not now", the next idle tick tries again).
  bool truncate_on_worker(const std::string& path)
  {
    if (!checkpointer) {
      if (sqlite3_open_v2(path.c_str(), &checkpointer, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        sqlite3_close_v2(checkpointer);
        checkpointer = nullptr;
        return false;
      }
      sqlite3_busy_timeout(checkpointer, 0);
    }
    // A connection learns the database is in WAL mode only once it has read it; until then a
    // checkpoint is a no-op that reports success.
    if (sqlite3_exec(checkpointer, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return false;
    }
    int log_frames = -1;
    const int rc = sqlite3_wal_checkpoint_v2(checkpointer, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, nullptr);
    return rc == SQLITE_OK && log_frames >= 0;
  }

  void arm_checkpoint()
  {
    checkpoint_timer.expires_after(intervals.idle_checkpoint);
    checkpoint_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped) {
        return;
      }
      // Idle since the last tick (no commit in between) and a WAL to cut: truncate it.
      // Under load the PASSIVE checkpoints at commit time keep it bounded instead.
      const auto commits = gc.stats().commits;
      if (commits == commits_seen && !checkpointing && store.db().path() != ":memory:"
          && store.db().file_sizes().wal_bytes > 0) {
        checkpointing = true;
        asio::post(worker, [this, path = store.db().path()] {
          const bool ok = truncate_on_worker(path);
          asio::post(loop, [this, ok] {
            checkpointing = false;
            if (ok) {
              log::debug("store.wal_truncated");
            }
          });
        });
      }
      commits_seen = commits;
      arm_checkpoint();
    });
  }

  void arm_retention(std::chrono::steady_clock::duration after)
  {
    retention_timer.expires_after(after);
    retention_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped) {
        return;
      }
      asio::co_spawn(
        retention_timer.get_executor(),
        [this]() -> asio::awaitable<void> {
          try {
            auto r = co_await prune_all(gc, store, retention_cutoffs(retention, now_utc()), false);
            if (r.jobs_deleted || r.jobs_trimmed) {
              log::info("store.pruned", {{"jobs_deleted", r.jobs_deleted}, {"jobs_trimmed", r.jobs_trimmed},
                                         {"events_deleted", r.events_deleted}, {"tombstones", r.tombstones}});
            }
          } catch (const std::exception& e) {
            log::error("store.prune_failed", {{"error", e.what()}});
          }
          if (!stopped) {
            arm_retention(intervals.retention_every);
          }
        },
        log::coroutine_failure_handler("store.retention"));
    });
  }
};

Maintenance::Maintenance(asio::any_io_executor ex, GroupCommitter& gc, JobStore& store,
                         common::Config::Store::Retention retention, Intervals intervals)
  : m_impl(std::make_unique<Impl>(std::move(ex), gc, store, retention, intervals))
{
}

Maintenance::~Maintenance() = default;

void Maintenance::start()
{
  m_impl->commits_seen = m_impl->gc.stats().commits;
  m_impl->arm_checkpoint();
  if (m_impl->retention.any()) {
    m_impl->arm_retention(m_impl->intervals.retention_first);
  }
}

void Maintenance::stop()
{
  m_impl->stopped = true;
  m_impl->checkpoint_timer.cancel();
  m_impl->retention_timer.cancel();
}

} // namespace klingd::store
