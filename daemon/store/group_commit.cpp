#include "daemon/store/group_commit.hpp"

#include "common/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

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
  try {
    Transaction txn(m_store.db());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const std::size_t events_before = m_store.pending_event_count();
      try {
        Savepoint sp(m_store.db(), "w");
        ops[i].fn(m_store);
        sp.commit();
      } catch (...) {
        m_store.drop_pending_events_from(events_before);
        results[i] = std::current_exception();
      }
    }
    txn.commit();
    ++m_stats.commits;
    m_stats.writes += ops.size();
  } catch (const std::exception& e) {
    log::error("store.commit_failed", {{"writes", ops.size()}, {"error", e.what()}});
    commit_error = std::current_exception();
    m_store.take_pending_events();
  }
  if (!commit_error) {
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
