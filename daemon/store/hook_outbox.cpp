#include "daemon/store/hook_outbox.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace klingd::store {

namespace {

constexpr const char* k_columns =
  "id, scope, subject, kind, event_seq, job_id, state, status, attempts, next_at, created_at, finished_at, last_error";

HookRow read_row(Query& st)
{
  HookRow r;
  r.id = st.int64(0);
  r.scope = st.text(1);
  r.subject = st.text(2);
  r.kind = st.text(3);
  r.event_seq = st.int64(4);
  r.job_id = st.text(5);
  auto state = common::parse_job_state(st.text(6));
  if (!state) {
    throw std::runtime_error(fmt::format("store: hook_outbox row {} has an unknown state", r.id));
  }
  r.state = *state;
  r.status = st.text(7);
  r.attempts = static_cast<int>(st.int64(8));
  r.next_at = st.text(9);
  r.created_at = st.text(10);
  r.finished_at = st.opt_text(11);
  r.last_error = st.opt_text(12);
  return r;
}

void insert(Db& db, std::string_view scope, std::string_view subject, std::string_view kind, std::string_view job_id,
            common::JobState state, std::int64_t seq, const std::string& now)
{
  auto st = db.prepare("INSERT OR IGNORE INTO hook_outbox (scope, subject, kind, event_seq, job_id, state, next_at, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, scope).bind(2, subject).bind(3, kind).bind(4, seq).bind(5, job_id);
  st.bind(6, common::to_string(state)).bind(7, now).bind(8, now);
  st.run();
}

} // namespace

void owe_hooks(Db& db, const HookPolicy& policy, std::string_view job_id, std::string_view batch,
               common::JobState state, std::int64_t seq, const std::string& now)
{
  if (policy.job_command) insert(db, "job", job_id, "command", job_id, state, seq, now);
  if (policy.job_webhook) insert(db, "job", job_id, "webhook", job_id, state, seq, now);
  if (!policy.batch_command && !policy.batch_webhook) {
    return;
  }
  // The batch has ended when none of its jobs is unfinished (index jobs_batch_state).
  auto open = db.prepare("SELECT EXISTS (SELECT 1 FROM jobs WHERE batch = ? AND state IN "
                         "('queued','submitting','generating','downloading'))");
  open.bind(1, batch);
  open.step();
  if (open.int64(0) != 0) {
    return;
  }
  if (policy.batch_command) insert(db, "batch", batch, "command", job_id, state, seq, now);
  if (policy.batch_webhook) insert(db, "batch", batch, "webhook", job_id, state, seq, now);
}

std::vector<HookRow> due_hooks(Db& db, const std::string& now, std::size_t limit,
                               const std::vector<std::int64_t>& busy)
{
  auto st = db.prepare(fmt::format(
    "SELECT {} FROM hook_outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?", k_columns));
  st.bind(1, now).bind(2, static_cast<std::int64_t>(limit + busy.size()));
  std::vector<HookRow> out;
  while (st.step() && out.size() < limit) {
    auto row = read_row(st);
    if (std::find(busy.begin(), busy.end(), row.id) == busy.end()) {
      out.push_back(std::move(row));
    }
  }
  return out;
}

std::optional<std::string> next_hook_due(Db& db)
{
  auto st = db.prepare("SELECT min(next_at) FROM hook_outbox WHERE status = 'pending'");
  st.step();
  return st.opt_text(0);
}

void hook_retry_later(Db& db, std::int64_t id, int attempts, const std::string& next_at, const std::string& error)
{
  auto st = db.prepare("UPDATE hook_outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ? "
                       "AND status = 'pending'");
  st.bind(1, static_cast<std::int64_t>(attempts)).bind(2, next_at).bind(3, error).bind(4, id);
  st.run();
}

void hook_settled(Db& db, std::int64_t id, std::string_view status, int attempts,
                  const std::optional<std::string>& error, const std::string& now)
{
  auto st = db.prepare("UPDATE hook_outbox SET status = ?, attempts = ?, last_error = ?, finished_at = ? "
                       "WHERE id = ? AND status = 'pending'");
  st.bind(1, status).bind(2, static_cast<std::int64_t>(attempts)).bind(3, error).bind(4, now).bind(5, id);
  st.run();
}

std::vector<HookRow> hooks_of_job(Db& db, std::string_view job_id)
{
  auto st = db.prepare(fmt::format("SELECT {} FROM hook_outbox WHERE job_id = ? ORDER BY id", k_columns));
  st.bind(1, job_id);
  std::vector<HookRow> out;
  while (st.step()) {
    out.push_back(read_row(st));
  }
  return out;
}

} // namespace klingd::store
