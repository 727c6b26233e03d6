#include "daemon/engine/reconciler.hpp"

#include "common/log.hpp"
#include "daemon/store/group_commit.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>

namespace klingd::engine {

namespace asio = boost::asio;
using common::AttemptOutcome;
using common::JobState;
using store::Job;
using store::JobError;
using store::JobStore;
using store::JobUpdate;

namespace {
// Pages read per scan at most (100 rows each): a window is read to its start unless it holds
// more than this; then the round decides only on rows it found (no absence proof).
constexpr int k_max_pages = 50;

JobUpdate reconciling_step()
{
  JobUpdate u;
  u.step = std::optional<std::string>(common::to_string(common::JobStep::reconciling));
  return u;
}
} // namespace

void Reconciler::add(const Job& job, int attempt, SysTime sent)
{
  if (!m_core.transfer(job.id, Owner::actor, Owner::reconciler) && !m_core.claim(job.id, Owner::reconciler)
      && m_core.owner(job.id) != Owner::reconciler) {
    log::error("job.second_owner_refused", {{"job", job.id}, {"wanted", "reconciler"}});
    return;
  }
  Pending p;
  p.job_id = job.id;
  p.attempt = attempt;
  p.client_request_id = fmt::format("{}.{}", job.id, attempt);
  p.model = job.model;
  p.sent = sent;
  p.next_check = Clock::now() + log_lookup_delay(m_core.config, 0);
  m_pending[job.id] = std::move(p);
  m_core.reconcile_wake.notify();
}

asio::awaitable<void> Reconciler::take_over(const Job& job, int attempt, SysTime sent, const provider::CreateResult* r,
                                            std::string why)
{
  if (m_core.config.reconcile.window_s <= 0) {
    co_await apply_policy(job.id, attempt, r, why);
    co_return;
  }
  auto done = co_await m_core.settle_create(job.id, attempt, AttemptOutcome::ambiguous, r, [&](JobStore& s) {
    // A job canceled while its create was out stays canceled; the settlement still follows.
    return s.update(job.id, JobState::submitting, reconciling_step(), std::string(common::to_string(common::JobStep::reconciling)),
                    make_job_error(common::ErrorCode::ambiguous_create, why, r ? r->outcome.http_status : std::nullopt));
  });
  if (!done.settled) {
    co_return;
  }
  log::warning("job.reconciling", {{"job", job.id}, {"attempt", attempt}, {"reason", why}});
  add(job, attempt, sent);
}

asio::awaitable<void> Reconciler::settle_interrupted(const Job& job, std::string reason)
{
  const auto last = m_core.store.last_attempt(job.id);
  const auto outcome = last ? common::parse_attempt_outcome(last->outcome) : std::nullopt;
  if (!last || !outcome || !common::is_unsettled(*outcome)) {
    // No create was in flight: back to the queue.
    co_await m_core.committer.run([&](JobStore& s) {
      JobUpdate u;
      u.step = std::optional<std::string>{};
      s.transition(job.id, JobState::submitting, JobState::queued, u);
    });
    co_return;
  }
  const auto sent = parse_rfc3339(last->started_at).value_or(now_utc());
  if (m_core.config.reconcile.window_s <= 0) {
    co_await apply_policy(job.id, last->attempt, nullptr, reason);
    co_return;
  }
  if (*outcome == AttemptOutcome::ambiguous && job.step == common::to_string(common::JobStep::reconciling)) {
    add(job, last->attempt, sent); // already being reconciled before: go on where it was
    co_return;
  }
  auto done = co_await m_core.settle_create(job.id, last->attempt, AttemptOutcome::ambiguous, nullptr, [&](JobStore& s) {
    return s.update(job.id, JobState::submitting, reconciling_step(), std::string(common::to_string(common::JobStep::reconciling)),
                    make_job_error(common::ErrorCode::ambiguous_create, reason));
  });
  if (done.settled) {
    add(job, last->attempt, sent);
  }
}

asio::awaitable<void> Reconciler::settle_canceled(const Job& job)
{
  if (job.state != JobState::canceled || m_pending.contains(job.id)) {
    co_return;
  }
  const auto last = m_core.store.last_attempt(job.id);
  const auto outcome = last ? common::parse_attempt_outcome(last->outcome) : std::nullopt;
  if (!last || !outcome || !common::is_unsettled(*outcome) || last->attempt != job.attempts) {
    co_return;
  }
  if (m_core.config.reconcile.window_s <= 0) {
    co_await apply_policy(job.id, last->attempt, nullptr, "canceled while its create was unsettled");
    co_return;
  }
  log::info("job.reconciling", {{"job", job.id}, {"attempt", last->attempt}, {"state", "canceled"}});
  add(job, last->attempt, parse_rfc3339(last->started_at).value_or(now_utc()));
}

asio::awaitable<void> Reconciler::step()
{
  const auto now = Clock::now();
  Clock::time_point next;
  std::vector<std::string> due = due_now(m_pending, now, next);
  if (due.empty()) {
    co_await m_core.reconcile_wake.wait(next - now);
    co_return;
  }
  co_await round(std::move(due));
}

// One look at the log for every due attempt: few queries, well under the provider's 200 requests
// per minute. An attempt's row can only be in [send − margin, send + request timeout + margin]
// (it is written when the request reaches the provider; the margin, reconcile.absence_slack_s and at
// least 1 s, absorbs delays and clock skew), so only those windows are read: attempts whose windows
// touch share one scan (their models at once), and the rest of the log — other jobs' creates and
// every poll, thousands of rows on a busy account — is never paged through.
asio::awaitable<void> Reconciler::round(std::vector<std::string> due)
{
  const auto& rc = m_core.config.reconcile;
  const auto span = [](double s) {
    return std::chrono::duration_cast<SysTime::duration>(std::chrono::duration<double>(s));
  };
  // Proof of absence: the log must show a row created after this bound and none of ours.
  const auto arrival_bound = span(m_core.config.provider.request_timeout_s + rc.absence_slack_s);
  const auto margin = span(std::max(rc.absence_slack_s, 1.0));
  const auto window_end = span(m_core.config.provider.request_timeout_s) + margin;
  std::sort(due.begin(), due.end(),
            [&](const std::string& a, const std::string& b) { return m_pending.at(a).sent < m_pending.at(b).sent; });
  std::optional<SysTime> earliest_bound; // of attempts whose absence could be proven now
  for (const auto& id : due) {
    const auto& p = m_pending.at(id);
    if (rc.absence_proof && now_utc() >= p.sent + arrival_bound) {
      earliest_bound = std::min(earliest_bound.value_or(p.sent + arrival_bound), p.sent + arrival_bound);
    }
  }
  // How far the log has caught up, asked BEFORE the rows are read: whatever the log showed by
  // then, the scans below see too.
  std::optional<SysTime> caught_up;
  if (earliest_bound) {
    caught_up = co_await m_scanner.newest_since(*earliest_bound);
  }

  std::unordered_map<std::string, std::string> by_crid; // client request id → job id
  std::unordered_map<std::string, provider::LogRow> found;
  std::unordered_set<std::string> read_whole; // crids whose window was read to its start
  for (std::size_t first = 0; first < due.size();) {
    // One cluster: attempts whose windows overlap, in send order.
    std::size_t last = first;
    SysTime cluster_end = m_pending.at(due[first]).sent + window_end;
    while (last + 1 < due.size() && m_pending.at(due[last + 1]).sent - margin <= cluster_end) {
      ++last;
      cluster_end = m_pending.at(due[last]).sent + window_end;
    }
    std::vector<std::string> models;
    std::unordered_set<std::string> wanted;
    for (std::size_t i = first; i <= last; ++i) {
      const auto& p = m_pending.at(due[i]);
      by_crid[p.client_request_id] = due[i];
      wanted.insert(p.client_request_id);
      if (std::find(models.begin(), models.end(), p.model) == models.end()) {
        models.push_back(p.model);
      }
    }
    std::size_t hits = 0;
    const auto scan = co_await m_scanner.scan(
      m_pending.at(due[first]).sent - margin, std::min(cluster_end, now_utc() + margin), models,
      [&](provider::LogRow& row) {
        if (row.client_request_id && wanted.contains(*row.client_request_id) && !found.contains(*row.client_request_id)) {
          found.emplace(*row.client_request_id, std::move(row));
          ++hits;
        }
        return hits == wanted.size();
      },
      k_max_pages);
    if (scan.ok && scan.complete) {
      read_whole.insert(wanted.begin(), wanted.end());
    }
    first = last + 1;
  }

  for (const auto& [crid, id] : by_crid) {
    auto it = m_pending.find(id);
    if (it == m_pending.end()) {
      continue;
    }
    Pending p = it->second;
    auto row = found.find(crid);
    Verdict v = Verdict::wait;
    if (row != found.end() && row->second.inference_id
        && (row->second.status == "succeeded" || row->second.status == "failed")) {
      // A row that names a generation means the create was accepted, whatever became of the
      // generation since (a `failed` row may be a generation that failed after it was
      // accepted): poll it and let its own status decide. Re-sending here could pay twice.
      v = Verdict::adopt;
    } else if (row != found.end() && row->second.status == "failed") {
      v = Verdict::never_billed;
    } else if (row == found.end() && read_whole.contains(crid) && caught_up && *caught_up >= p.sent + arrival_bound) {
      v = Verdict::never_billed; // proof of absence
    } else if (std::chrono::duration<double>(now_utc() - p.sent).count() >= rc.window_s) {
      v = Verdict::expired;
    }
    if (v == Verdict::wait) {
      it->second.next_check = Clock::now() + log_lookup_delay(m_core.config, ++it->second.checks);
      continue;
    }
    m_pending.erase(it);
    co_await m_core.guarded(p.job_id, settle(p, v, row == found.end() ? nullptr : &row->second));
    m_core.release(p.job_id, Owner::reconciler);
  }
  m_core.dispatch_wake.notify();
}

asio::awaitable<void> Reconciler::settle(const Pending& p, Verdict v, const provider::LogRow* row)
{
  switch (v) {
  case Verdict::adopt:
    co_await adopt(p, *row);
    break;
  case Verdict::never_billed:
    if (row) {
      co_await resend(p, AttemptOutcome::reconciled_failed, "logged as failed by the provider");
    } else {
      co_await resend(p, AttemptOutcome::reconciled_absent, "never reached the provider (absent from its request log)");
    }
    break;
  case Verdict::expired:
    co_await expire(p);
    break;
  case Verdict::wait:
    break;
  }
}

asio::awaitable<void> Reconciler::adopt(const Pending& p, const provider::LogRow& row)
{
  JobUpdate u;
  u.generation_id = *row.inference_id;
  u.provider_status = "queued";
  u.accepted_at = now_text();
  u.step = std::optional<std::string>{};
  u.error = std::optional<JobError>{};
  u.step_failures = 0;
  if (row.usd && *row.usd > 0) u.cost_usd = *row.usd;
  if (row.credits && *row.credits > 0) u.cost_credits = *row.credits;
  provider::CreateResult found;
  found.generation_id = row.inference_id;
  found.inference_id = row.inference_id;
  const auto outcome = row.status == "succeeded" ? AttemptOutcome::reconciled_succeeded : AttemptOutcome::reconciled_accepted;
  auto done = co_await m_core.settle_create(p.job_id, p.attempt, outcome, &found, [&](JobStore& s) {
    if (s.transition(p.job_id, JobState::submitting, JobState::generating, u)) {
      return true;
    }
    // Canceled meanwhile: keep the generation we paid for, so a retry polls it.
    u.step.reset();
    u.error.reset();
    s.update(p.job_id, JobState::canceled, u);
    return false;
  });
  if (!done.settled) {
    co_return;
  }
  log::info("job.reconciled", {{"job", p.job_id}, {"attempt", p.attempt}, {"outcome", "adopted"},
                               {"row_status", row.status}, {"generation", *row.inference_id}, {"canceled", !done.moved}});
  if (done.moved) {
    m_core.release(p.job_id, Owner::reconciler);
    if (auto job = m_core.store.get(p.job_id)) {
      m_core.start_actor(std::move(*job), false);
    }
  }
}

// Nothing was accepted or billed: the create may be sent again (a canceled job stays canceled).
asio::awaitable<void> Reconciler::resend(const Pending& p, AttemptOutcome outcome, std::string why)
{
  auto job = m_core.store.get(p.job_id);
  if (!job) {
    co_return;
  }
  const int failures = job->step_failures + 1;
  if (failures >= m_core.config.retry.max_attempts) {
    co_await m_core.fail_create(p.job_id, p.attempt, outcome, nullptr, common::ErrorCode::retries_exhausted,
                                fmt::format("create failed {} times (the last one {})", failures, why));
    co_return;
  }
  auto done = co_await m_core.settle_create(p.job_id, p.attempt, outcome, nullptr, [&](JobStore& s) {
    JobUpdate u;
    u.step = std::optional<std::string>{};
    u.error = std::optional<JobError>{};
    u.step_failures = failures;
    return s.transition(p.job_id, JobState::submitting, JobState::queued, u);
  });
  if (done.settled) {
    log::info("job.reconciled", {{"job", p.job_id}, {"attempt", p.attempt}, {"outcome", common::to_string(outcome)},
                                 {"resend", done.moved}});
  }
}

asio::awaitable<void> Reconciler::expire(const Pending& p)
{
  co_await apply_policy(p.job_id, p.attempt, nullptr,
                        fmt::format("no trace of the create in the provider's request log after {}s",
                                    m_core.config.reconcile.window_s));
}

// Still unknown: on_ambiguous_create decides. "fail" (default) never sends it again unless the
// user asks; "retry" re-sends. A canceled job only gets the settlement.
asio::awaitable<void> Reconciler::apply_policy(const std::string& job_id, int attempt, const provider::CreateResult* r,
                                               std::string why)
{
  if (m_core.config.on_ambiguous_create == common::AmbiguousCreate::retry) {
    auto job = m_core.store.get(job_id);
    const int failures = (job ? job->step_failures : 0) + 1;
    if (failures >= m_core.config.retry.max_attempts) {
      co_await m_core.fail_create(job_id, attempt, AttemptOutcome::unresolved, r, common::ErrorCode::retries_exhausted,
                                  fmt::format("create outcome unknown {} times; last: {}", failures, why));
      co_return;
    }
    auto done = co_await m_core.settle_create(job_id, attempt, AttemptOutcome::unresolved, r, [&](JobStore& s) {
      JobUpdate u;
      u.step_failures = failures;
      u.step = std::optional<std::string>{};
      return s.transition(job_id, JobState::submitting, JobState::queued, u);
    });
    if (done.moved) {
      m_core.not_before[job_id] = Clock::now() + retry_delay(m_core.config.retry, failures, std::nullopt, m_core.rng);
      log::warning("job.create_ambiguous_resend", {{"job", job_id}, {"attempt", attempt}, {"reason", why}});
      m_core.dispatch_wake.notify();
    }
    co_return;
  }
  co_await m_core.fail_create(job_id, attempt, AttemptOutcome::unresolved, r, common::ErrorCode::ambiguous_create,
                              fmt::format("the create call's outcome is unknown ({}); it was not sent again so this "
                                          "video is never paid twice — `klingctl retry {}` sends it again",
                                          why, job_id));
}

} // namespace klingd::engine
