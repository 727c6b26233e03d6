// Poller: status polls of one generating job (docs/contract.md §3.3) — its own timer (first
// poll after poll.initial_s, growing to poll.max_s, slow mode), polls are not attempts, a 404
// counts as lost only after several in a row spread over minutes, and the job fails
// `timeout` only after one last look at or after its deadline.
#pragma once

#include "daemon/engine/actor.hpp"

namespace klingd::engine {

enum class PollEnd {
  video_ready, // `downloading` now: download it
  failed,      // the provider failed it, lost it, or the deadline passed after a last look
};              // (a cancel or the engine stopping ends the actor with operation_aborted)

// What polling a generating job needs of its row: a waiting poller keeps this, not the whole
// store::Job (its request JSON, labels, output, timestamps).
struct PollJob
{
  std::string id;
  std::string model;
  std::string generation_id;
  common::JobState state = common::JobState::generating;
  double timeout_s = 0;
  std::optional<SysTime> accepted_at; // wall clock
  std::int64_t video_s = 0;           // the learned-times key (with the model)
  std::string provider_status;        // as last stored
  bool has_cost_usd = false;          // the create's headers (or the log) gave a cost already
  bool has_cost_credits = false;
};

class Poller
{
public:
  explicit Poller(Core& core) : m_core(core) {}

  // Not a coroutine: it copies what the polls need out of `job` (PollJob), so the caller may
  // drop the row as soon as this returns, before awaiting the result.
  boost::asio::awaitable<PollEnd> run(const store::Job& job, Actor& a);

  // Commits `fn` together with the polls this job counted since the last write.
  boost::asio::awaitable<void> commit_with_polls(Actor& a, std::function<void(store::JobStore&)> fn);
  // One status poll for a URL refresh during a download (counted like any poll).
  boost::asio::awaitable<provider::PollResult> poll_for_url(const store::Job& job, Actor& a);

private:
  // What one poll leaves for the next: poll_loop keeps only this and the PollJob between polls,
  // so 10,000 generating jobs hold 10,000 small coroutine frames; poll_once's large frame (the
  // answer, the updates it commits) exists only once a poll slot is held (ARCHITECTURE.md,
  // "Memory").
  struct State;
  boost::asio::awaitable<PollEnd> poll_loop(PollJob job, Actor& a);
  void begin(PollJob& job, Actor& a, State& ps);
  std::int64_t video_seconds(const store::Job& job) const;
  std::optional<store::GenerationTime> generation_time(const PollJob& job, const State& ps) const;
  // One poll; `permit` is the poll slot the caller waited for (outside this large frame).
  boost::asio::awaitable<void> poll_once(const PollJob& job, Actor& a, Clock::time_point due, State& ps,
                                         AsyncSemaphore::Permit permit);
  boost::asio::awaitable<void> fail(const PollJob& job, Actor& a, common::ErrorCode code, std::string message,
                                    std::optional<int> http = std::nullopt);

  Core& m_core;
};

} // namespace klingd::engine
