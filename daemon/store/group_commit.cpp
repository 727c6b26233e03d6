#include "daemon/store/group_commit.hpp"

#include "common/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <sqlite3.h>

namespace klingd::store {

namespace asio = boost::asio;

GroupCommitter::GroupCommitter(asio::any_io_executor ex, JobStore& store) : m_ex(std::move(ex)), m_store(store) {}

asio::awaitable<void> GroupCommitter::run(std::function<void(JobStore&)> fn)
{
  // use_awaitable rethrows a non-null exception_ptr in this coroutine.
  co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr)>(
    [this, &fn](auto handler) { enqueue(Op{std::move(fn), std::move(handler)}); }, asio::use_awaitable);
}

void GroupCommitter::enqueue(Op op)
{
  m_queue.push_back(std::move(op));
  if (!m_scheduled) {
    m_scheduled = true;
    // Posted, not run now: writes queued by other handlers ready in this loop
    // turn join the same transaction.
    asio::post(m_ex, [this] { flush(); });
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
  std::vector<std::exception_ptr> results(ops.size());
  std::exception_ptr commit_error;
  sqlite3* const handle = m_store.db().handle();
  try {
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
    }
  } catch (const std::exception& e) {
    log::error("store.commit_failed", {{"writes", ops.size()}, {"error", e.what()}});
    commit_error = std::current_exception();
  }
  if (commit_error) {
    m_store.take_pending_events();
  } else {
    auto events = m_store.take_pending_events();
    if (on_committed && !events.empty()) {
      on_committed(std::move(events));
    }
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    auto handler = std::move(ops[i].done);
    auto err = commit_error ? commit_error : results[i];
    asio::post(m_ex, [h = std::move(handler), err]() mutable { std::move(h)(err); });
  }
}

} // namespace klingd::store
