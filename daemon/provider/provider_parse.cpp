// The provider client's pure half: parsing and classification of answers (no I/O, no
// coroutines), so that the fuzz targets can instrument all of it.
#include "daemon/provider/provider_client.hpp"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

namespace klingd::provider {

namespace json = boost::json;

std::string_view to_string(CallClass c)
{
  switch (c) {
  case CallClass::ok: return "ok";
  case CallClass::safe_retry: return "safe_retry";
  case CallClass::ambiguous: return "ambiguous";
  case CallClass::transient: return "transient";
  case CallClass::job_error: return "job_error";
  case CallClass::account: return "account";
  }
  return "?";
}

namespace {

std::string clip(std::string s, std::size_t max = 500)
{
  if (s.size() > max) {
    s.resize(max);
    s += "…";
  }
  // Keep one-line, printable messages (they go to logs and the API).
  for (auto& ch : s) {
    if (static_cast<unsigned char>(ch) < 0x20) {
      ch = ' ';
    }
  }
  return s;
}

std::optional<json::value> parse_json(std::string_view body)
{
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;
  json::value v = json::parse(body, ec, {}, opts);
  if (ec) {
    return std::nullopt;
  }
  return v;
}

const json::value* field(const json::value& v, std::string_view name)
{
  if (!v.is_object()) {
    return nullptr;
  }
  return v.as_object().if_contains(name);
}

std::optional<std::string> string_or_number(const json::value* v)
{
  if (!v) {
    return std::nullopt;
  }
  if (v->is_string() && !v->as_string().empty()) {
    return std::string(v->as_string());
  }
  if (v->is_int64()) {
    return std::to_string(v->as_int64());
  }
  if (v->is_uint64()) {
    return std::to_string(v->as_uint64());
  }
  return std::nullopt;
}

// {detail: [{loc: [...], msg, type}]} → "image_url: msg; …"
std::string detail_text(const json::array& detail)
{
  std::string out;
  for (const auto& d : detail) {
    std::string loc;
    if (const auto* l = field(d, "loc"); l && l->is_array()) {
      for (const auto& part : l->as_array()) {
        if (part.is_string() && part.as_string() != "body") {
          loc += (loc.empty() ? "" : ".") + std::string(part.as_string());
        } else if (part.is_int64()) {
          loc += fmt::format("[{}]", part.as_int64());
        }
      }
    }
    std::string msg;
    if (const auto* m = field(d, "msg"); m && m->is_string()) {
      msg = std::string(m->as_string());
    }
    if (loc.empty() && msg.empty()) {
      continue;
    }
    if (!out.empty()) {
      out += "; ";
    }
    out += loc.empty() ? msg : loc + ": " + msg;
  }
  return out;
}

std::optional<std::int64_t> parse_int(std::string_view s)
{
  std::int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

CallError transport_error(const TransportError& e, bool is_create)
{
  CallError out;
  out.message = clip(e.message);
  switch (e.kind) {
  case TransportFailure::not_sent:
    out.cls = is_create ? CallClass::safe_retry : CallClass::transient;
    break;
  default:
    // Sent, and no complete answer: a create may have been billed.
    out.cls = is_create ? CallClass::ambiguous : CallClass::transient;
    break;
  }
  return out;
}

// Upstream Kling's account codes (1100 account exception, 1101 arrears, 1102 resource pack
// depleted or expired) in a "code" field; 1303 (concurrency) is a plain rate limit.
bool account_code(std::string_view body)
{
  auto v = parse_json(body);
  if (!v) {
    return false;
  }
  const json::value* c = field(*v, "code");
  if (const json::value* e = field(*v, "error"); !c && e) {
    c = field(*e, "code");
  }
  auto n = string_or_number(c);
  return n && (*n == "1100" || *n == "1101" || *n == "1102");
}

// A finite, non-negative number (or a decimal string): money goes into ledgers and budgets.
std::optional<double> money(const json::value* v)
{
  if (!v) {
    return std::nullopt;
  }
  std::optional<double> d;
  if (v->is_number()) {
    d = v->to_number<double>();
  } else if (v->is_string()) {
    double parsed = 0;
    const auto& s = v->as_string();
    auto r = std::from_chars(s.data(), s.data() + s.size(), parsed);
    if (r.ec == std::errc() && r.ptr == s.data() + s.size()) {
      d = parsed;
    }
  }
  if (d && std::isfinite(*d) && *d >= 0 && *d < 1e12) {
    return d;
  }
  return std::nullopt;
}

std::optional<std::int64_t> whole_count(const json::value* v)
{
  if (!v || !v->is_number()) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  const auto n = v->to_number<std::int64_t>(ec);
  if (ec || n < 0) {
    return std::nullopt;
  }
  return n;
}

CallError http_error(const HttpResponse& r, bool is_create)
{
  CallError out;
  out.http_status = r.status;
  out.message = error_text(r.status, r.body);
  if (auto ra = r.header("Retry-After")) {
    out.retry_after = parse_retry_after(*ra);
  }
  const int s = r.status;
  if (s == 401 || s == 402 || s == 403 || (s == 429 && (speaks_of_account(out.message) || account_code(r.body)))) {
    out.cls = CallClass::account;
  } else if (s == 429 || s == 502 || s == 503) {
    out.cls = is_create ? CallClass::safe_retry : CallClass::transient;
  } else if (s >= 500) {
    // 500 and 504 (and anything else 5xx): the provider may have accepted the work first.
    out.cls = is_create ? CallClass::ambiguous : CallClass::transient;
  } else if (s == 408) {
    out.cls = is_create ? CallClass::ambiguous : CallClass::transient;
  } else {
    out.cls = CallClass::job_error;
  }
  return out;
}

// How every exchange starts to be classified: a transport error, then a status other than
// 2xx, each as for a create or for a read (`is_create`); nullopt: a 2xx whose body is to be parsed.
std::optional<CallError> exchange_error(const Result<HttpResponse, TransportError>& r, bool is_create)
{
  if (!r) {
    return transport_error(r.error(), is_create);
  }
  if (r->status < 200 || r->status >= 300) {
    return http_error(*r, is_create);
  }
  return std::nullopt;
}

// A read-only GET's answer (logs, billing): transport and HTTP failures classified as for a
// poll, a 2xx body parsed by `parse` (Result<Page>), an unparsable one transient.
template <typename Page, typename Parse>
Page classify_page(const Result<HttpResponse, TransportError>& r, Parse parse)
{
  Page page;
  if (auto e = exchange_error(r, false)) {
    page.outcome = std::move(*e);
    return page;
  }
  auto parsed = parse(r->body);
  if (!parsed) {
    page.outcome.cls = CallClass::transient;
    page.outcome.http_status = r->status;
    page.outcome.message = parsed.error().message;
    return page;
  }
  parsed->outcome.http_status = r->status;
  return std::move(*parsed);
}

} // namespace

bool speaks_of_account(std::string_view message)
{
  std::string lower;
  lower.reserve(message.size());
  for (char c : message) {
    lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  static constexpr std::string_view k_words[] = {"balance", "credit", "arrear", "resource pack",
                                                 "top up", "top-up", "insufficient funds", "payment required"};
  for (auto w : k_words) {
    if (lower.find(w) != std::string::npos) {
      return true;
    }
  }
  return false;
}

std::string error_text(int status, std::string_view body)
{
  // An empty text ("", a detail entry without msg) says less than the status: fall through.
  auto said = [](std::string text) -> std::optional<std::string> {
    return text.empty() ? std::nullopt : std::optional<std::string>(clip(std::move(text)));
  };
  if (auto v = parse_json(body)) {
    if (const auto* m = field(*v, "message"); m && m->is_string() && !m->as_string().empty()) {
      return clip(std::string(m->as_string()));
    }
    if (const auto* e = field(*v, "error")) {
      if (const auto* m = field(*e, "message"); m && m->is_string()) {
        if (auto t = said(std::string(m->as_string()))) return *t;
      }
      if (e->is_string()) {
        if (auto t = said(std::string(e->as_string()))) return *t;
      }
    }
    if (const auto* d = field(*v, "detail")) {
      if (d->is_array()) {
        if (auto t = said(detail_text(d->as_array()))) return *t;
      }
      if (d->is_string()) {
        if (auto t = said(std::string(d->as_string()))) return *t;
      }
    }
  }
  return fmt::format("HTTP {}", status);
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value)
{
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  while (!value.empty() && value.back() == ' ') {
    value.remove_suffix(1);
  }
  if (auto n = parse_int(value)) {
    if (*n < 0) {
      return std::nullopt;
    }
    return std::chrono::milliseconds(std::min<std::int64_t>(*n, 86400) * 1000);
  }
  double d = 0;
  auto r = std::from_chars(value.data(), value.data() + value.size(), d);
  if (r.ec == std::errc() && r.ptr == value.data() + value.size() && d >= 0 && d < 86400) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(d * 1000));
  }
  // HTTP-date, e.g. "Sun, 22 Nov 2026 05:40:01 GMT".
  std::tm tm{};
  std::string s(value);
  if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
    // Compared in whole seconds: a date centuries away (year 15, year 9999) does not fit
    // system_clock's nanoseconds, and converting it would overflow.
    const std::int64_t delta = static_cast<std::int64_t>(timegm(&tm)) - static_cast<std::int64_t>(std::time(nullptr));
    return std::chrono::milliseconds(std::clamp<std::int64_t>(delta, 0, 86400) * 1000);
  }
  return std::nullopt;
}

