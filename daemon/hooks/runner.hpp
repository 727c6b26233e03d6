// HookRunner: delivers the completion hooks the store owes (docs/contract.md §4.7). Durability
// rule (ARCHITECTURE.md "Hooks"): a hook is owed by a hook_outbox row written in the same
// transaction as the job's terminal transition (JobStore::transition); the runner reads due rows,
// runs the command / posts the webhook, and commits the outcome (delivered, or a later retry, or
// failed after hooks.max_attempts) with a history row on the job right after. A crash before
// that commit runs the hook again at the next start; one after it never does.
#pragma once

#include "common/config.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>

namespace klingd::store {
class JobStore;
class GroupCommitter;
} // namespace klingd::store

namespace klingd::hooks {

class HookRunner
{
public:
  // Sets the store's hook policy from `config` (which hooks a terminal transition owes).
  HookRunner(boost::asio::any_io_executor ex, const common::Config& config, store::JobStore& store,
             store::GroupCommitter& committer);
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  void start();
  // Rows may have been owed (a commit with terminal events): look now.
  void wake();
  void reconfigure(const common::Config& config);
  // No new deliveries; webhooks in flight are aborted (their rows stay pending).
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace klingd::hooks
