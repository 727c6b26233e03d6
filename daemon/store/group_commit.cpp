#include "daemon/store/group_commit.hpp"

#include "common/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>
#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace klingd::store {

namespace asio = boost::asio;

namespace {

// fdatasync of the -wal file through a descriptor of our own (Linux syncs the inode's
// dirty pages whichever descriptor wrote them). Worker thread only. The file is opened at
// the first sync (a deferred commit has written to it, so it exists) and must stay the
// file SQLite writes: SQLite keeps its -wal open, and only truncates it (checkpoints,
// journal_size_limit), while a connection is open; a -wal that was replaced under us
// fails the sync (ESTALE) rather than syncing the wrong file.
class WalFile
{
public:
  explicit WalFile(std::string path) : m_path(std::move(path)) {}
  ~WalFile()
  {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
  }
  WalFile(const WalFile&) = delete;
  WalFile& operator=(const WalFile&) = delete;

  int sync()
  {
    if (m_fd < 0) {
      m_fd = ::open(m_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (m_fd < 0) {
        return errno;
      }
      struct stat st{};
      if (::fstat(m_fd, &st) != 0) {
        return errno;
      }
      m_dev = st.st_dev;
      m_ino = st.st_ino;
    }
    if (::fdatasync(m_fd) != 0) {
      return errno;
    }
    struct stat st{};
    if (::stat(m_path.c_str(), &st) != 0) {
      return errno;
    }
    if (st.st_dev != m_dev || st.st_ino != m_ino) {
      return ESTALE;
    }
    return 0;
  }

private:
  std::string m_path;
  int m_fd = -1;
  dev_t m_dev = 0;
  ino_t m_ino = 0;
};

} // namespace

struct GroupCommitter::Worker
{
  SyncFn sync;
  std::shared_ptr<WalFile> wal; // the default sync's file (worker thread only)
  asio::thread_pool pool{1};
};

GroupCommitter::GroupCommitter(asio::any_io_executor ex, JobStore& store) : m_ex(std::move(ex)), m_store(store) {}

GroupCommitter::~GroupCommitter()
{
  if (m_worker) {
    m_worker->pool.join();
  }
}

void GroupCommitter::enable_deferred_sync(SyncFn sync)
{
  auto w = std::make_unique<Worker>();
  if (sync) {
    w->sync = std::move(sync);
  } else {
    w->wal = std::make_shared<WalFile>(m_store.db().path() + "-wal");
    w->sync = [wal = w->wal] { return wal->sync(); };
  }
  m_worker = std::move(w);
}

asio::awaitable<void> GroupCommitter::run(std::function<void(JobStore&)> fn, Sync sync)
{
  // use_awaitable rethrows a non-null exception_ptr in this coroutine.
  co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr)>(
    [this, &fn, sync](auto handler) { enqueue(Op{std::move(fn), std::move(handler), sync}); }, asio::use_awaitable);
}

void GroupCommitter::enqueue(Op op)
{
  if (m_broken) {
    auto err = m_broken;
    asio::post(m_ex, [h = std::move(op.done), err]() mutable { std::move(h)(err); });
    return;
  }
  const bool now = op.sync == Sync::in_commit;
  m_queue.push_back(std::move(op));
  if (m_held && !now) {
    return; // joins the held group, flushed when the sync in flight ends
  }
  if (!m_scheduled) {
    m_scheduled = true;
    // Posted, not run now: writes queued by other handlers ready in this loop
    // turn join the same transaction.
    asio::post(m_ex, [this] { flush(); });
  }
}

void GroupCommitter::complete(std::vector<Op>& ops, const std::vector<std::exception_ptr>& results,
                              std::exception_ptr all)
{
  for (std::size_t i = 0; i < ops.size(); ++i) {
    auto handler = std::move(ops[i].done);
    auto err = all ? all : results[i];
    asio::post(m_ex, [h = std::move(handler), err]() mutable { std::move(h)(err); });
  }
}

void GroupCommitter::publish(std::vector<Event>&& events)
{
  if (on_committed && !events.empty()) {
    on_committed(std::move(events));
  }
}

// Every deferred group up to `seq` is durable: its events are published and its callers resumed.
void GroupCommitter::release_through(std::uint64_t seq)
{
  while (!m_unsynced.empty() && m_unsynced.front().seq <= seq) {
    Unsynced g = std::move(m_unsynced.front());
    m_unsynced.pop_front();
    publish(std::move(g.events));
    complete(g.ops, g.results, nullptr);
  }
}

void GroupCommitter::start_sync()
{
  if (m_sync_in_flight || m_unsynced.empty() || m_broken) {
    return;
  }
  m_sync_in_flight = true;
  // Every group committed so far is in the WAL file: the sync that starts now covers them.
  const std::uint64_t target = m_unsynced.back().seq;
  asio::post(m_worker->pool, [this, target, sync = m_worker->sync] {
    const int err = sync();
    asio::post(m_ex, [this, target, err] { synced(target, err); });
  });
}

