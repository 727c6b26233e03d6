#include "daemon/store/maintenance.hpp"

#include "common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

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

  Impl(asio::any_io_executor ex, GroupCommitter& g, JobStore& s, common::Config::Store::Retention r, Intervals i)
    : gc(g), store(s), retention(r), intervals(i), checkpoint_timer(ex), retention_timer(ex)
  {
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
      if (commits == commits_seen && store.db().file_sizes().wal_bytes > 0) {
        if (store.db().checkpoint_truncate()) {
          log::debug("store.wal_truncated");
        }
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
