#include "daemon/notifier/notifier.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace klingd {

namespace asio = boost::asio;

Notifier::Notifier(asio::any_io_executor ex)
  : m_ex(ex), m_timer(std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max()))
{
}

void Notifier::notify()
{
  // Replacing the timer keeps later waiters off the one being cancelled.
  auto old = std::move(m_timer);
  m_timer = std::make_shared<asio::steady_timer>(m_ex, asio::steady_timer::time_point::max());
  old->cancel();
}

asio::awaitable<void> Notifier::wait(std::chrono::steady_clock::duration timeout)
{
  using namespace asio::experimental::awaitable_operators;
  auto timer = m_timer; // keep it alive across notify()
  asio::steady_timer deadline(m_ex, timeout);
  co_await (timer->async_wait(asio::as_tuple(asio::use_awaitable)) ||
            deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
}

} // namespace klingd
