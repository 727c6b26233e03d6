// The hook outbox (migrations/0006_hooks.sql, docs/contract.md §4.7): which completion hooks are
// owed, written by JobStore::transition in the transaction of the terminal transition itself,
// and read and settled by the hook runner (daemon/hooks/). SQL only; callers hold the
// transaction (GroupCommitter) as with JobStore.
#pragma once

#include "common/job.hpp"
#include "daemon/store/sqlite.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::store {

// Which hooks are configured: a terminal transition owes one row per true flag.
struct HookPolicy
{
  bool job_command = false;
  bool job_webhook = false;
  bool batch_command = false;
  bool batch_webhook = false;
  bool any() const { return job_command || job_webhook || batch_command || batch_webhook; }
};

struct HookRow
{
  std::int64_t id = 0;
  std::string scope;   // "job" | "batch"
  std::string subject; // job id | batch id
  std::string kind;    // "command" | "webhook"
  std::int64_t event_seq = 0;
  std::string job_id;
  common::JobState state = common::JobState::completed;
  std::string status;  // "pending" | "delivered" | "failed"
  int attempts = 0;
  std::string next_at;
  std::string created_at;
  std::optional<std::string> finished_at;
  std::optional<std::string> last_error;
};

// Called for a transition of `job_id` (batch `batch`) into terminal `state`, event `seq`.
void owe_hooks(Db& db, const HookPolicy& policy, std::string_view job_id, std::string_view batch,
               common::JobState state, std::int64_t seq, const std::string& now);

// Pending rows due at `now`, oldest first, skipping ids in `busy`.
std::vector<HookRow> due_hooks(Db& db, const std::string& now, std::size_t limit,
                               const std::vector<std::int64_t>& busy);
// The earliest next_at of a pending row, if any.
std::optional<std::string> next_hook_due(Db& db);
// One attempt failed; try again at `next_at`.
void hook_retry_later(Db& db, std::int64_t id, int attempts, const std::string& next_at, const std::string& error);
// Settled for good: "delivered" or "failed".
void hook_settled(Db& db, std::int64_t id, std::string_view status, int attempts,
                  const std::optional<std::string>& error, const std::string& now);
// Every row owed by transitions of `job_id`, oldest first (klingctl show).
std::vector<HookRow> hooks_of_job(Db& db, std::string_view job_id);

} // namespace klingd::store
