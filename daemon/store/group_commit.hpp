// GroupCommitter: every write to the store goes through here. Writes that
// arrive in the same loop turn share one transaction and one fsync (docs/contract.md §3.1);
// each runs in its own savepoint, so one failing write does not undo others.
#pragma once

#include "daemon/store/job_store.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <functional>
#include <vector>

namespace klingd::store {

class GroupCommitter
{
public:
  GroupCommitter(boost::asio::any_io_executor ex, JobStore& store);

  // Runs `fn` inside the next shared transaction and completes once that
  // transaction is committed (durable). Results travel through variables the
  // caller's lambda captures. If `fn` throws, its savepoint is rolled back and
  // the exception is rethrown here; if COMMIT fails, every write in the
  // group gets the exception. If SQLite rolls the whole transaction back
  // during a write (I/O error, full disk), that write and every other in the
  // group fail with its error and the writes after it are not run.
  boost::asio::awaitable<void> run(std::function<void(JobStore&)> fn);

  // Called after each commit with the events the group appended, in seq order.
  std::function<void(std::vector<Event>&&)> on_committed;

  struct Stats
  {
    std::uint64_t commits = 0;
    std::uint64_t writes = 0;
  };
  const Stats& stats() const { return m_stats; }

private:
  struct Op
  {
    std::function<void(JobStore&)> fn;
    boost::asio::any_completion_handler<void(std::exception_ptr)> done;
  };
  void enqueue(Op op);
  void flush();

  boost::asio::any_io_executor m_ex;
  JobStore& m_store;
  std::vector<Op> m_queue;
  bool m_scheduled = false;
  Stats m_stats;
};

} // namespace klingd::store
