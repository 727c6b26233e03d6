// Every knob of the fake provider: start-up flags and the runtime POST /__admin/config share
// one table, so a flag `--queued-s 0.3` and `{"queued_s": 0.3}` always mean the same thing.
#pragma once

#include <boost/json/value.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fake {

// The kinds of traffic faults are configured for (billing: GET /v2/billing and
// GET /v2/billing/transactions).
enum class EndpointKind { create, poll, download, logs, billing };
inline constexpr std::size_t k_endpoint_kinds = 5;

enum class FaultType {
  none,
  error_500,
  error_502,
  error_503,
  error_504,
  error_500_after_create, // create recorded and billed, then answered 500 (ambiguous)
  error_504_after_create,
  rate_limit,                // 429 with Retry-After
  rate_limit_no_retry_after, // 429 without it
  rate_limit_account,        // 429 whose message speaks of balance/credits (an account problem, as
                             // upstream Kling reports arrears and empty resource packs)
  reset,                     // connection reset before any response (create not recorded)
  reset_after_create,        // create recorded and billed, then the connection is reset
  slow,                      // answered normally after slow_delay_s
  malformed_json,            // 200 with a body that is not valid JSON
  garbage_status,            // poll: status field holds an undocumented value
  not_found,                 // poll: a spurious 404 for an id that exists
  truncated,                 // download: connection closed half-way through the body
  expired_url,               // download: answered as if the signed URL had expired
  lost,                      // create: never reaches the API: RST after slow_delay_s, no record, no log row
  failed_status,             // poll: answered as a failed generation, whatever its phase
};

std::string_view to_string(EndpointKind kind);
std::optional<EndpointKind> endpoint_kind_from(std::string_view name);
std::string_view to_string(FaultType type);
std::optional<FaultType> fault_type_from(std::string_view name);
// Which faults make sense for which endpoint (e.g. `truncated` only for downloads).
bool fault_allowed(EndpointKind kind, FaultType type);

struct ScriptStep {
  EndpointKind kind = EndpointKind::create;
  FaultType fault = FaultType::none;
  int count = 1;
};

struct FakeConfig {
  std::string api_key = "test-key";
  std::uint64_t seed = 1;

  // Status progression (seconds, fractions allowed).
  double queued_s = 0.5;
  double generating_s = 1.5;
  std::string status_style = "modern"; // modern: queued/generating; legacy: waiting/active/processing
  double failure_rate = 0.0;
  std::string failure_style = "error"; // error: {name,message}; detail: {detail:[...]}; mixed
  std::string failure_status = "error"; // the terminal status word of a failed generation
  int completed_without_url_polls = 0;  // polls answering `completed` with video null first
  std::string id_shape = "rotate"; // uuid | nanoid | uuid_model | numeric | rotate
  int unknown_id_status = 404;
  bool status_code_as_string = false; // error bodies with "statusCode": "404"
  bool strict_fields = false;         // reject fields the model does not document
  bool credits_exhausted = false;     // creates answer 403 (out of credits)

  // Routing (the `provider` field) and the status body.
  std::string auto_route = "kling";   // where `auto` (or no provider field) is served: kling | fal
  std::string status_provider_field = "provider"; // provider | meta.provider | none: where the status names the route
  bool meta_usage = true;             // completed status carries meta.usage.{credits_used, usd_spent}

  // Money: the ledger behind GET /v2/billing and /v2/billing/transactions.
  double balance_usd = 1000000.0;     // the opening balance (an INIT row); tests of the balance set it low
  bool enforce_balance = false;       // creates costing more than the balance answer 403
  double charge_factor = 1.0;         // actual charge (ledger, meta.usage) = list price x this
  double refund_rate = 0.0;           // share of completed generations refunded in full (a REFUND row)
  bool billing_enabled = true;        // false: the billing endpoints answer 404
  std::string account_429_message =
    "Insufficient balance: not enough credits for this request (top up or buy a resource pack)";

  // Video URLs and bytes.
  double url_ttl_s = 3600.0;
  double fal_url_ttl_s = 86400.0; // fal-served videos: unsigned URLs, valid this long after completion
  int expired_url_status = 403;
  int bad_signature_status = 403;
  std::uint64_t video_bytes = 0; // 0: natural size (base MP4 + id box)

  // Tracing, cost and logs.
  bool create_cost_headers = true;
  bool poll_cost_headers = false;
  double credits_per_usd = 2000000.0;
  std::map<std::string, double, std::less<>> prices; // USD per second of video, per model
  // Generation time per model (seconds; else generating_s), plus generating_per_video_s for each
  // second of video asked, each spread by ±generating_jitter (a fraction, fixed per generation).
  std::map<std::string, double, std::less<>> generating_s_by_model;
  double generating_per_video_s = 0.0;
  double generating_jitter = 0.0;
  bool logs_enabled = true;
  double logs_delay_s = 0.0;
  int logs_rate_limit = 200; // requests per 60 s
  bool log_polls = false;

  // Fault behaviour.
  std::array<std::map<FaultType, double>, k_endpoint_kinds> fault_rates;
  double slow_delay_s = 2.0;
  double retry_after_s = 1.0;

  // Connections.
  double idle_timeout_s = 300.0;
  double io_timeout_s = 60.0;
  std::uint64_t max_body_bytes = 32ull << 20;
};

// Applies the keys of `patch` to `config`; `script` (if present) receives new script steps.
// Returns an error message naming the offending key, or an empty string.
std::string apply_config(FakeConfig& config, const boost::json::object& patch,
                         std::optional<std::vector<ScriptStep>>& script);

boost::json::object config_to_json(const FakeConfig& config);

// Parses "kind.fault=value" (used by --fault, --script and the JSON forms).
std::string parse_fault_spec(std::string_view spec, EndpointKind& kind, FaultType& type,
                             double& value);

} // namespace fake