Result<GenerationStatus> parse_status(std::string_view body)
{
  auto v = parse_json(body);
  if (!v) {
    return make_error("malformed", "the status response is not valid JSON");
  }
  if (!v->is_object()) {
    return make_error("malformed", "the status response is not a JSON object");
  }
  const auto* st = field(*v, "status");
  if (!st || !st->is_string()) {
    return make_error("malformed", "the status response has no string \"status\"");
  }
  GenerationStatus g;
  g.status = clip(std::string(st->as_string()), 64);
  const std::string& s = g.status;
  const json::value* meta = field(*v, "meta");
  if (const auto* usage = meta ? field(*meta, "usage") : nullptr; usage && usage->is_object()) {
    g.usage_usd = money(field(*usage, "usd_spent"));
    g.usage_credits = whole_count(field(*usage, "credits_used"));
  }
  const json::value* served = field(*v, "provider");
  if (!(served && served->is_string()) && meta) {
    served = field(*meta, "provider");
  }
  if (served && served->is_string() && !served->as_string().empty()) {
    std::string who = clip(std::string(served->as_string()), 32);
    for (auto& c : who) {
      c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    g.served_by = std::move(who);
  }
  if (s == "completed" || s == "succeeded" || s == "success") {
    g.kind = GenerationStatus::Kind::completed;
    if (const auto* video = field(*v, "video"); video && video->is_object()) {
      if (const auto* url = field(*video, "url"); url && url->is_string() && !url->as_string().empty()) {
        g.video_url = std::string(url->as_string());
      }
      if (const auto* size = field(*video, "file_size")) {
        // Boost.JSON keeps only values above INT64_MAX as uint64: no believable size, and the
        // cast to int64 would make them negative.
        if (size->is_int64() && size->as_int64() >= 0) {
          g.file_size = size->as_int64();
        }
      }
    } else if (const auto* video = field(*v, "video"); video && video->is_array() && !video->as_array().empty()) {
      // Some clients see a list of videos; take the first.
      const auto& first = video->as_array().front();
      if (const auto* url = field(first, "url"); url && url->is_string() && !url->as_string().empty()) {
        g.video_url = std::string(url->as_string());
      }
    }
  } else if (s == "error" || s == "failed" || s == "failure") {
    g.kind = GenerationStatus::Kind::failed;
    std::string msg;
    if (const auto* e = field(*v, "error"); e && !e->is_null()) {
      if (e->is_string()) {
        msg = std::string(e->as_string());
      } else {
        std::string name, message;
        if (const auto* n = field(*e, "name"); n && n->is_string()) name = std::string(n->as_string());
        if (const auto* m = field(*e, "message"); m && m->is_string()) message = std::string(m->as_string());
        msg = name.empty() ? message : message.empty() ? name : name + ": " + message;
      }
    }
    if (msg.empty()) {
      if (const auto* d = field(*v, "detail"); d && d->is_array()) {
        msg = detail_text(d->as_array());
      }
    }
    g.error_message = clip(msg.empty() ? std::string("the provider reported status ") + s : msg);
  } else {
    g.kind = GenerationStatus::Kind::working;
    g.known_status = s == "queued" || s == "waiting" || s == "active" || s == "processing" || s == "generating"
                     || s == "pending" || s == "in_progress";
  }
  return g;
}

CreateResult classify_create(const Result<HttpResponse, TransportError>& r)
{
  CreateResult out;
  if (r) {
    // Tracing and cost headers count on any answer, a refusal included.
    if (auto h = r->header("x-inference-id"); h && !h->empty()) {
      out.inference_id = *h;
    }
    if (auto h = r->header("x-aimlapi-credits-used")) {
      out.credits = parse_int(*h);
    }
    if (auto h = r->header("x-aimlapi-usd-spent")) {
      double d = 0;
      auto res = std::from_chars(h->data(), h->data() + h->size(), d);
      if (res.ec == std::errc() && d >= 0) {
        out.usd = d;
      }
    }
  }
  if (auto e = exchange_error(r, true)) {
    out.outcome = std::move(*e);
    return out;
  }
  const HttpResponse& resp = *r;
  auto v = parse_json(resp.body);
  if (v) {
    out.generation_id = string_or_number(field(*v, "id"));
    if (!out.generation_id) {
      out.generation_id = string_or_number(field(*v, "generation_id"));
    }
    if (const auto* st = field(*v, "status"); st && st->is_string()) {
      out.provider_status = clip(std::string(st->as_string()), 64);
    }
  }
  if (!out.generation_id && out.inference_id) {
    // The body is unusable but the tracing header names the generation.
    out.generation_id = out.inference_id;
  }
  if (!out.generation_id) {
    // Accepted (2xx: billed) but we cannot tell which generation: ambiguous.
    out.outcome.cls = CallClass::ambiguous;
    out.outcome.http_status = resp.status;
    out.outcome.message = v ? "the create response has no generation id" : "the create response is not valid JSON";
    return out;
  }
  out.outcome.cls = CallClass::ok;
  out.outcome.http_status = resp.status;
  return out;
}

PollResult classify_poll(const Result<HttpResponse, TransportError>& r)
{
  PollResult out;
  if (auto e = exchange_error(r, false)) {
    out.outcome = std::move(*e);
    return out;
  }
  auto st = parse_status(r->body);
  if (!st) {
    out.outcome.cls = CallClass::transient;
    out.outcome.http_status = r->status;
    out.outcome.message = st.error().message;
    return out;
  }
  out.outcome.cls = CallClass::ok;
  out.outcome.http_status = r->status;
  out.status = std::move(*st);
  return out;
}

Result<LogPage> parse_logs(std::string_view body)
{
  auto v = parse_json(body);
  if (!v) {
    return make_error("malformed", "the logs response is not valid JSON");
  }
  const json::array* rows = nullptr;
  if (v->is_array()) {
    rows = &v->as_array();
  } else {
    for (const char* key : {"data", "logs", "rows", "items"}) {
      if (const auto* d = field(*v, key); d && d->is_array()) {
        rows = &d->as_array();
        break;
      }
    }
  }
  if (!rows) {
    return make_error("malformed", "the logs response has no list of rows");
  }
  LogPage page;
  page.outcome.cls = CallClass::ok;
  for (const auto& r : *rows) {
    const auto* st = field(r, "status");
    if (!st || !st->is_string()) {
      continue;
    }
    LogRow row;
    row.status = std::string(st->as_string());
    auto text = [&](const char* name) -> std::optional<std::string> { return string_or_number(field(r, name)); };
    row.model = text("model");
    row.inference_id = text("inference_id");
    row.client_request_id = text("client_request_id");
    row.created = text("created");
    // A cost goes into the ledger and the budgets: only finite, non-negative figures are
    // taken; anything else ("nan", -5, 1.5 credits, 1e30) is no figure.
    if (const auto* cost = field(r, "cost"); cost && cost->is_object()) {
      if (const auto* usd = field(*cost, "usd")) {
        std::optional<double> d;
        if (usd->is_number()) {
          d = usd->to_number<double>();
        } else if (usd->is_string()) {
          double parsed = 0;
          const auto& s = usd->as_string();
          if (std::from_chars(s.data(), s.data() + s.size(), parsed).ec == std::errc()) {
            d = parsed;
          }
        }
        if (d && std::isfinite(*d) && *d >= 0) {
          row.usd = *d;
        }
      }
      if (const auto* credits = field(*cost, "credits"); credits && credits->is_number()) {
        boost::system::error_code ec;
        const auto n = credits->to_number<std::int64_t>(ec);
        if (!ec && n >= 0) {
          row.credits = n;
        }
      }
    }
    page.rows.push_back(std::move(row));
  }
  if (const auto* p = field(*v, "pagination")) {
    if (const auto* more = field(*p, "has_more"); more && more->is_bool()) {
      page.has_more = more->as_bool();
    }
  }
  return page;
}

Result<Balance> parse_balance(std::string_view body)
{
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return make_error("malformed", "the billing response is not a JSON object");
  }
  const json::value* b = field(*v, "current_balance");
  std::optional<double> usd;
  if (b && b->is_number()) {
    usd = b->to_number<double>();
  } else if (b && b->is_string()) {
    double parsed = 0;
    const auto& t = b->as_string();
    auto r = std::from_chars(t.data(), t.data() + t.size(), parsed);
    if (r.ec == std::errc() && r.ptr == t.data() + t.size()) {
      usd = parsed;
    }
  }
  // A balance may be negative (arrears), but it is a finite amount of money.
  if (!usd || !std::isfinite(*usd) || std::fabs(*usd) >= 1e12) {
    return make_error("malformed", "the billing response has no numeric \"current_balance\"");
  }
  Balance out;
  out.outcome.cls = CallClass::ok;
  out.usd = *usd;
  const json::value* c = field(*v, "currency");
  out.currency = c && c->is_string() && !c->as_string().empty() ? clip(std::string(c->as_string()), 8) : "USD";
  return out;
}

