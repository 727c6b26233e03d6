// klingctl's commands (docs/contract.md §4.2). Each returns the process exit code: 0 success;
// 1 a job failed or was canceled, or the daemon refused the request; 2 usage error;
// 3 daemon unreachable (thrown as CliExit and turned into the code by main).
#pragma once

#include "cli/http_client.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace klingd::cli {

inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_failed = 1;
inline constexpr int k_exit_usage = 2;
inline constexpr int k_exit_unreachable = 3;
inline constexpr int k_exit_confirm = 4; // submit: a large or over-budget batch without --yes

// Ends the command with `code` after printing `message` (if any) to stderr.
class CliExit : public std::runtime_error
{
public:
  CliExit(int code, const std::string& message) : std::runtime_error(message), code(code) {}
  int code;
};

struct Globals
{
  std::string socket; // empty: the usual places (client_socket_candidates)
  bool json = false;
};

// The connection to klingd plus the error handling every command shares.
class Session
{
public:
  explicit Session(const Globals& globals);

  bool json() const { return m_json; }

  // Sends a request. Unreachable daemon → CliExit(3) naming every path looked at.
  HttpResponse call(std::string_view method, std::string_view target, std::string_view body = {},
                    std::string_view content_type = "application/json");
  // As call(), and a non-2xx answer prints the daemon's error as it worded it (and,
  // with --json, its body on stdout) and throws CliExit(1). Returns the parsed body.
  boost::json::value call_ok(std::string_view method, std::string_view target, std::string_view body = {},
                             std::string_view content_type = "application/json",
                             const std::vector<std::size_t>* index_to_line = nullptr);
  // Streams GET `target` line by line (see HttpClient::stream_lines).
  void stream(std::string_view target, const std::function<bool(std::string_view)>& on_line);

private:
  HttpClient& client();
  std::vector<std::string> m_candidates;
  std::unique_ptr<HttpClient> m_client;
  bool m_json;
};

struct SubmitOptions
{
  std::string model;
  std::string prompt;
  std::vector<std::string> multi_prompt;
  std::string image;
  std::string tail_image;
  std::vector<std::string> images;
  std::optional<int> duration;
  std::string aspect_ratio;
  std::string negative_prompt;
  std::optional<double> cfg_scale;
  bool no_audio = false;
  std::string shot_type;
  std::string key;
  std::string output;
  std::optional<int> priority;
  std::vector<std::string> labels;
  bool wait = false;
  std::string file; // -f: one spec per line; "-" is stdin
  std::string csv;           // --csv: columns are spec fields
  std::string template_file; // --template: a spec with {column} placeholders …
  std::string vars;          // … filled from the rows of this CSV (--vars)
  std::optional<double> max_usd; // --max-usd: the batch's budget (with --csv/--template)
  bool dry_run = false;          // --dry-run: POST /v1/jobs?dry_run=1 only
  bool yes = false;              // --yes: skip the confirmation gate
  long long confirm_over = 100;  // --confirm-over: more new jobs than this need --yes
};

// A batch body built from a CSV (batch_submit.cpp), with each job's CSV line for error messages.
struct BatchBody
{
  std::string body; // {"jobs": [...], "max_usd"?}
  std::vector<std::size_t> index_to_line;
};
BatchBody build_csv_batch(Session& s, const SubmitOptions& o, const boost::json::object& defaults);
// POST /v1/jobs?dry_run=1 with the body a submit would send; the parsed answer.
boost::json::value dry_run(Session& s, const std::string& body, const std::string& content_type,
                           const std::vector<std::size_t>* index_to_line);
void print_dry_run(const boost::json::value& answer);
// Throws CliExit(4) when the dry run's batch needs --yes (more new jobs than --confirm-over, or
// an expected cost above its max_usd).
void confirm_gate(const boost::json::value& answer, const SubmitOptions& o);

int cmd_submit(Session& s, const SubmitOptions& o);

struct ListOptions
{
  std::string state;
  std::string batch;
  std::string label;
  int limit = 0; // 0: the daemon's default
  bool all = false;
};
int cmd_ls(Session& s, const ListOptions& o);
int cmd_show(Session& s, const std::string& id);
// Waits for `ids` (or every job of `batch`) to end; 1 if any failed or was canceled.
int cmd_wait(Session& s, const std::vector<std::string>& ids, const std::string& batch);
int cmd_cancel(Session& s, const std::string& id);
int cmd_retry(Session& s, const std::string& id);
// retry/cancel --batch: POST /v1/batches/{id}/retry|cancel with states and labels (bulk.cpp).
struct BulkOptions
{
  std::string batch;
  std::vector<std::string> states; // retry: failed/canceled; empty: the action's default
  std::vector<std::string> labels; // NAME=VALUE, all must match
  bool dry_run = false;
};
int cmd_bulk(Session& s, std::string_view action, const BulkOptions& o);
int cmd_watch(Session& s, std::optional<long long> since);
int cmd_status(Session& s);
int cmd_pause(Session& s, const std::string& reason);
int cmd_resume(Session& s);
// POST /v1/prune: what store.retention lets go, now (or only counted, with dry_run).
int cmd_prune(Session& s, bool dry_run);
struct ModelsOptions
{
  bool check = false;       // compare with the provider's GET /v1/models?include=pricing
  std::string pricing_file; // compare with this saved answer instead (no network, no key)
};
int cmd_models(Session& s, const ModelsOptions& options = {});
// models --check: the drift between klingd's catalog (`catalog`, its GET /v1/models answer)
// and the provider's price list; exit 1 when there is any (models_check.cpp).
int check_models(Session& s, const boost::json::value& catalog, const ModelsOptions& options);
// Prints the dashboard's URL (with its token); 1 when dashboard.listen is not set.
int cmd_dashboard(Session& s);
// klingctl cost: spend by day, model, batch and label.
int cmd_cost(Session& s);

// Builds the request object of `submit` from its flags (reading local images).
// Throws CliExit(2) on bad flag values.
boost::json::object build_request(const SubmitOptions& o);

// A job spec line of `submit -f`: a line without "request" is the request itself.
boost::json::object spec_from_line(const boost::json::value& line);

// "%" escapes for a path segment or query value.
std::string url_encode(std::string_view s);

} // namespace klingd::cli
