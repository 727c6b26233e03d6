// Recovery: picks jobs up as the store has them — every non-terminal job at start
// (docs/contract.md §3.7), canceled jobs whose create is unsettled, and a job whose step
// failed because the store could not commit (disk full, I/O error). Such a job is left as the
// store has it, exactly what a crash at that moment would leave, and is picked up the way a
// restart picks it up after a pause growing from 1 s to 60 s (a queued job backs off as long).
#pragma once

#include "daemon/engine/actors.hpp"
#include "daemon/engine/reconciler.hpp"

#include <string>
#include <unordered_map>

namespace klingd::engine {

class Recovery
{
public:
  Recovery(Core& core, ActorSet& actors, Reconciler& reconciler) : m_core(core), m_actors(actors), m_reconciler(reconciler)
  {
  }

  // At start: resumes every job the store holds as active, and settles canceled ones' creates.
  boost::asio::awaitable<void> start();
  // The job's step failed: pick it up again later.
  void schedule(const std::string& id);
  void succeeded(const std::string& id) { m_failures.erase(id); }

private:
  // Picks a job up as the store has it: a queued (or terminal) job is left to the dispatcher,
  // a `submitting` one may have had its create sent (settled; `reason` says why it is in
  // doubt), a canceled one with an unsettled create is settled, any other gets an actor. True
  // when an actor was started.
  boost::asio::awaitable<bool> resume_job(store::Job job, std::string reason);
  boost::asio::awaitable<void> recover(std::string id, Millis delay);

  Core& m_core;
  ActorSet& m_actors;
  Reconciler& m_reconciler;
  std::unordered_map<std::string, int> m_failures; // jobs recovering from store failures
};

} // namespace klingd::engine
