#include "daemon/engine/generation_times.hpp"
#include "daemon/engine/schedule.hpp"

#include <doctest/doctest.h>

#include <limits>
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

TEST_CASE("schedule: with an expected end the first poll is at its usual earliest end, then short steps, then back-off")
{
  common::Config::Poll p;
  p.initial_s = 15;
  p.factor = 2;
  p.max_s = 60;
  p.jitter = 0;
  std::mt19937_64 rng(1);
  PollSchedule s(p);
  s.expect(100, 120); // step: (120 − 100) / 2 = 10 s
  CHECK(s.step_s() == doctest::Approx(10));
  CHECK(s.next(0s, rng) == 100000ms); // sleep through what no such generation has ended in
  CHECK(s.next(100s, rng) == 10000ms);
  CHECK(s.next(120s, rng) == 10000ms);
  CHECK(s.next(130s, rng) == 20000ms); // past hi + step: grows from the step by factor
  CHECK(s.next(150s, rng) == 40000ms);
  CHECK(s.next(190s, rng) == 60000ms);

  PollSchedule tight(p);
  tight.expect(60, 60.4); // the step stays within [initial_s / 8, initial_s]
  CHECK(tight.step_s() == doctest::Approx(15.0 / 8));
  PollSchedule wide(p);
  wide.expect(60, 600);
  CHECK(wide.step_s() == doctest::Approx(15));

  p.jitter = 0.2; // the spread only brings the first look earlier
  PollSchedule j(p);
  j.expect(100, 120);
  for (int i = 0; i < 50; ++i) {
    const auto d = j.next(0s, rng);
    CHECK(d <= 100000ms);
    CHECK(d >= 98000ms); // at most jitter × step earlier
  }
}

TEST_CASE("schedule: learned generation times give the 10th to 90th percentile, per model and video length")
{
  GenerationTimes t;
  t.add("m", 5, 100);
  t.add("m", 5, 110);
  CHECK_FALSE(t.profile("m", 5)); // fewer than k_min_samples
  t.add("m", 5, 120);
  auto p = t.profile("m", 5);
  REQUIRE(p);
  CHECK(p->lo_s == doctest::Approx(102));
  CHECK(p->hi_s == doctest::Approx(118));
  CHECK_FALSE(t.profile("m", 10));
  CHECK_FALSE(t.profile("other", 5));
  for (int i = 0; i < 40; ++i) {
    t.add("m", 5, 300); // the newest k_samples count: a provider that slowed down is followed
  }
  p = t.profile("m", 5);
  REQUIRE(p);
  CHECK(p->lo_s == doctest::Approx(300));
  CHECK(p->samples == GenerationTimes::k_samples);
  t.add("m", 5, -1); // nonsense is ignored
  t.add("m", 5, std::numeric_limits<double>::quiet_NaN());
  CHECK(t.profile("m", 5)->samples == GenerationTimes::k_samples);
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
