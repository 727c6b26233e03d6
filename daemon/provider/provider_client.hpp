// ProviderClient: the AI/ML API's video endpoints as klingd uses them —
// create and status for both endpoint families, with every outcome classified
// the way docs/contract.md §3.2 and §3.4 need (who may retry, what is ambiguous, what is
// the account's fault). Parsing and classification are pure functions.
#pragma once

#include "common/catalog.hpp"
#include "common/result.hpp"
#include "daemon/provider/http_client.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace klingd::provider {

// How a create or poll call ended.
enum class CallClass {
  ok,          // 2xx with a usable body
  safe_retry,  // provably not accepted: nothing sent, 429, 502, 503 — retry
  ambiguous,   // create only: sent, no usable answer (reset, timeout, 500, 504) — may have been billed
  transient,   // poll only: network, 5xx, 429, malformed body — retry later
  job_error,   // 400/404/422 (and other 4xx): the request itself is refused
  account,     // 401/402/403, and a 429 that speaks of balance/credits/arrears/packs: the key or the account, not the job
};
std::string_view to_string(CallClass c);

struct CallError
{
  CallClass cls = CallClass::ok;
  std::string message;          // never contains the API key
  std::optional<int> http_status;
  std::optional<std::chrono::milliseconds> retry_after; // from Retry-After
};

struct CreateResult
{
  CallError outcome;                      // cls == ok on success
  std::optional<std::string> generation_id;
  std::optional<std::string> provider_status;
  std::optional<std::string> inference_id; // x-inference-id
  std::optional<std::int64_t> credits;     // x-aimlapi-credits-used
  std::optional<double> usd;               // x-aimlapi-usd-spent
};

// What a status object says (docs/provider.md "Status object").
struct GenerationStatus
{
  enum class Kind { working, completed, failed };
  Kind kind = Kind::working;
  std::string status;                    // as the provider wrote it
  bool known_status = true;              // false: an unknown value, treated as working
  std::optional<std::string> video_url;  // when completed
  std::optional<std::int64_t> file_size; // video.file_size when given
  std::string error_message;             // when failed: from {name, message} or {detail: [...]}
  // meta.usage of a completed status (docs/provider.md "Changes"): the generation's actual charge.
  // Only finite, non-negative figures are kept.
  std::optional<double> usage_usd;           // meta.usage.usd_spent
  std::optional<std::int64_t> usage_credits; // meta.usage.credits_used
  // Who served it (kling | fal ...), when the status says: a top-level "provider", else
  // meta.provider. Undocumented; lower-cased, at most 32 characters.
  std::optional<std::string> served_by;
};

struct PollResult
{
  CallError outcome;
  std::optional<GenerationStatus> status;
};

// Parses a status object; Error when the body is not JSON or has no usable status.
Result<GenerationStatus> parse_status(std::string_view body);
// Classifies a create response or transport failure (docs/contract.md §3.2).
CreateResult classify_create(const Result<HttpResponse, TransportError>& r);
// Classifies a poll response or transport failure (docs/contract.md §3.3/3.4).
PollResult classify_poll(const Result<HttpResponse, TransportError>& r);
// The provider's error text from an error body ({message}, {error:{message}},
// {detail:[{loc,msg}]}), cut to a sane length; falls back to "HTTP <status>".
std::string error_text(int status, std::string_view body);
// Retry-After as seconds or an HTTP date; nullopt when absent or unreadable.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

// One row of GET /v2/logs (docs/provider.md "Request tracing, cost and request logs").
struct LogRow
{
  std::string status; // succeeded | failed
  std::optional<std::string> model;
  std::optional<std::string> inference_id;
  std::optional<std::string> client_request_id;
  std::optional<std::string> created;
  std::optional<double> usd;
  std::optional<std::int64_t> credits;
};

struct LogPage
{
  CallError outcome;
  std::vector<LogRow> rows;
  bool has_more = false;
};

// Parses a /v2/logs answer: rows under "data" (or "logs"/"rows", or a bare
// array), pagination.has_more. Rows without a status are skipped.
Result<LogPage> parse_logs(std::string_view body);
// A /v2/logs, /v2/billing or /v2/billing/transactions answer (or transport failure) as a page.
LogPage classify_logs(const Result<HttpResponse, TransportError>& r);

// GET /v2/billing: {current_balance (USD), currency}.
struct Balance
{
  CallError outcome;
  std::optional<double> usd; // current_balance; may be negative (arrears)
  std::string currency;      // "USD" when absent
};
Result<Balance> parse_balance(std::string_view body);

// One row of GET /v2/billing/transactions (newest first).
struct Transaction
{
  std::string created_at;
  std::string direction; // TOPUP | CHARGE
  std::string type;      // MODEL_USAGE | REFUND | PAYMENT | …
  std::optional<double> usd;           // amount.usd, always positive; direction carries the sign
  std::optional<std::int64_t> credits; // amount.credits
  std::optional<std::string> model;
  std::optional<std::string> reference_id; // MODEL_USAGE/REFUND: the generation (inference) id
};

struct TransactionPage
{
  CallError outcome;
  std::vector<Transaction> rows;
  std::optional<std::string> next_cursor; // pass back verbatim; nullopt on the last page
  bool has_more = false;
};
// Rows without a type or direction are skipped; amounts must be finite and non-negative.
Result<TransactionPage> parse_transactions(std::string_view body);
Balance classify_balance(const Result<HttpResponse, TransportError>& r);
TransactionPage classify_transactions(const Result<HttpResponse, TransportError>& r);

// Filters of GET /v2/billing/transactions; empty fields are not sent.
struct TransactionQuery
{
  std::string from;      // ISO-8601 with an offset, inclusive
  std::string to;        // exclusive
  std::string direction; // TOPUP | CHARGE
  std::string type;      // MODEL_USAGE | REFUND | …
  int limit = 100;       // 1..100
};

// True when an error message speaks of the account rather than the request rate: balance,
// credits, arrears, resource packs, top-ups (upstream Kling reports those as HTTP 429).
bool speaks_of_account(std::string_view message);

class ProviderClient
{
public:
  struct Options
  {
    std::string base_url;  // e.g. https://api.aimlapi.com (no trailing slash)
    std::string api_key;
    std::chrono::milliseconds timeout{30000};
  };
  ProviderClient(HttpClient& http, Options options);

  void set_options(Options options) { m_options = std::move(options); }
  bool has_key() const { return !m_options.api_key.empty(); }

  // POST the (already normalised) body to the model's family endpoint with
  // X-Client-Request-Id. Not retried internally: a retry is the engine's call.
  boost::asio::awaitable<CreateResult> create(common::Family family, std::string body, std::string client_request_id);
  // GET the status of `generation_id` (URL-encoded: ids contain ':' and '/').
  boost::asio::awaitable<PollResult> poll(common::Family family, std::string generation_id);

  // GET /v2/logs for [start, end] (ISO-8601), filtered by `models` (the
  // parameter repeated), one page.
  boost::asio::awaitable<LogPage> logs(std::string start, std::string end, std::vector<std::string> models,
                                       int limit, int offset);

  // GET /v2/billing.
  boost::asio::awaitable<Balance> balance();
  // GET /v2/billing/transactions, one page; `cursor` from the previous page's next_cursor.
  boost::asio::awaitable<TransactionPage> transactions(std::optional<std::string> cursor, TransactionQuery query = {});

  // The endpoint URL for a family ("…/v2/video/generations" or "…/v2/generate/video/kling/generation").
  std::string endpoint(common::Family family) const;

private:
  HttpClient& m_http;
  Options m_options;
};

} // namespace klingd::provider
