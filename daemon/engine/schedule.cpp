#include "daemon/engine/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace klingd::engine {

Millis jittered(double seconds, double jitter, std::mt19937_64& rng)
{
  double s = seconds;
  if (jitter > 0) {
    std::uniform_real_distribution<double> spread(1.0 - jitter, 1.0 + jitter);
    s *= spread(rng);
  }
  return Millis(static_cast<std::int64_t>(std::max(0.0, s) * 1000.0));
}

Millis retry_delay(const common::Config::Retry& retry, int failures, std::optional<Millis> retry_after, std::mt19937_64& rng)
{
  const int n = std::clamp(failures, 1, 60);
  const double d = std::min(retry.max_s, retry.base_s * std::pow(2.0, n - 1));
  std::uniform_real_distribution<double> half(0.5, 1.0);
  Millis delay(static_cast<std::int64_t>(d * half(rng) * 1000.0));
  if (retry_after && *retry_after > delay) {
    delay = *retry_after;
  }
  return delay;
}

void PollSchedule::expect(double lo_s, double hi_s)
{
  m_lo_s = std::max(0.0, lo_s);
  m_hi_s = std::max(m_lo_s, hi_s);
}

double PollSchedule::step_s() const
{
  if (!expecting()) {
    return m_poll.initial_s;
  }
  return std::clamp((m_hi_s - m_lo_s) / 2, m_poll.initial_s / 8, m_poll.initial_s);
}

Millis PollSchedule::next(Clock::duration generating_for, std::mt19937_64& rng)
{
  const double t = std::chrono::duration<double>(generating_for).count();
  if (t >= m_poll.slow_after_s) {
    m_interval_s = m_poll.slow_s;
  } else if (expecting() && t < m_hi_s + step_s()) {
    const double step = step_s();
    m_interval_s = step;
    if (t + step < m_lo_s) {
      // Sleep through the part no generation of this kind has ended in; the spread only ever
      // makes the look earlier, never later than the usual earliest end.
      std::uniform_real_distribution<double> early(0.0, m_poll.jitter * step);
      return Millis(static_cast<std::int64_t>(std::max(0.0, m_lo_s - t - early(rng)) * 1000.0));
    }
  } else if (expecting()) {
    // Past the usual latest end: back off from the short step as without an expectation.
    m_interval_s = std::min(m_poll.max_s, std::max(m_interval_s, step_s()) * m_poll.factor);
  } else if (m_interval_s < 0) {
    m_interval_s = m_poll.initial_s;
  } else {
    m_interval_s = std::min(m_poll.max_s, m_interval_s * m_poll.factor);
  }
  return jittered(m_interval_s, m_poll.jitter, rng);
}

void RateWindow::set_rate(double per_minute)
{
  if (per_minute >= 1) {
    m_capacity = static_cast<std::size_t>(std::floor(per_minute));
    // N calls per (60·N/rate) seconds ≤ rate per minute, and ≤ N in any 60 s.
    m_window = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(60.0 * static_cast<double>(m_capacity) / per_minute));
  } else {
    m_capacity = 1;
    m_window = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(60.0 / per_minute));
  }
}

Clock::time_point RateWindow::next_slot(Clock::time_point now) const
{
  Clock::time_point slot = now;
  if (m_starts.size() >= m_capacity) {
    slot = std::max(slot, m_starts[m_starts.size() - m_capacity] + m_window);
  }
  return std::max(slot, m_hold);
}

void RateWindow::record(Clock::time_point now)
{
  m_starts.push_back(now);
  while (m_starts.size() > m_capacity) {
    m_starts.pop_front();
  }
}

} // namespace klingd::engine