void GroupCommitter::synced(std::uint64_t target, int err)
{
  m_sync_in_flight = false;
  ++m_stats.syncs;
  if (err == 0) {
    release_through(target);
    if (m_held && !m_scheduled) {
      flush(); // the deferred writes held while this sync ran: commit them and sync them
    }
    start_sync(); // the groups committed while this one ran
    return;
  }
  // The groups' rows are committed (other requests may already have read them) but may not
  // be on disk, and after a failed sync no later commit can be trusted to be either (the
  // kernel may have dropped the failed pages; a WAL with a hole loses every frame after it
  // at recovery). Fail every waiting caller and every later write; the daemon stops and
  // its restart keeps what the disk has, like a crash (docs/reliability.md).
  const std::string what = fmt::format(
    "store: fdatasync of the WAL failed ({}): the write was committed but may not be durable; klingd stops",
    std::strerror(err));
  log::error("store.wal_sync_failed", {{"error", std::strerror(err)}, {"groups", m_unsynced.size()}});
  m_broken = std::make_exception_ptr(SqliteError(SQLITE_IOERR_FSYNC, what));
  while (!m_unsynced.empty()) {
    Unsynced g = std::move(m_unsynced.front());
    m_unsynced.pop_front();
    complete(g.ops, g.results, m_broken);
  }
  std::vector<Op> queued;
  queued.swap(m_queue);
  m_held = false;
  complete(queued, std::vector<std::exception_ptr>(queued.size()), m_broken);
  if (on_sync_failed) {
    on_sync_failed(what);
  }
}

void GroupCommitter::flush()
{
  m_scheduled = false;
  std::vector<Op> ops;
  ops.swap(m_queue);
  if (ops.empty()) {
    return;
  }
  if (m_broken) {
    complete(ops, std::vector<std::exception_ptr>(ops.size()), m_broken);
    return;
  }
  // Deferred only when every write of the group may be: one in_commit write makes the
  // whole group (and every frame before it) durable at COMMIT.
  bool deferred = m_worker != nullptr;
  for (const auto& op : ops) {
    deferred = deferred && op.sync == Sync::deferred;
  }
  if (deferred && m_sync_in_flight) {
    // A deferred group committed now would wait for the sync in flight and then for one
    // of its own. Held until that sync ends (synced() flushes it), the writes arriving
    // meanwhile join it: one COMMIT and one sync for all of them, the same wait for each.
    // An in_commit write queued meanwhile flushes the whole queue at once (enqueue).
    ops.swap(m_queue);
    m_held = true;
    return;
  }
  m_held = false;
  std::vector<std::exception_ptr> results(ops.size());
  std::exception_ptr commit_error;
  sqlite3* const handle = m_store.db().handle();
  try {
    if (deferred) {
      // In WAL mode NORMAL writes the frames at COMMIT without syncing them (a WAL restart
      // still syncs its new header, and checkpoints still sync). The worker syncs them.
      m_store.db().run("PRAGMA synchronous=NORMAL");
    }
    struct RestoreFull
    {
      Db& db;
      bool on;
      ~RestoreFull()
      {
        if (on) {
          try {
            db.run("PRAGMA synchronous=FULL");
          } catch (const std::exception& e) {
            log::error("store.synchronous_restore_failed", {{"error", e.what()}});
          }
        }
      }
    } restore{m_store.db(), deferred};
    Transaction txn(m_store.db());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const std::size_t events_before = m_store.pending_event_count();
      bool fn_threw = false;
      try {
        Savepoint sp(m_store.db(), "w");
        try {
          ops[i].fn(m_store);
        } catch (...) {
          fn_threw = true;
          throw;
        }
        sp.commit();
      } catch (...) {
        m_store.drop_pending_events_from(events_before);
        results[i] = std::current_exception();
      }
      if (sqlite3_get_autocommit(handle)) {
        // SQLite rolled the whole transaction back (an I/O error, a full disk on a
        // statement without a journal): every write of the group before this one is
        // gone, and running the rest now would commit each outside any transaction
        // while its caller is told it failed. Fail them all without running them.
        // The cause is the write's own error if it failed (SQLITE_FULL: 507 for all).
        if (fn_threw) {
          commit_error = results[i];
        } else {
          commit_error = std::make_exception_ptr(
            SqliteError(SQLITE_ABORT, "sqlite: the transaction was rolled back by SQLite"));
        }
        break;
      }
    }
    if (commit_error) {
      log::error("store.transaction_lost", {{"writes", ops.size()}});
    } else {
      txn.commit();
      ++m_stats.commits;
      m_stats.writes += ops.size();
      m_stats.deferred_commits += deferred ? 1 : 0;
    }
  } catch (const std::exception& e) {
    log::error("store.commit_failed", {{"writes", ops.size()}, {"error", e.what()}});
    commit_error = std::current_exception();
  }
  if (commit_error) {
    m_store.take_pending_events();
    complete(ops, results, commit_error);
    return;
  }
  if (deferred) {
    m_unsynced.push_back(Unsynced{++m_commit_seq, std::move(ops), std::move(results), m_store.take_pending_events()});
    start_sync();
    return;
  }
  // A FULL commit synced the WAL file, and with it every deferred group's frames before it;
  // their callers are still resumed by the worker's sync only (a COMMIT that had nothing to
  // write syncs nothing, and telling the two apart is not worth the risk).
  publish(m_store.take_pending_events());
  complete(ops, results, nullptr);
}

} // namespace klingd::store
