// Configuration (docs/contract.md §4.4): one JSON file with comments and trailing commas,
// every key optional, environment overrides, systemd directories, the API key.
#pragma once

#include "common/result.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace klingd::common {

// on_ambiguous_create (docs/contract.md §3.2): what an ambiguous create that the request log
// could not settle within reconcile.window_s becomes.
enum class AmbiguousCreate {
  fail,  // the job fails with ambiguous_create; sent again only when the user retries it
  retry, // sent again (it may be billed twice)
};
std::string_view to_string(AmbiguousCreate policy);

// The API key. Formatting or printing it shows "<redacted>"; only the
// provider client reads value().
class Secret
{
public:
  Secret() = default;
  explicit Secret(std::string v) : m_value(std::move(v)) {}
  const std::string& value() const { return m_value; }
  bool empty() const { return m_value.empty(); }
  // Where it came from ("file /x", "credential aimlapi_key", "environment AIMLAPI_KEY"), never the key itself.
  std::string source;

private:
  std::string m_value;
};

struct Config
{
  struct Provider
  {
    std::string base_url = "https://api.aimlapi.com";
    // Accept an http:// base_url (the key then travels in clear text): a local fake only.
    bool allow_http = false;
    std::string api_key_file;
    std::string ca_file;
    double request_timeout_s = 30;
    int max_in_flight = 10;
    double creates_per_minute = 20;
    // How often GET /v2/billing is asked for the balance (status, /metrics, the dashboard, and
    // dispatch held before a create whose expected cost exceeds it). 0: never.
    double balance_check_s = 60;
    // The `provider` routing field (kling|klingai|fal|auto) set on requests for models that
    // take it when the request itself does not; empty: not sent (the provider then uses auto).
    std::string route;
  } provider;
  struct Poll
  {
    double initial_s = 15;
    double factor = 1.5;
    double max_s = 60;
    double jitter = 0.1;
    double slow_after_s = 1800;
    double slow_s = 180;
    // Learn each model's generation time from finished jobs and poll near the expected end
    // (docs/contract.md §3.3); false: the schedule above only.
    bool learn = true;
  } poll;
  struct Retry
  {
    int max_attempts = 8;
    double base_s = 2;
    double max_s = 300;
    // A create answered plain 429 (rate limit, not the account) is retried without counting
    // against max_attempts, but a job held back by 429s for longer than this fails
    // retries_exhausted.
    double rate_limited_max_s = 3600;
  } retry;
  struct Download
  {
    std::uint64_t max_bytes = 2ULL << 30;
    double timeout_s = 900;
    bool allow_http = false;
    int max_concurrent = 4;
  } download;
  struct Store
  {
    std::string state_dir;
    std::string db;
    std::string videos_dir;
    std::string synchronous = "full";
    // Write `<name>.json` (the job's metadata) beside each MP4, durable with it (docs/contract.md §4.6).
    bool sidecar = false;
    // Days a terminal job is kept after it finished; nullopt: forever (the default).
    // What pruning removes is in docs/operations.md, "Retention".
    struct Retention
    {
      std::optional<double> completed_days;
      std::optional<double> failed_days;
      std::optional<double> canceled_days;
      bool any() const { return completed_days || failed_days || canceled_days; }
    } retention;
  } store;
  struct Socket
  {
    std::string path;
    unsigned mode = 0660;
    std::uint64_t max_body_bytes = 64ULL << 20;
    // Connections kept open at once (lowered to fit RLIMIT_NOFILE; docs/security.md).
    std::size_t max_connections = 1024;
  } socket;
  AmbiguousCreate on_ambiguous_create = AmbiguousCreate::fail;
  std::string models_file; // empty: the catalog built into the binary
  bool allow_unknown_models = false;
  struct Log
  {
    std::string level = "info";
  } log;
  struct Dashboard
  {
    std::string listen; // empty: off
    // Connections kept open at once; a quarter of them may be waiting for the token check.
    std::size_t max_connections = 64;
  } dashboard;
  struct Budget
  {
    double max_usd_per_day = 0; // 0: no daily budget
  } budget;
  struct Reconcile
  {
    double window_s = 900;
    // Proof of absence (docs/contract.md §3.2): once the request log holds a row created after
    // an attempt's send time + provider.request_timeout_s + absence_slack_s, and none carries
    // the attempt's client request id, the create never arrived and is re-sent at once.
    bool absence_proof = true;
    double absence_slack_s = 30;
  } reconcile;
  struct Shutdown
  {
    double grace_s = 10;
  } shutdown;
  // Completion hooks (docs/contract.md §4.7): a command (argv, no shell) and/or a signed webhook
  // when a job ends (completed, failed, canceled) and when every job of a batch has ended.
  struct Hook
  {
    std::vector<std::string> command; // empty: none
    std::string webhook_url;          // empty: none
    bool any() const { return !command.empty() || !webhook_url.empty(); }
  };
  struct Hooks
  {
    Hook on_job_done;
    Hook on_batch_done;
    // The HMAC-SHA256 key of X-Klingd-Signature: the file's content (trailing newline dropped)
    // or `secret` itself. Required when a webhook is set; never logged or shown.
    std::string secret_file;
    std::string secret;
    double command_timeout_s = 60;
    double webhook_timeout_s = 10;
    int max_attempts = 5;       // deliveries tried before the hook is recorded failed
    double backoff_s = 5;       // first pause between attempts, doubling
    double backoff_max_s = 600; // longest pause
    std::size_t output_max_bytes = 4096; // a command's stdout and stderr kept (each) for the log
  } hooks;

  Secret api_key;
  std::string source; // the file it was read from, or "(defaults)"
};

// The process environment as the config sees it (tests pass their own).
using Environment = std::map<std::string, std::string>;
Environment current_environment();

// Reads `path` (empty: no file, defaults only), applies environment overrides
// and directory defaults, validates every value and loads the API key.
// Errors name the file and the key, e.g. "config /etc/klingd.jsonc: poll.factor: must be ≥ 1".
// A missing key file named by provider.api_key_file is an error; no key at all is not
// (the daemon starts paused).
Result<Config> load_config(const std::string& path, const Environment& env);

// Parses config text (for tests); `origin` names it in errors.
Result<Config> parse_config(std::string_view text, std::string_view origin, const Environment& env);

// The effective configuration as JSONC-compatible JSON text, the key redacted.
std::string to_json_text(const Config& config);

// The socket path klingd uses when socket.path is not set: KLINGD_SOCKET, else
// $RUNTIME_DIRECTORY/klingd.sock (systemd), else $XDG_RUNTIME_DIR/klingd.sock,
// else /run/klingd/klingd.sock.
std::string default_socket_path(const Environment& env);

// Where klingctl looks when --socket is not given, in order: KLINGD_SOCKET alone if
// set; else $XDG_RUNTIME_DIR/klingd.sock (a user's own daemon) and
// /run/klingd/klingd.sock (the system service). It uses the first that exists.
std::vector<std::string> client_socket_candidates(const Environment& env);

} // namespace klingd::common
