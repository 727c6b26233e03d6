// GroupCommitter: every write to the store goes through here. Writes that
// arrive in the same loop turn share one transaction (docs/contract.md §3.1);
// each runs in its own savepoint, so one failing write does not undo others.
//
// Two durabilities (docs/reliability.md, "Submits: the WAL sync off the loop"):
// - Sync::in_commit (the default, every engine transition): the group commits with the
//   configured synchronous mode (FULL: COMMIT fsyncs the WAL on the loop thread) and its
//   callers resume once COMMIT returned.
// - Sync::deferred (the submit path), when enable_deferred_sync() was called: a group made
//   only of such writes commits with synchronous=NORMAL (the WAL frames are written, not
//   synced), and the -wal file is fdatasynced on a worker thread while the loop keeps
//   serving; the callers resume only after a sync that started after their commit
//   returned. One sync covers every group committed before it started; deferred writes
//   arriving while a sync runs are held uncommitted and commit as one group when it ends
//   (an in_commit write arriving meanwhile commits them at once, with FULL). A Sync::in_commit
//   commit (FULL) makes every earlier frame durable too, so nothing the engine does next
//   (a paid create) rests on frames that are not on disk.
#pragma once

#include "daemon/store/job_store.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace klingd::store {

class GroupCommitter
{
public:
  GroupCommitter(boost::asio::any_io_executor ex, JobStore& store);
  ~GroupCommitter();

  enum class Sync
  {
    in_commit, // durable when COMMIT returns (synchronous as configured)
    deferred,  // durable after the worker's fdatasync of the WAL (see above)
  };

  // Runs `fn` inside the next shared transaction and completes once that
  // transaction is committed and durable. Results travel through variables the
  // caller's lambda captures. If `fn` throws, its savepoint is rolled back and
  // the exception is rethrown here; if COMMIT fails, every write in the
  // group gets the exception. If SQLite rolls the whole transaction back
  // during a write (I/O error, full disk), that write and every other in the
  // group fail with its error and the writes after it are not run. A deferred
  // write whose WAL sync fails gets a SqliteError (SQLITE_IOERR_FSYNC) naming it.
  boost::asio::awaitable<void> run(std::function<void(JobStore&)> fn, Sync sync = Sync::in_commit);

  // Turns Sync::deferred on (without it every write is Sync::in_commit). Only for a
  // connection whose synchronous mode is FULL. `sync` runs on the committer's worker
  // thread and returns 0 or an errno; the default fdatasyncs the database's -wal file.
  // The syncs are counted in stats().syncs.
  using SyncFn = std::function<int()>;
  void enable_deferred_sync(SyncFn sync = {});

  // Called with the events a group appended once they are durable (a deferred group's at
  // its sync, so groups may be published out of seq order).
  std::function<void(std::vector<Event>&&)> on_committed;
  // Called once (on the loop) when a deferred WAL sync failed: the committed rows of the
  // groups it covered are visible but may not be on disk, and nothing written after them
  // can be trusted to be either. From then on every write fails at once with the same
  // error; the daemon stops (docs/reliability.md).
  std::function<void(const std::string& error)> on_sync_failed;

  struct Stats
  {
    std::uint64_t commits = 0;
    std::uint64_t writes = 0;
    std::uint64_t syncs = 0;          // WAL syncs run by the worker
    std::uint64_t deferred_commits = 0; // commits made with synchronous=NORMAL
  };
  const Stats& stats() const { return m_stats; }
  // Groups committed whose callers still wait for a WAL sync.
  std::size_t unsynced_groups() const { return m_unsynced.size(); }

private:
  struct Op
  {
    std::function<void(JobStore&)> fn;
    boost::asio::any_completion_handler<void(std::exception_ptr)> done;
    Sync sync = Sync::in_commit;
  };
  // A deferred group committed, waiting for its WAL sync.
  struct Unsynced
  {
    std::uint64_t seq = 0;
    std::vector<Op> ops;
    std::vector<std::exception_ptr> results;
    std::vector<Event> events;
  };
  struct Worker;
  void enqueue(Op op);
  void flush();
  void complete(std::vector<Op>& ops, const std::vector<std::exception_ptr>& results, std::exception_ptr all);
  void publish(std::vector<Event>&& events);
  void release_through(std::uint64_t seq);
  void start_sync();
  void synced(std::uint64_t target, int err);

  boost::asio::any_io_executor m_ex;
  JobStore& m_store;
  std::vector<Op> m_queue;
  bool m_scheduled = false;
  Stats m_stats;
  std::unique_ptr<Worker> m_worker; // set by enable_deferred_sync
  std::uint64_t m_commit_seq = 0;   // deferred groups committed so far
  std::deque<Unsynced> m_unsynced;
  bool m_sync_in_flight = false;
  bool m_held = false; // m_queue holds deferred writes waiting for the sync in flight to end
  std::exception_ptr m_broken; // a WAL sync failed: every write fails with this
};

} // namespace klingd::store