Result<TransactionPage> parse_transactions(std::string_view body)
{
  auto v = parse_json(body);
  const json::value* data = v ? field(*v, "data") : nullptr;
  if (!data || !data->is_array()) {
    return make_error("malformed", "the transactions response has no \"data\" list");
  }
  TransactionPage page;
  page.outcome.cls = CallClass::ok;
  for (const auto& r : data->as_array()) {
    auto text = [&](const char* name) -> std::optional<std::string> {
      auto t = string_or_number(field(r, name));
      return t ? std::optional<std::string>(clip(std::move(*t), 256)) : std::nullopt;
    };
    auto type = text("type");
    auto direction = text("direction");
    if (!type || !direction) {
      continue;
    }
    Transaction row;
    row.type = std::move(*type);
    row.direction = std::move(*direction);
    row.created_at = text("created_at").value_or("");
    row.model = text("model");
    row.reference_id = text("reference_id");
    if (const auto* amount = field(r, "amount"); amount && amount->is_object()) {
      row.usd = money(field(*amount, "usd"));
      row.credits = whole_count(field(*amount, "credits"));
    }
    page.rows.push_back(std::move(row));
  }
  if (const auto* p = field(*v, "pagination")) {
    if (const auto* more = field(*p, "has_more"); more && more->is_bool()) {
      page.has_more = more->as_bool();
    }
    if (const auto* next = field(*p, "next_cursor"); next && next->is_string() && !next->as_string().empty()) {
      page.next_cursor = std::string(next->as_string());
    }
  }
  if (!page.next_cursor) {
    page.has_more = false; // nothing to continue from
  }
  return page;
}

LogPage classify_logs(const Result<HttpResponse, TransportError>& r) { return classify_page<LogPage>(r, parse_logs); }
Balance classify_balance(const Result<HttpResponse, TransportError>& r) { return classify_page<Balance>(r, parse_balance); }
TransactionPage classify_transactions(const Result<HttpResponse, TransportError>& r)
{
  return classify_page<TransactionPage>(r, parse_transactions);
}

} // namespace klingd::provider
