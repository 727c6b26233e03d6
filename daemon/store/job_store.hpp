// JobStore: all SQL about jobs, their labels, events and create attempts.
// Methods run on the loop thread inside a transaction the caller opened
// (GroupCommitter batches them); nothing here commits by itself.
#pragma once

#include "common/job.hpp"
#include "common/result.hpp"
#include "daemon/store/hook_outbox.hpp"
#include "daemon/store/sqlite.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace klingd::store {

using common::ErrorCode;
using common::JobState;

struct JobError
{
  std::string code; // an ErrorCode name
  std::string message;
  std::optional<int> http_status;
};

struct Job
{
  std::string id;
  std::optional<std::string> key;
  std::string batch;
  JobState state = JobState::queued;
  std::optional<std::string> step;
  std::string model;
  std::string request; // JSON text
  std::string output;
  int priority = 0;
  double timeout_s = 86400;
  std::string labels = "{}"; // JSON text
  std::optional<std::string> generation_id;
  std::optional<std::string> provider_status;
  bool provider_failed = false;
  int attempts = 0;
  int step_failures = 0;
  std::int64_t polls = 0;
  std::optional<JobError> error;
  std::optional<std::string> video_url;
  std::optional<std::int64_t> video_file_size;
  std::optional<std::string> video_path;
  std::optional<std::int64_t> video_bytes;
  std::optional<std::string> video_sha256;
  std::optional<double> cost_usd;
  std::optional<std::int64_t> cost_credits;
  std::string created_at;
  std::string updated_at;
  std::optional<std::string> accepted_at;
  std::optional<std::string> finished_at;
  std::optional<std::string> route_asked;  // `provider` sent with the create (request's, else provider.route)
  std::optional<std::string> route_served; // who served it, as the completed status reports
  std::optional<double> refund_usd;        // refunded for its generation (the billing ledger)
};

struct NewJob
{
  std::optional<std::string> key;
  std::optional<std::string> output; // default "<id>.mp4"
  std::string model;
  std::string request; // normalised JSON text
  int priority = 0;
  double timeout_s = 86400;
  std::vector<std::pair<std::string, std::string>> labels;
};

struct InsertedJob
{
  std::string id;
  std::optional<std::string> key;
  JobState state;
  bool duplicate;
};

struct BatchInsert
{
  std::string batch;
  std::vector<InsertedJob> jobs;
};

// A problem with one job of a batch; `index` is its position in the request.
struct IndexError
{
  std::size_t index;
  std::string field;
  std::string message;
  bool claimed = false; // the output is another job's already (409 conflict, not invalid_spec)
};

struct ListFilter
{
  std::vector<JobState> states;                               // empty: any
  std::optional<std::string> batch;
  std::optional<std::pair<std::string, std::string>> label;   // name=value
  std::size_t limit = 100;
  std::optional<std::string> after;                           // cursor: list ids > after
};

struct JobList
{
  std::vector<Job> jobs;
  std::optional<std::string> next;
};

struct Event
{
  std::int64_t seq;
  std::string job_id;
  std::string batch;
  JobState state;
  std::optional<std::string> step;
  std::string at;
  std::optional<JobError> error;
};

// Column updates that travel with a state change; unset fields stay as they are.
struct JobUpdate
{
  std::optional<std::optional<std::string>> step;          // set (or clear with nullopt inside)
  std::optional<std::optional<JobError>> error;            // set or clear
  std::optional<std::string> generation_id;
  std::optional<std::string> provider_status;
  std::optional<bool> provider_failed;
  std::optional<int> step_failures;
  std::optional<std::string> video_url;
  std::optional<std::int64_t> video_file_size;
  std::optional<std::string> video_path;
  std::optional<std::int64_t> video_bytes;
  std::optional<std::string> video_sha256;
  std::optional<std::string> accepted_at;
  std::optional<double> cost_usd;
  std::optional<std::int64_t> cost_credits;
  std::optional<double> cost_estimate_usd;
  std::optional<std::string> route_asked;
  std::optional<std::string> route_served;
  std::optional<double> refund_usd;
  bool clear_video = false;       // forget url/size/result (retry)
  bool clear_generation = false;  // forget generation id (retry that must create anew)
};

struct GenerationTime
{
  std::string model;
  std::int64_t video_s = 0; // seconds of video asked (0: the request names none)
  double seconds = 0;       // from acceptance to completion
};

struct Attempt
{
  std::string job_id;
  int attempt;
  std::string client_request_id;
  std::string started_at;
  std::string outcome;
  std::optional<int> http_status;
  std::optional<std::string> generation_id;
  std::optional<std::string> inference_id;
  std::optional<std::int64_t> credits;
  std::optional<double> usd;
};

