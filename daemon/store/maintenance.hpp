// Store housekeeping on the loop (issue 15): the WAL is checkpointed and cut to
// zero bytes when the store is idle, and retention prunes old finished jobs
// (store.retention) hourly in small transactions through the GroupCommitter.
#pragma once

#include "common/config.hpp"
#include "common/time.hpp"
#include "daemon/store/group_commit.hpp"

#include <chrono>
#include <memory>

namespace klingd::store {

// Cutoffs for `retention` as of `now` (a state with no retention: no cutoff).
PruneCutoffs retention_cutoffs(const common::Config::Store::Retention& retention, SysTime now);

// Prunes everything prunable under `cutoffs`, `chunk` jobs per transaction (each
// one a write through `gc`, so other writes interleave). With `dry_run` nothing
// changes and the counts say what would go.
boost::asio::awaitable<PruneStats> prune_all(GroupCommitter& gc, JobStore& store, PruneCutoffs cutoffs, bool dry_run,
                                             std::size_t chunk = 100);

struct MaintenanceIntervals
{
  // No commit for this long: the WAL is truncated.
  std::chrono::steady_clock::duration idle_checkpoint = std::chrono::seconds(2);
  // Retention runs this long after start, then every `retention_every`.
  std::chrono::steady_clock::duration retention_first = std::chrono::minutes(1);
  std::chrono::steady_clock::duration retention_every = std::chrono::hours(1);
};

class Maintenance
{
public:
  using Intervals = MaintenanceIntervals;

  Maintenance(boost::asio::any_io_executor ex, GroupCommitter& gc, JobStore& store,
              common::Config::Store::Retention retention, Intervals intervals = {});
  ~Maintenance();
  Maintenance(const Maintenance&) = delete;
  Maintenance& operator=(const Maintenance&) = delete;

  void start();
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace klingd::store
