// What the fake remembers: generations and their time-driven status, the request log behind
// GET /v2/logs, and the counters /__admin/stats reports. Plain data, used on the loop thread.
#pragma once

#include "tests/fake_provider/fake_config.hpp"
#include "tests/fake_provider/fault_plan.hpp"
#include "tests/fake_provider/video.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace fake {

enum class Phase { queued, generating, completed, failed };

struct Generation {
  std::uint64_t serial = 0; // 1-based position in creation order; also the CDN path key
  std::string id;
  std::string model;
  bool legacy_family = false;
  std::string client_request_id;
  std::string request_id;
  double created_wall = 0;
  double created_mono = 0;
  // Timings and outcome are fixed at create, so later config changes never move a
  // generation that is already running.
  double queued_s = 0;
  double generating_s = 0;
  bool legacy_statuses = false;
  bool fails = false;
  bool detail_error = false;
  std::string failure_status;
  int no_url_polls_left = 0;
  bool reported_terminal = false;
  int duration = 5;
  double usd = 0;            // list price x duration (the create's cost headers)
  std::int64_t credits = 0;
  double charged_usd = 0;    // what the ledger and meta.usage show once completed (x charge_factor)
  std::int64_t charged_credits = 0;
  bool refunded = false;     // a REFUND row follows the charge
  std::string route_asked;   // the request's `provider` as sent ("" when absent)
  std::string served;        // who ran it: kling | fal
  std::uint64_t polls = 0;
  std::uint64_t downloads = 0;
  std::string url_token;
  std::shared_ptr<const VideoLayout> video;
  std::optional<std::string> sha256;
  bool sha_pending = false;

  Phase phase_at(double mono) const;
  // Wall-clock time the generation finished (its charge is recorded then).
  double finished_wall() const { return created_wall + queued_s + generating_s; }
  std::string status_word(Phase phase, double mono) const;
};

// A generation id in one of the provider's four shapes.
std::string make_generation_id(const std::string& shape, std::uint64_t seed, std::uint64_t serial,
                               std::string_view model);
std::string make_request_id(std::uint64_t seed, std::uint64_t ordinal);

struct LogRow {
  double created_wall = 0;
  double created_mono = 0;
  std::string model;
  std::string request_id;
  std::string client_request_id;
  Generation* generation = nullptr; // null: the request created nothing
  bool is_poll = false;
};

struct BodyCount {
  boost::json::value body;
  std::uint64_t calls = 0;
  std::uint64_t recorded = 0;
};

struct CallCount {
  std::uint64_t calls = 0;
  std::uint64_t recorded = 0;
};

// Everything POST /__admin/reset throws away.
struct State {
  std::vector<std::unique_ptr<Generation>> generations;
  std::unordered_map<std::string, Generation*> by_id;
  std::vector<LogRow> log_rows; // oldest first
  std::vector<BodyCount> bodies;
  std::unordered_map<std::string, std::size_t> body_index; // canonical JSON -> bodies index
  std::map<std::string, CallCount> by_job;                  // X-Client-Request-Id prefix
  std::map<std::string, CallCount> by_client_request_id;
  FaultPlan faults;

  std::uint64_t requests = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t create_calls = 0;
  std::uint64_t creates_recorded = 0;
  std::uint64_t creates_rejected = 0;
  std::uint64_t polls = 0;
  std::uint64_t polls_unknown = 0;
  std::uint64_t downloads = 0;
  std::uint64_t downloads_completed = 0;
  std::uint64_t downloads_rejected = 0;
  std::uint64_t bytes_served = 0;
  std::uint64_t logs_requests = 0;
  std::uint64_t logs_rate_limited = 0;
  std::uint64_t billing_requests = 0;

  // Client-side view of in-flight: created and not yet reported terminal by a poll.
  std::uint64_t in_flight = 0;
  std::uint64_t max_in_flight = 0;
  // Provider-side view: created and not yet finished by the clock.
  std::priority_queue<double, std::vector<double>, std::greater<>> finish_times;
  std::uint64_t max_generating = 0;
  std::deque<double> create_times; // last 60 s of create calls
  std::uint64_t creates_per_minute_peak = 0;
  std::deque<double> logs_times; // last 60 s of accepted logs requests
};

// Canonical JSON text (object keys sorted, recursively) used to group identical bodies.
std::string canonical_json(const boost::json::value& v);

} // namespace fake
