#include "daemon/engine/schedule.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace klingd;
using namespace klingd::engine;
using namespace std::chrono_literals;

TEST_CASE("schedule: retry delay grows exponentially, is capped, jittered, and honours Retry-After")
{
  common::Config::Retry r;
  r.base_s = 1;
  r.max_s = 10;
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200; ++i) {
    auto d1 = retry_delay(r, 1, std::nullopt, rng);
    CHECK(d1 >= 500ms);
    CHECK(d1 <= 1000ms);
    auto d3 = retry_delay(r, 3, std::nullopt, rng);
    CHECK(d3 >= 2000ms);
    CHECK(d3 <= 4000ms);
    auto d9 = retry_delay(r, 9, std::nullopt, rng);
    CHECK(d9 >= 5000ms);
    CHECK(d9 <= 10000ms);
  }
  CHECK(retry_delay(r, 1, Millis(30000), rng) == 30000ms); // server asks for longer: wins
  CHECK(retry_delay(r, 4, Millis(1), rng) >= 4000ms);      // shorter Retry-After: backoff wins
  // Jitter actually spreads: 100 draws are not all equal.
  std::set<std::int64_t> seen;
  for (int i = 0; i < 100; ++i) {
    seen.insert(retry_delay(r, 2, std::nullopt, rng).count());
  }
  CHECK(seen.size() > 10);
}

TEST_CASE("schedule: poll intervals start at initial_s, grow by factor to max_s, then slow_s")
{
  common::Config::Poll p;
  p.initial_s = 2;
  p.factor = 2;
  p.max_s = 10;
  p.jitter = 0;
  p.slow_after_s = 100;
  p.slow_s = 60;
  std::mt19937_64 rng(1);
  PollSchedule s(p);
  CHECK(s.next(0s, rng) == 2000ms);
  CHECK(s.next(2s, rng) == 4000ms);
  CHECK(s.next(6s, rng) == 8000ms);
  CHECK(s.next(14s, rng) == 10000ms);
  CHECK(s.next(24s, rng) == 10000ms);
  CHECK(s.next(100s, rng) == 60000ms);
  CHECK(s.next(5000s, rng) == 60000ms);
}

TEST_CASE("schedule: poll jitter stays within ±jitter")
{
  common::Config::Poll p;
  p.initial_s = 10;
  p.jitter = 0.2;
  std::mt19937_64 rng(7);
  std::int64_t lo = 1 << 30, hi = 0;
  for (int i = 0; i < 500; ++i) {
    PollSchedule s(p);
    auto d = s.next(0s, rng).count();
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  CHECK(lo >= 8000);
  CHECK(hi <= 12000);
  CHECK(hi - lo > 2000); // really spread
}

TEST_CASE("schedule: the create-rate window never allows more than the rate in any 60 s")
{
  auto t0 = Clock::time_point{} + 1000s;
  RateWindow w(3);
  auto now = t0;
  std::vector<Clock::time_point> starts;
  for (int i = 0; i < 12; ++i) {
    now = std::max(now, w.next_slot(now));
    w.record(now);
    starts.push_back(now);
  }
  for (std::size_t i = 0; i + 3 < starts.size(); ++i) {
    CHECK(starts[i + 3] - starts[i] >= 60s);
  }
  CHECK(starts[2] == t0); // a burst of 3 is allowed at once
  CHECK(starts[3] == t0 + 60s);

  RateWindow slow(0.5);
  now = t0;
  slow.record(now);
  CHECK(slow.next_slot(now) == t0 + 120s);

  RateWindow held(100);
  held.hold_until(t0 + 5s);
  CHECK(held.next_slot(t0) == t0 + 5s);
  CHECK(held.next_slot(t0 + 6s) == t0 + 6s);
}
