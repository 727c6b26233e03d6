// The job model shared by klingd and klingctl: states, error codes, the
// legal transitions between states, and job/batch identifiers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace klingd::common {

// Lower-case names are part of the API (docs/contract.md §2); never rename.
enum class JobState { queued, submitting, generating, downloading, completed, failed, canceled };

std::string_view to_string(JobState state);
std::optional<JobState> parse_job_state(std::string_view text);
// completed, failed and canceled.
bool is_terminal(JobState state);
// Whether the engine may move a job from `from` to `to` (the state table of
// ARCHITECTURE.md). Retry moves terminal failed/canceled jobs back.
bool is_legal_transition(JobState from, JobState to);

// `step` values (docs/contract.md §2): the job's own (`jobs.step`, only `reconciling`) and its
// history rows'. Lower-case names are part of the API.
enum class JobStep {
  reconciling, // submitting: an ambiguous create is being settled through the request log
  url_refresh, // downloading: the video URL expired and a fresh one was polled (history only)
  retry,       // queued: a create not accepted is sent again later (history only)
};
std::string_view to_string(JobStep step);
std::optional<JobStep> parse_job_step(std::string_view text);

// error.code values users see (docs/contract.md §2). Stable names.
enum class ErrorCode {
  invalid_request,
  provider_failed,
  timeout,
  ambiguous_create,
  download_failed,
  retries_exhausted,
  internal,
};

std::string_view to_string(ErrorCode code);
std::optional<ErrorCode> parse_error_code(std::string_view text);

// What became of one create attempt (create_attempts.outcome). `pending` and `ambiguous`
// are unsettled: the provider may have accepted (and billed) the create; every other value
// is a settlement, written at most once per attempt (JobStore::settle_attempt).
enum class AttemptOutcome {
  pending,              // recorded before the request's first byte; the answer is not known yet
  accepted,             // 2xx with a generation id
  rejected,             // 4xx: the request itself was refused
  not_sent,             // provably never reached the provider (or put back before sending)
  transient,            // 429/502/503: provably not accepted, sent again later
  account,              // 401/402/403: the account, not the job; put back
  ambiguous,            // may have been accepted: being settled through the request log
  reconciled_succeeded, // the log shows it succeeded: the generation is adopted
  reconciled_accepted,  // the log names a generation that failed later: adopted, polled
  reconciled_failed,    // the log shows it failed without a generation: nothing billed
  reconciled_absent,    // the log caught up past it without a row: it never arrived
  unresolved,           // still unknown when reconcile.window_s ran out (on_ambiguous_create)
};
std::string_view to_string(AttemptOutcome outcome);
std::optional<AttemptOutcome> parse_attempt_outcome(std::string_view text);
// pending or ambiguous: the attempt may still turn out to have been billed.
bool is_unsettled(AttemptOutcome outcome);

// A new identifier: 26 characters of Crockford base32 (ULID layout: 48-bit
// millisecond time, then 80 random bits), so text order is creation order.
// Strictly increasing within this process even inside one millisecond.
std::string make_id();

// Checks a user-supplied `output` path: relative, no `..` or `.` segments,
// no empty segments, no NUL/control characters, no backslashes, ends in .mp4,
// at most 255 bytes per segment and 1024 in all. Returns the reason or empty.
std::string check_output_path(std::string_view path);

} // namespace klingd::common
