// Pure timing rules of the engine: retry backoff, poll intervals, the
// create-rate window. No I/O, so unit tests can pin them exactly.
#pragma once

#include "common/config.hpp"

#include <chrono>
#include <deque>
#include <optional>
#include <random>

namespace klingd::engine {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Delay before retry number `failures` (1 = first retry): base·2^(failures-1)
// capped at max, then "equal jitter" (uniform in [d/2, d]) so many jobs that
// failed together do not come back together. A Retry-After from the server
// wins when it is longer.
Millis retry_delay(const common::Config::Retry& retry, int failures, std::optional<Millis> retry_after, std::mt19937_64& rng);

// Poll timing for one job (docs/contract.md §3.3): first after initial_s, then growing by
// factor up to max_s, each ±jitter; after slow_after_s of generating, slow_s.
// With an expected end (learned generation times, `expect`): the first poll at the usual
// earliest end lo_s, then every step_s() until hi_s + step_s(), then growing from step_s() as
// above. step_s() is half of hi_s − lo_s (about three looks for most generations), within
// [initial_s / 8, initial_s].
class PollSchedule
{
public:
  explicit PollSchedule(const common::Config::Poll& poll) : m_poll(poll) {}
  void expect(double lo_s, double hi_s);
  bool expecting() const { return m_lo_s >= 0; }
  // The delay before the next poll, given how long the job has been generating.
  Millis next(Clock::duration generating_for, std::mt19937_64& rng);
  // The un-jittered interval the next call would use (for tests).
  double base_interval_s() const { return m_interval_s; }
  // The short interval near the expected end (initial_s without an expectation).
  double step_s() const;

private:
  common::Config::Poll m_poll;
  double m_interval_s = -1; // -1: the first poll has not been scheduled
  double m_lo_s = -1;       // -1: no expected end
  double m_hi_s = -1;
};

// Applies ±jitter (a fraction) to seconds → milliseconds.
Millis jittered(double seconds, double jitter, std::mt19937_64& rng);

// At most `per_minute` create calls in any 60-second window. For a
// fractional rate the calls are spaced evenly (e.g. 0.5/min → one per 120 s).
class RateWindow
{
public:
  explicit RateWindow(double per_minute) { set_rate(per_minute); }
  void set_rate(double per_minute);
  // When the next call may start (now or later).
  Clock::time_point next_slot(Clock::time_point now) const;
  // Records a call starting at `now` (call only when next_slot(now) <= now).
  void record(Clock::time_point now);
  // Holds every call back until `until` (a 429 slows the whole host).
  void hold_until(Clock::time_point until) { m_hold = std::max(m_hold, until); }

private:
  std::size_t m_capacity = 1;
  Clock::duration m_window{};
  std::deque<Clock::time_point> m_starts;
  Clock::time_point m_hold{};
};

} // namespace klingd::engine
