#include "common/job.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <random>

namespace klingd::common {

namespace {
constexpr std::array<std::string_view, 7> k_state_names = {
  "queued", "submitting", "generating", "downloading", "completed", "failed", "canceled"};
constexpr std::array<std::string_view, 7> k_error_names = {
  "invalid_request", "provider_failed", "timeout", "ambiguous_create", "download_failed", "retries_exhausted", "internal"};
constexpr std::array<std::string_view, 3> k_step_names = {"reconciling", "url_refresh", "retry"};
constexpr std::array<std::string_view, 12> k_outcome_names = {
  "pending", "accepted", "rejected", "not_sent", "transient", "account", "ambiguous", "reconciled_succeeded",
  "reconciled_accepted", "reconciled_failed", "reconciled_absent", "unresolved"};
} // namespace

std::string_view to_string(AttemptOutcome outcome) { return k_outcome_names[static_cast<int>(outcome)]; }

std::optional<AttemptOutcome> parse_attempt_outcome(std::string_view text)
{
  for (std::size_t i = 0; i < k_outcome_names.size(); ++i) {
    if (k_outcome_names[i] == text) {
      return static_cast<AttemptOutcome>(i);
    }
  }
  return std::nullopt;
}

bool is_unsettled(AttemptOutcome outcome)
{
  return outcome == AttemptOutcome::pending || outcome == AttemptOutcome::ambiguous;
}

std::string_view to_string(JobStep step) { return k_step_names[static_cast<int>(step)]; }

std::optional<JobStep> parse_job_step(std::string_view text)
{
  for (std::size_t i = 0; i < k_step_names.size(); ++i) {
    if (k_step_names[i] == text) {
      return static_cast<JobStep>(i);
    }
  }
  return std::nullopt;
}

std::string_view to_string(JobState state) { return k_state_names[static_cast<int>(state)]; }

std::optional<JobState> parse_job_state(std::string_view text)
{
  for (std::size_t i = 0; i < k_state_names.size(); ++i) {
    if (k_state_names[i] == text) {
      return static_cast<JobState>(i);
    }
  }
  return std::nullopt;
}

bool is_terminal(JobState s)
{
  return s == JobState::completed || s == JobState::failed || s == JobState::canceled;
}

bool is_legal_transition(JobState from, JobState to)
{
  using S = JobState;
  switch (from) {
  case S::queued:
    return to == S::submitting || to == S::canceled;
  case S::submitting:
    // back to queued: a create that provably did not reach the provider, or a
    // reconciled attempt that the provider's log shows as failed (not billed).
    return to == S::generating || to == S::queued || to == S::failed || to == S::canceled;
  case S::generating:
    return to == S::downloading || to == S::failed || to == S::canceled;
  case S::downloading:
    // An expired video URL is polled for again while the job stays downloading.
    return to == S::completed || to == S::failed || to == S::canceled;
  case S::completed:
    return false;
  case S::failed:
    // retry: create again, or resume polling a generation we already hold.
    return to == S::queued || to == S::generating;
  case S::canceled:
    // retry as for failed; or, while the create of the job's last attempt is still being
    // settled through the request log, back to `submitting` to wait for that settlement.
    return to == S::queued || to == S::generating || to == S::submitting;
  }
  return false;
}

std::string_view to_string(ErrorCode code) { return k_error_names[static_cast<int>(code)]; }

std::optional<ErrorCode> parse_error_code(std::string_view text)
{
  for (std::size_t i = 0; i < k_error_names.size(); ++i) {
    if (k_error_names[i] == text) {
      return static_cast<ErrorCode>(i);
    }
  }
  return std::nullopt;
}

std::string make_id()
{
  static constexpr char k_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  static std::mt19937_64 rng{std::random_device{}()};
  static std::uint64_t last_ms = 0;
  static std::uint64_t rand_hi = 0; // 16 bits used
  static std::uint64_t rand_lo = 0; // 64 bits used

  auto ms = static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (ms <= last_ms) {
    // Same millisecond (or the clock stepped back): keep the time part and
    // increment the random part so ids stay strictly increasing.
    ms = last_ms;
    if (++rand_lo == 0) {
      rand_hi = (rand_hi + 1) & 0xffff;
    }
  } else {
    last_ms = ms;
    rand_hi = rng() & 0xffff;
    rand_lo = rng() >> 1; // leave headroom for increments
  }

  // 128 bits: 48 time | 16 rand_hi | 64 rand_lo, written as 26 base32 digits (130 bits, top 2 zero).
  std::string out(26, '0');
  unsigned __int128 v = (static_cast<unsigned __int128>(ms & 0xffffffffffffULL) << 80)
                        | (static_cast<unsigned __int128>(rand_hi) << 64) | rand_lo;
  for (int i = 25; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = k_alphabet[static_cast<int>(v & 31)];
    v >>= 5;
  }
  return out;
}

std::string check_output_path(std::string_view path)
{
  if (path.empty()) {
    return "must not be empty";
  }
  if (path.size() > 1024) {
    return "is longer than 1024 bytes";
  }
  if (path.front() == '/') {
    return "must be a relative path under the videos directory";
  }
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) {
      return "contains a control character";
    }
    if (c == '\\') {
      return "contains a backslash";
    }
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t end = path.find('/', start);
    const std::string_view seg = path.substr(start, end == std::string_view::npos ? path.npos : end - start);
    if (seg.empty()) {
      return "contains an empty path segment";
    }
    if (seg == "." || seg == "..") {
      return "must not contain '.' or '..' segments";
    }
    if (seg.size() > 255) {
      return "has a path segment longer than 255 bytes";
    }
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  if (path.size() < 5 || path.substr(path.size() - 4) != ".mp4") {
    return "must end in .mp4";
  }
  return {};
}

} // namespace klingd::common
