// Notifier: wakes every coroutine waiting on it (events streams waiting for
// new committed events, the dispatcher waiting for new jobs). Level-free: a
// waiter re-checks its condition after waking.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace klingd {

class Notifier
{
public:
  explicit Notifier(boost::asio::any_io_executor ex);
  // Wakes all current waiters.
  void notify();
  // Waits until the next notify() or until `timeout` passes.
  boost::asio::awaitable<void> wait(std::chrono::steady_clock::duration timeout);

private:
  boost::asio::any_io_executor m_ex;
  std::shared_ptr<boost::asio::steady_timer> m_timer;
};

} // namespace klingd
