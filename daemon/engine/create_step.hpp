// CreateStep: one create call for a queued job (docs/contract.md §3.2). Marks the job
// `submitting` with a pending attempt row durably before the first byte is sent, sends it
// with X-Client-Request-Id `<job id>.<attempt>`, and settles the attempt with the job's next
// state in one commit. What may have been billed goes to the Reconciler.
#pragma once

#include "daemon/engine/actor.hpp"
#include "daemon/engine/reconciler.hpp"

namespace klingd::engine {

// What the create step did; the actor decides what runs next.
enum class CreateEnd {
  accepted,    // `generating` now: poll it
  not_started, // still (or again) `queued`: stopping, paused, canceled before sending
  requeued,    // provably not accepted: back in the queue, backing off
  canceled,    // canceled meanwhile (a generation it got is recorded on the job)
  reconciling, // may have been billed: the Reconciler owns the job now
  failed,      // refused by the provider, or retries exhausted
  paused,      // an account problem: dispatch is paused, the job is queued untouched
};

class CreateStep
{
public:
  CreateStep(Core& core, Reconciler& reconciler) : m_core(core), m_reconciler(reconciler) {}

  // `slot`: the create slot (Core::create_slots) the actor waited for; held until this returns.
  boost::asio::awaitable<CreateEnd> run(const store::Job& job, Actor& a, AsyncSemaphore::Permit slot);

private:
  boost::asio::awaitable<CreateEnd> handle(const store::Job& job, int attempt, SysTime sent, provider::CreateResult r);
  // Settles `attempt` as `outcome` and puts the job back in the queue (true when it moved).
  boost::asio::awaitable<bool> requeue(const store::Job& job, int attempt, common::AttemptOutcome outcome,
                                       const provider::CreateResult* r, store::JobUpdate u = {});

  Core& m_core;
  Reconciler& m_reconciler;
};

} // namespace klingd::engine
