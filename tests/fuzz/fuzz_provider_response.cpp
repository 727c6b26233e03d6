// libFuzzer target: what the provider sends back — a status document (parse_status), a create
// answer with any status and headers (classify_create), an error body (error_text) and a
// Retry-After value, a request-log page (parse_logs), the balance (parse_balance) and a ledger
// page (parse_transactions). A hostile or broken provider must
// never crash the daemon, nor put an impossible cost into the ledger.
#include "daemon/provider/provider_client.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace klingd::provider;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size < 2) {
    return 0;
  }
  // Two leading bytes choose the HTTP status (100..611); the rest is the body.
  const int status = 100 + (data[0] << 8 | data[1]) % 512;
  std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);

  if (auto s = parse_status(body)) {
    if (s->file_size && *s->file_size < 0) {
      std::abort(); // a size the downloader compares with the real length: never negative
    }
    if (s->kind == GenerationStatus::Kind::completed && s->video_url && s->video_url->empty()) {
      std::abort(); // "completed" with an empty URL must not be taken as downloadable
    }
    if ((s->usage_usd && !(std::isfinite(*s->usage_usd) && *s->usage_usd >= 0)) || (s->usage_credits && *s->usage_credits < 0)) {
      std::abort(); // meta.usage is recorded as the job's cost
    }
    if (s->served_by && (s->served_by->empty() || s->served_by->size() > 40)) {
      std::abort();
    }
  }

  HttpResponse response;
  response.status = status;
  response.body = std::string(body);
  // Header values taken from the body too, so the corpus reaches the cost and id parsers.
  const auto cut = body.substr(0, std::min<std::size_t>(body.size(), 64));
  response.headers = {{"x-inference-id", std::string(cut)},
                      {"x-aimlapi-credits-used", std::string(cut)},
                      {"x-aimlapi-usd-spent", std::string(cut)},
                      {"Retry-After", std::string(cut)}};
  klingd::Result<HttpResponse, TransportError> r(std::move(response));
  auto created = classify_create(r);
  if (created.outcome.cls == CallClass::ok && (!created.generation_id || created.generation_id->empty())) {
    std::abort(); // an accepted create must carry the id we will poll
  }
  (void)classify_poll(r);
  auto text = error_text(status, body);
  if (text.empty()) {
    std::abort();
  }
  (void)parse_retry_after(cut);

  if (auto page = parse_logs(body)) {
    for (const auto& row : page->rows) {
      if (row.usd && !(std::isfinite(*row.usd) && *row.usd >= 0)) {
        std::abort(); // costs are summed into budgets: never NaN, infinite or negative
      }
      if (row.credits && *row.credits < 0) {
        std::abort();
      }
    }
  }
  if (auto b = parse_balance(body)) {
    if (!b->usd || !std::isfinite(*b->usd)) {
      std::abort(); // compared with expected costs before every create
    }
  }
  if (auto page = parse_transactions(body)) {
    for (const auto& row : page->rows) {
      if ((row.usd && !(std::isfinite(*row.usd) && *row.usd >= 0)) || (row.credits && *row.credits < 0)) {
        std::abort(); // settles jobs' costs: never NaN, infinite or negative
      }
    }
    if (page->has_more && !page->next_cursor) {
      std::abort(); // "more" must come with the cursor to fetch it
    }
  }
  return 0;
}
