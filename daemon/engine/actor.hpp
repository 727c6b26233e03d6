// One running job: what the engine knows about a job while its actor coroutine drives it
// through create, polls and download (actors.hpp runs it; the steps take it by reference).
#pragma once

#include "daemon/engine/core.hpp"

#include <boost/asio/cancellation_signal.hpp>

#include <cstdint>
#include <string>

namespace klingd::engine {

struct Actor
{
  enum class Phase { creating, polling, downloading, idle };
  std::string id;
  Phase phase = Phase::idle;
  bool in_flight = false;         // counts against provider.max_in_flight
  bool claimed = false;           // picked from the queue, not yet `submitting` in the store
  bool user_canceled = false;
  bool spread_first_poll = false; // resumed at start: spread the first poll
  bool just_accepted = false;     // its create was accepted in this run: polls see the whole wait
  double expected_cost = 0;       // estimate made at dispatch (budgets)
  std::string batch;              // for the per-batch budget while claimed
  std::int64_t unflushed_polls = 0;
  boost::asio::cancellation_signal cancel;
};

// Counts (or stops counting) the actor against provider.max_in_flight.
void set_in_flight(Core& core, Actor& a, bool on);
// The job is `submitting` in the store now (or never will be): the store's spend figures
// count it from here, so the dispatcher's claim on the budgets ends.
void unclaim(Core& core, Actor& a);

} // namespace klingd::engine