struct CostRow
{
  std::string key; // the day, model, batch or "name=value" label
  double usd = 0;
  std::int64_t credits = 0;
  std::int64_t jobs = 0;
};

struct CostSummary
{
  CostRow total;
  std::vector<CostRow> by_day, by_model, by_batch, by_label;
};

// What stays of a pruned job that had an idempotency key: enough to answer a
// re-submit with "duplicate" and the job's id and final state.
struct KeyTombstone
{
  std::string key;
  std::string job_id;
  std::string batch;
  JobState state = JobState::completed;
  std::optional<std::string> finished_at;
  std::string pruned_at;
};

// Retention cutoffs (RFC 3339): terminal jobs that finished before their state's
// cutoff are prunable; unset: that state is kept forever.
struct PruneCutoffs
{
  std::optional<std::string> completed;
  std::optional<std::string> failed;
  std::optional<std::string> canceled;
};

struct PruneStats
{
  std::int64_t jobs_deleted = 0;   // rows gone (events, labels, attempts with them)
  std::int64_t jobs_trimmed = 0;   // completed jobs whose MP4 is on disk: events gone, row kept
  std::int64_t events_deleted = 0;
  std::int64_t tombstones = 0;     // keys kept as tombstones
  std::optional<std::string> next; // resume after this id; unset: done
  PruneStats& operator+=(const PruneStats& o)
  {
    jobs_deleted += o.jobs_deleted;
    jobs_trimmed += o.jobs_trimmed;
    events_deleted += o.events_deleted;
    tombstones += o.tombstones;
    next = o.next;
    return *this;
  }
};

// One batch with its jobs counted by state (GET /v1/batches: the dashboard's progress bars).
struct BatchSummary
{
  std::string id;
  std::string created_at;
  std::vector<std::pair<JobState, std::int64_t>> counts; // only states that have jobs
};

class JobStore
{
public:
  explicit JobStore(Db& db);

  // Inserts a batch all-or-nothing (a savepoint inside the caller's transaction).
  // A job whose key exists already is not inserted: it is returned with
  // duplicate=true. Errors: keys or outputs repeated inside the batch, an
  // output already claimed by another job. `max_usd` is the batch's budget. An output with
  // braces is a template (common/placeholders.hpp), resolved here before the row is written.
  // `dry_run`: every check and the same answer, then the savepoint is rolled back (nothing stored).
  Result<BatchInsert, std::vector<IndexError>> insert_batch(const std::vector<NewJob>& jobs,
                                                            std::optional<double> max_usd = std::nullopt,
                                                            bool dry_run = false);

  std::optional<Job> get(std::string_view id);
  std::optional<Job> get_by_key(std::string_view key);
  // The job holding generation `generation_id` (the billing ledger names generations).
  std::optional<Job> get_by_generation(std::string_view generation_id);
  JobList list(const ListFilter& filter);
  // Every job not in a terminal state, oldest first (for resuming at start).
  std::vector<Job> active_jobs();
  // Queued jobs in dispatch order: priority desc, then oldest first.
  std::vector<Job> next_queued(std::size_t limit, const std::vector<std::string>& exclude_batches = {});

  // Moves job `id` from `from` to `to` with `update`, appending an event.
  // Returns false (and changes nothing) if the job is not in `from` — a
  // concurrent cancel won. Illegal transitions throw (a bug).
  bool transition(std::string_view id, JobState from, JobState to, const JobUpdate& update = {});
  // Updates columns without a state change. With `event_step`, appends a
  // history row for the current state (e.g. "reconciling", "url_refresh").
  bool update(std::string_view id, JobState expected, const JobUpdate& update,
              std::optional<std::string> event_step = std::nullopt, std::optional<JobError> event_error = std::nullopt);
  // Which completion hooks a terminal transition owes (hook_outbox rows written by transition()).
  void set_hook_policy(const HookPolicy& policy) { m_hooks = policy; }
  // The hook outbox (hook_outbox.hpp): what the hook runner and `GET /v1/jobs/{id}` read and settle.
  std::vector<HookRow> due_hooks(const std::string& now, std::size_t limit, const std::vector<std::int64_t>& busy)
  {
    return store::due_hooks(m_db, now, limit, busy);
  }
  std::optional<std::string> next_hook_due() { return store::next_hook_due(m_db); }
  void hook_retry_later(std::int64_t id, int attempts, const std::string& next_at, const std::string& error)
  {
    store::hook_retry_later(m_db, id, attempts, next_at, error);
  }
  void hook_settled(std::int64_t id, std::string_view status, int attempts, const std::optional<std::string>& error,
                    const std::string& now)
  {
    store::hook_settled(m_db, id, status, attempts, error, now);
  }
  std::vector<HookRow> hooks_of_job(std::string_view job_id) { return store::hooks_of_job(m_db, job_id); }
  // Appends a history row for the job's current state without changing it (a hook's outcome).
  bool append_note(std::string_view id, const std::string& step, const std::optional<JobError>& error);
  // Adds lazily counted polls (no event).
  void add_polls(std::string_view id, std::int64_t polls);

