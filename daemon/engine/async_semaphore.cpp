#include "daemon/engine/async_semaphore.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace klingd::engine {

namespace asio = boost::asio;

asio::awaitable<void> AsyncSemaphore::acquire()
{
  if (m_free > 0 && m_waiters.empty()) {
    --m_free;
    co_return;
  }
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
    [this](auto handler) { m_waiters.push_back(std::move(handler)); }, asio::use_awaitable);
  // The permit was handed over by wake().
}

void AsyncSemaphore::release()
{
  ++m_free;
  wake();
}

void AsyncSemaphore::set_permits(int permits)
{
  m_free += permits - m_permits;
  m_permits = permits;
  wake();
}

void AsyncSemaphore::wake()
{
  while (m_free > 0 && !m_waiters.empty()) {
    --m_free;
    auto h = std::move(m_waiters.front());
    m_waiters.pop_front();
    asio::post(m_ex, [h = std::move(h)]() mutable { std::move(h)(); });
  }
}

} // namespace klingd::engine
