// GET /v2/billing (the balance) and GET /v2/billing/transactions (the ledger), as the
// provider's billing schemas describe them: charges are recorded once a generation
// completed, failed generations have no row, refunds are TOPUP rows of type REFUND.
#include "tests/fake_provider/app.hpp"

#include "tests/fake_provider/support.hpp"

#include <boost/json.hpp>
#include <boost/url.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <tuple>

namespace fake {

namespace json = boost::json;

namespace {

struct LedgerRow {
  double wall = 0;
  std::uint64_t seq = 0; // ties broken by insertion order, so the order is total
  std::string direction;
  std::string type;
  double usd = 0;
  std::int64_t credits = 0;
  const Generation* generation = nullptr;
};

// Newest first.
bool newer(const LedgerRow& a, const LedgerRow& b)
{
  return std::tie(a.wall, a.seq) > std::tie(b.wall, b.seq);
}

std::string cursor_key(const LedgerRow& row)
{
  return fmt::format("{:x}.{:x}", static_cast<std::uint64_t>(std::llround(row.wall * 1e6)), row.seq);
}

} // namespace

double App::current_balance() const
{
  const double now = mono_now();
  double balance = m_config.balance_usd;
  for (const auto& g : m_state.generations) {
    if (g->phase_at(now) == Phase::completed) {
      balance -= g->charged_usd;
      if (g->refunded) {
        balance += g->charged_usd;
      }
    }
  }
  return std::round(balance * 1e6) / 1e6;
}

Reply App::handle_billing(const Request& request, const ApiCall& call, bool transactions)
{
  if (!m_config.billing_enabled) {
    return error_reply(http::status::not_found, fmt::format("Cannot GET {}", call.path), call);
  }
  ++m_state.billing_requests;
  const FaultType fault = m_state.faults.decide(EndpointKind::billing, m_config);
  if (auto reply = generic_fault_reply(fault, call)) {
    return std::move(*reply);
  }
  if (!transactions) {
    return read_reply(json::object{{"current_balance", current_balance()}, {"currency", "USD"}}, fault, call);
  }

  std::optional<double> from;
  std::optional<double> to;
  std::optional<std::string> direction;
  std::optional<std::string> type;
  std::optional<std::string> cursor;
  std::int64_t limit = 50;
  auto url = boost::urls::parse_origin_form(request.target());
  if (!url) {
    return error_reply(http::status::bad_request, "Invalid query string", call);
  }
  static const std::vector<std::string_view> k_types = {"PAYMENT", "BONUS", "REFUND", "ADJUSTMENT",
                                                        "MODEL_USAGE", "CREDITS_EXPIRED", "INIT"};
  for (auto param : url->params()) {
    const std::string value = param.value;
    if (param.key == "from" || param.key == "to") {
      auto t = parse_iso8601(value);
      if (!t) {
        return error_reply(http::status::bad_request, fmt::format("{}: Invalid ISO-8601 date", param.key), call);
      }
      (param.key == "from" ? from : to) = *t;
    } else if (param.key == "direction") {
      if (value != "TOPUP" && value != "CHARGE") {
        return error_reply(http::status::bad_request,
                           fmt::format("direction: Invalid enum value. Expected 'TOPUP' | 'CHARGE', received '{}'", value),
                           call);
      }
      direction = value;
    } else if (param.key == "type") {
      if (std::find(k_types.begin(), k_types.end(), value) == k_types.end()) {
        return error_reply(http::status::bad_request,
                           fmt::format("type: Invalid enum value. Expected '{}', received '{}'",
                                       fmt::join(k_types, "' | '"), value),
                           call);
      }
      type = value;
    } else if (param.key == "limit") {
      std::int64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 100) {
        return error_reply(http::status::bad_request, "limit: Number must be between 1 and 100", call);
      }
      limit = n;
    } else if (param.key == "cursor") {
      cursor = value;
    } else if (param.key == "offset") {
      return error_reply(http::status::bad_request, "offset: page with the cursor, never with an offset", call);
    }
  }
  if (from && to && *to <= *from) {
    return error_reply(http::status::bad_request, "to: Must be later than from", call);
  }

  // The ledger as it stands now.
  const double now = mono_now();
  std::vector<LedgerRow> rows;
  std::uint64_t seq = 0;
  const double opening = m_config.balance_usd;
  rows.push_back({m_opened_wall, seq++, "TOPUP", "INIT", std::fabs(opening),
                  std::llround(std::fabs(opening) * m_config.credits_per_usd), nullptr});
  for (const auto& g : m_state.generations) {
    if (g->phase_at(now) != Phase::completed) {
      continue; // charged after completed; failures have no row
    }
    rows.push_back({g->finished_wall(), seq++, "CHARGE", "MODEL_USAGE", g->charged_usd, g->charged_credits, g.get()});
    if (g->refunded) {
      rows.push_back({g->finished_wall() + 0.001, seq++, "TOPUP", "REFUND", g->charged_usd, g->charged_credits, g.get()});
    }
  }
  std::sort(rows.begin(), rows.end(), newer);

  // The cursor names the last row of the previous page; it is signed, so only ours pass.
  std::optional<std::string> after;
  if (cursor) {
    auto dot = cursor->rfind('.');
    const std::string key = dot == std::string::npos ? "" : cursor->substr(0, dot);
    if (key.empty() || cursor->substr(dot + 1) != sha256_hex(m_url_secret + "|cursor|" + key).substr(0, 16)) {
      return error_reply(http::status::bad_request, "cursor: Invalid cursor", call);
    }
    after = key;
  }
  json::array data;
  bool passed = !after;
  std::optional<std::string> last_key;
  bool more = false;
  for (const auto& row : rows) {
    if (!passed) {
      passed = cursor_key(row) == *after;
      continue;
    }
    if ((from && row.wall < *from) || (to && row.wall >= *to) || (direction && row.direction != *direction)
        || (type && row.type != *type)) {
      continue;
    }
    if (static_cast<std::int64_t>(data.size()) == limit) {
      more = true;
      break;
    }
    const Generation* g = row.generation;
    data.push_back(json::object{
      {"created_at", iso8601(row.wall)},
      {"direction", row.direction},
      {"type", row.type},
      {"amount", json::object{{"usd", row.usd}, {"credits", row.credits}}},
      {"model", g ? json::value(g->model) : json::value(nullptr)},
      {"reference_id", g ? json::value(g->id) : json::value(nullptr)},
    });
    last_key = cursor_key(row);
  }
  json::value next = nullptr;
  if (more && last_key) {
    next = *last_key + "." + sha256_hex(m_url_secret + "|cursor|" + *last_key).substr(0, 16);
  }
  return read_reply(json::object{
                      {"data", std::move(data)},
                      {"pagination", json::object{{"next_cursor", std::move(next)}, {"has_more", more}}},
                    },
                    fault, call);
}

} // namespace fake
