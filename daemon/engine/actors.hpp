// ActorSet: the running jobs. spawn() gives a job an actor coroutine (and makes the actor
// its owner; a job that has an owner gets none), which drives the job step by step —
// CreateStep, Poller, DownloadStep — each returning what happened, while the actor decides
// what runs next. Also the lazily flushed poll counters (docs/contract.md §3.1).
#pragma once

#include "daemon/engine/actor.hpp"
#include "daemon/engine/create_step.hpp"
#include "daemon/engine/download_step.hpp"
#include "daemon/engine/poller.hpp"

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace klingd::engine {

struct EngineStatus;

class ActorSet
{
public:
  ActorSet(Core& core, CreateStep& create, Poller& poller, DownloadStep& download)
    : m_core(core), m_create(create), m_poller(poller), m_download(download)
  {
  }

  // Starts an actor for `job`; false when the job has an owner already. `resumed`: picked up
  // at start (its first poll is spread over one interval).
  bool spawn(store::Job job, bool resumed);
  Actor* find(const std::string& id);
  bool empty() const { return m_actors.empty(); }
  std::size_t size() const { return m_actors.size(); }
  void count_phases(EngineStatus& s) const;
  // Cancels every actor not in a create call (shutdown: polls and downloads resume after a
  // restart; a create in flight is let finish, since cutting it would make it ambiguous).
  void stop_all_but_creating();

  // Called when a job completed (the cost collector looks its cost up).
  std::function<void(const store::Job&)> on_completed;

  boost::asio::awaitable<void> flush_step();
  boost::asio::awaitable<void> flush_polls();

private:
  boost::asio::awaitable<void> run(std::unique_ptr<store::Job> job);
  // The job as the store has it now, if a step moved it on from `was`; else null.
  boost::asio::awaitable<DownloadEnd> start_download(const store::Job& job, Actor& a);
  std::unique_ptr<store::Job> moved_on(const std::string& id, common::JobState was);
  void finished(const std::string& id, std::exception_ptr e);

  Core& m_core;
  CreateStep& m_create;
  Poller& m_poller;
  DownloadStep& m_download;
  std::unordered_map<std::string, std::unique_ptr<Actor>> m_actors;
  std::unordered_map<std::string, std::int64_t> m_orphan_polls; // polls of finished actors, not yet written
};

} // namespace klingd::engine
