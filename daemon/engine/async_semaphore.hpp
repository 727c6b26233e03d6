// AsyncSemaphore: bounds concurrent polls/downloads without threads. Waiters
// are resumed in FIFO order on the loop thread.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <deque>

namespace klingd::engine {

class AsyncSemaphore
{
public:
  AsyncSemaphore(boost::asio::any_io_executor ex, int permits) : m_ex(std::move(ex)), m_permits(permits), m_free(permits) {}

  // Waits for a permit. Pair with release(), or use Permit.
  boost::asio::awaitable<void> acquire();
  void release();
  // Changes the number of permits (a reload); waiters are woken if it grew.
  void set_permits(int permits);
  int in_use() const { return m_permits - m_free; }

  // Releases its permit when it goes out of scope.
  class Permit
  {
  public:
    explicit Permit(AsyncSemaphore& s) : m_s(&s) {}
    Permit(Permit&& o) noexcept : m_s(o.m_s) { o.m_s = nullptr; }
    ~Permit()
    {
      if (m_s) {
        m_s->release();
      }
    }
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    Permit& operator=(Permit&&) = delete;

  private:
    AsyncSemaphore* m_s;
  };

private:
  void wake();

  boost::asio::any_io_executor m_ex;
  int m_permits;
  int m_free;
  std::deque<boost::asio::any_completion_handler<void()>> m_waiters;
};

} // namespace klingd::engine