  // Starts create attempt N+1: bumps jobs.attempts and records a pending
  // attempt row. The job must be `submitting`. Returns the attempt number.
  int begin_attempt(std::string_view job_id, std::string_view client_request_id);
  void finish_attempt(const Attempt& attempt);
  std::vector<Attempt> attempts(std::string_view job_id);
  std::vector<Attempt> attempts_with_outcome(std::string_view outcome);
  // Settles attempt `a.attempt` of `a.job_id` with `a`'s outcome and figures, fenced: only
  // while it is the job's current attempt and still unsettled (pending or ambiguous). False,
  // and nothing written, when another settlement (or a newer attempt) came first.
  bool settle_attempt(const Attempt& a);
  // The job's current (highest-numbered) attempt, if it has any.
  std::optional<Attempt> last_attempt(std::string_view job_id);
  // Canceled jobs whose current attempt is still unsettled: the create may have been billed
  // and must be settled (at start) before a retry may send another.
  std::vector<Job> canceled_with_unsettled_attempt();

  // Known spend (jobs with a recorded cost), summed by day accepted, model, batch and label.
  CostSummary cost_summary();
  // Spend that counts against budgets: recorded cost, else the estimate made at
  // dispatch, of jobs accepted since `since` (RFC 3339) or still submitting.
  double spend_since(std::string_view since);
  // The same for one batch, all days; and the batch's own budget (max_usd), if any.
  double batch_spend(std::string_view batch);
  std::optional<double> batch_budget(std::string_view batch);
  // Recorded costs of recent jobs of `model` with this duration (JSON text of
  // request.duration, e.g. "5" or "\"5\""), newest first.
  std::vector<double> recent_costs(std::string_view model, std::string_view duration, int limit);

  // Completed jobs with a generation but no recorded cost, finished after `since`.
  std::vector<Job> completed_without_cost(std::string_view since);

  std::vector<std::pair<JobState, std::int64_t>> counts_by_state();
  std::vector<std::pair<JobState, std::int64_t>> batch_counts(std::string_view batch);
  bool batch_exists(std::string_view batch);
  // The `limit` newest batches, newest first.
  std::vector<BatchSummary> recent_batches(std::size_t limit);
  // Sizes of the database file and its write-ahead log (status, metrics).
  Db::FileSizes file_sizes() const;
  std::vector<Event> history(std::string_view job_id);
  std::vector<Event> events_since(std::int64_t seq, std::size_t limit);
  std::int64_t last_event_seq();

  // Retention (docs/operations.md, "Retention"): looks at up to `limit` prunable
  // jobs with ids after `after`, oldest first, and prunes them (counts only, with
  // `dry_run`). A job whose batch still has unfinished jobs is skipped (the
  // batch's budget counts its spend); a job whose video file exists keeps its row
  // and loses only its events; a deleted job's key becomes a tombstone.
  PruneStats prune(const PruneCutoffs& cutoffs, std::size_t limit, const std::optional<std::string>& after,
                   bool dry_run);
  std::optional<KeyTombstone> key_tombstone(std::string_view key);

  // Learned generation times (generation_times.cpp; docs/contract.md §3.3): one sample per
  // completed generation, the newest 64 kept per (model, seconds of video).
  void add_generation_time(const GenerationTime& t);
  // The newest `per_key` samples of every key, oldest first within a key.
  std::vector<GenerationTime> generation_times(std::size_t per_key);

  // Events appended since the last call (committed or not: the GroupCommitter
  // takes them after COMMIT and drops them after a rollback).
  std::vector<Event> take_pending_events();
  std::size_t pending_event_count() const { return m_pending.size(); }
  void drop_pending_events_from(std::size_t n) { m_pending.resize(std::min(n, m_pending.size())); }

private:
  // The connection: all SQL stays in the store (the committer's transactions, maintenance's
  // checkpoints).
  friend class GroupCommitter;
  friend class Maintenance;
  Db& db() { return m_db; }

  void append_event(const Job& job, JobState state, const std::optional<std::string>& step,
                    const std::optional<JobError>& error, const std::string& at);
  Job read_job(Query& st);

  Db& m_db;
  std::vector<Event> m_pending;
  HookPolicy m_hooks;
};

} // namespace klingd::store
