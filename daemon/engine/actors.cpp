#include "daemon/engine/actors.hpp"

#include "common/log.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

namespace klingd::engine {

namespace asio = boost::asio;
using common::JobState;
using store::Job;

void set_in_flight(Core& core, Actor& a, bool on)
{
  if (a.in_flight != on) {
    a.in_flight = on;
    core.in_flight += on ? 1 : -1;
    core.metrics.in_flight().Set(core.in_flight);
    if (!on) {
      core.dispatch_wake.notify();
    }
  }
}

void unclaim(Core& core, Actor& a)
{
  if (a.claimed) {
    a.claimed = false;
    core.claims.remove(a.batch, a.expected_cost);
  }
}

bool ActorSet::spawn(Job job, bool resumed)
{
  if (m_actors.contains(job.id) || !m_core.claim(job.id, Owner::actor)) {
    log::error("job.second_owner_refused", {{"job", job.id}, {"wanted", "actor"}});
    return false;
  }
  auto actor = std::make_unique<Actor>();
  actor->id = job.id;
  actor->spread_first_poll = resumed;
  if (job.state == JobState::queued || job.state == JobState::generating) {
    // Counted from the moment it is picked, so the dispatcher never overshoots.
    set_in_flight(m_core, *actor, true);
  }
  Actor& a = *actor;
  m_actors.emplace(job.id, std::move(actor));
  const std::string id = job.id;
  asio::co_spawn(m_core.ex, run(std::make_unique<Job>(std::move(job))),
                 asio::bind_cancellation_slot(a.cancel.slot(), [this, id](std::exception_ptr e) { finished(id, e); }));
  return true;
}

Actor* ActorSet::find(const std::string& id)
{
  auto it = m_actors.find(id);
  return it == m_actors.end() ? nullptr : it->second.get();
}

void ActorSet::count_phases(EngineStatus& s) const
{
  for (const auto& [id, a] : m_actors) {
    switch (a->phase) {
    case Actor::Phase::creating: ++s.submitting; break;
    case Actor::Phase::polling: ++s.generating; break;
    case Actor::Phase::downloading: ++s.downloading; break;
    case Actor::Phase::idle: break;
    }
  }
}

void ActorSet::stop_all_but_creating()
{
  for (auto& [id, a] : m_actors) {
    if (a->phase != Actor::Phase::creating) {
      a->cancel.emit(asio::cancellation_type::terminal);
    }
  }
}

// Drives one job until it is terminal, back in the queue, handed to the reconciler, or the
// engine stops. Each step says what happened; only a step that moved the job on to the next
// state lets the actor continue, with the job as the store has it now.
//
// This frame lives as long as the job is active, so it holds the row on the heap, not inline
// (a store::Job is large), and lets go of it while the job is polled: a generating job waits
// holding only what its next poll needs (PollJob, in the poller's frame).
asio::awaitable<void> ActorSet::run(std::unique_ptr<Job> job)
{
  const std::string id = job->id;
  JobState state = job->state;
  for (;;) {
    Actor* a = find(id);
    if (!a || m_core.stopping) {
      co_return;
    }
    bool next = false;
    switch (state) {
    case JobState::queued: {
      // Waits for a create slot here, in this small frame (the job stays `queued` meanwhile).
      co_await m_core.create_slots.acquire();
      next = co_await m_create.run(*job, *a, AsyncSemaphore::Permit(m_core.create_slots)) == CreateEnd::accepted;
      a->just_accepted = next;
      m_core.create_settled(); // its create slot is free again
      break;
    }
    case JobState::generating: {
      auto polls = m_poller.run(*job, *a); // copies what the polls need
      job.reset();
      next = co_await std::move(polls) == PollEnd::video_ready;
      break;
    }
    case JobState::downloading:
      if (co_await start_download(*job, *a) == DownloadEnd::completed && on_completed) {
        on_completed(*job);
      }
      break;
    default:
      break;
    }
    if (!next || !(job = moved_on(id, state))) {
      co_return;
    }
    state = job->state;
  }
}

// Not a coroutine: DownloadStep::run takes its copy of the row here, not in run()'s frame.
asio::awaitable<DownloadEnd> ActorSet::start_download(const Job& job, Actor& a)
{
  return m_download.run(job, a);
}

// Not a coroutine: GCC keeps every local of a coroutine in its frame, and a store::Job is large.
std::unique_ptr<Job> ActorSet::moved_on(const std::string& id, JobState was)
{
  auto fresh = m_core.store.get(id);
  if (!fresh || fresh->state == was) {
    return nullptr;
  }
  return std::make_unique<Job>(std::move(*fresh));
}

void ActorSet::finished(const std::string& id, std::exception_ptr e)
{
  bool failed = false;
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const boost::system::system_error& ex) {
      if (ex.code() != asio::error::operation_aborted) {
        log::error("job.actor_failed", {{"job", id}, {"error", ex.what()}});
        failed = true;
      }
    } catch (const std::exception& ex) {
      log::error("job.actor_failed", {{"job", id}, {"error", ex.what()}});
      failed = true;
    }
  }
  auto it = m_actors.find(id);
  if (it == m_actors.end()) {
    return;
  }
  Actor& a = *it->second;
  if (a.unflushed_polls) {
    m_orphan_polls[id] += a.unflushed_polls;
  }
  unclaim(m_core, a);
  set_in_flight(m_core, a, false);
  if (a.user_canceled && !m_core.stopping) {
    // A canceled download leaves no partial file behind.
    if (auto job = m_core.store.get(id); job && job->state == JobState::canceled) {
      DownloadStep::remove_parts(m_core.config, *job);
    }
  }
  m_actors.erase(it);
  m_core.release(id, Owner::actor);
  if (failed && !m_core.stopping && m_core.recover) {
    m_core.recover(id);
  } else if (!e && m_core.recover_succeeded) {
    m_core.recover_succeeded(id);
  }
  m_core.dispatch_wake.notify();
}

asio::awaitable<void> ActorSet::flush_step()
{
  co_await m_core.sleep(std::chrono::seconds(5));
  co_await flush_polls();
}

// Poll counters are flushed lazily (docs/contract.md §3.1), a few seconds at a time.
asio::awaitable<void> ActorSet::flush_polls()
{
  std::vector<std::pair<std::string, std::int64_t>> dirty;
  for (auto& [id, a] : m_actors) {
    if (a->unflushed_polls) {
      dirty.emplace_back(id, std::exchange(a->unflushed_polls, 0));
    }
  }
  for (auto& [id, n] : m_orphan_polls) {
    dirty.emplace_back(id, n);
  }
  m_orphan_polls.clear();
  if (dirty.empty()) {
    co_return;
  }
  try {
    co_await m_core.committer.run([&](store::JobStore& s) {
      for (const auto& [id, n] : dirty) {
        s.add_polls(id, n);
      }
    });
  } catch (const std::exception&) {
    for (const auto& [id, n] : dirty) {
      m_orphan_polls[id] += n; // counted again at the next flush
    }
    throw;
  }
}

} // namespace klingd::engine
