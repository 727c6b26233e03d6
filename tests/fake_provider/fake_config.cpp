#include "tests/fake_provider/fake_config.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <functional>
#include <utility>

namespace fake {

namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, k_endpoint_kinds> k_kind_names = {"create", "poll", "download",
                                                                         "logs", "billing"};

struct FaultName {
  FaultType type;
  std::string_view name;
};

constexpr FaultName k_fault_names[] = {
  {FaultType::none, "none"},
  {FaultType::error_500, "error_500"},
  {FaultType::error_502, "error_502"},
  {FaultType::error_503, "error_503"},
  {FaultType::error_504, "error_504"},
  {FaultType::error_500_after_create, "error_500_after_create"},
  {FaultType::error_504_after_create, "error_504_after_create"},
  {FaultType::rate_limit, "rate_limit"},
  {FaultType::rate_limit_no_retry_after, "rate_limit_no_retry_after"},
  {FaultType::rate_limit_account, "rate_limit_account"},
  {FaultType::reset, "reset"},
  {FaultType::reset_after_create, "reset_after_create"},
  {FaultType::slow, "slow"},
  {FaultType::malformed_json, "malformed_json"},
  {FaultType::garbage_status, "garbage_status"},
  {FaultType::not_found, "not_found"},
  {FaultType::truncated, "truncated"},
  {FaultType::expired_url, "expired_url"},
  {FaultType::lost, "lost"},
  {FaultType::failed_status, "failed_status"},
};

std::optional<double> as_number(const json::value& v)
{
  if (v.is_double()) {
    return v.get_double();
  }
  if (v.is_int64()) {
    return static_cast<double>(v.get_int64());
  }
  if (v.is_uint64()) {
    return static_cast<double>(v.get_uint64());
  }
  return std::nullopt;
}

using Setter = std::function<std::string(FakeConfig&, const json::value&)>;

Setter number_setter(double FakeConfig::*field, double min, double max)
{
  return [=](FakeConfig& c, const json::value& v) -> std::string {
    auto n = as_number(v);
    if (!n || *n < min || *n > max) {
      return fmt::format("expected a number in [{}, {}]", min, max);
    }
    c.*field = *n;
    return {};
  };
}

template <class Int>
Setter int_setter(Int FakeConfig::*field, double min, double max)
{
  return [=](FakeConfig& c, const json::value& v) -> std::string {
    auto n = as_number(v);
    if (!n || *n < min || *n > max || *n != static_cast<double>(static_cast<std::int64_t>(*n))) {
      return fmt::format("expected an integer in [{}, {}]", min, max);
    }
    c.*field = static_cast<Int>(*n);
    return {};
  };
}

Setter bool_setter(bool FakeConfig::*field)
{
  return [=](FakeConfig& c, const json::value& v) -> std::string {
    if (!v.is_bool()) {
      return "expected true or false";
    }
    c.*field = v.get_bool();
    return {};
  };
}

Setter string_setter(std::string FakeConfig::*field, std::vector<std::string_view> allowed)
{
  return [=](FakeConfig& c, const json::value& v) -> std::string {
    if (!v.is_string() || v.get_string().empty()) {
      return "expected a non-empty string";
    }
    std::string_view s = v.get_string();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
      return fmt::format("expected one of: {}", fmt::join(allowed, ", "));
    }
    c.*field = std::string(s);
    return {};
  };
}

std::string set_faults(FakeConfig& c, const json::value& v)
{
  if (!v.is_object()) {
    return "expected {\"<kind>\": {\"<fault>\": probability}}";
  }
  for (const auto& [kind_name, faults] : v.get_object()) {
    auto kind = endpoint_kind_from(kind_name);
    if (!kind) {
      return fmt::format("unknown endpoint kind '{}'", std::string_view(kind_name));
    }
    if (!faults.is_object()) {
      return fmt::format("{}: expected an object of fault probabilities",
                         std::string_view(kind_name));
    }
    std::map<FaultType, double> rates;
    for (const auto& [fault_name, rate] : faults.get_object()) {
      auto type = fault_type_from(fault_name);
      if (!type || *type == FaultType::none || !fault_allowed(*kind, *type)) {
        return fmt::format("{}: fault '{}' does not apply", std::string_view(kind_name),
                           std::string_view(fault_name));
      }
      auto p = as_number(rate);
      if (!p || *p < 0 || *p > 1) {
        return fmt::format("{}.{}: expected a probability in [0, 1]",
                           std::string_view(kind_name), std::string_view(fault_name));
      }
      rates[*type] = *p;
    }
    c.fault_rates[static_cast<std::size_t>(*kind)] = std::move(rates);
  }
  return {};
}

std::string set_prices(FakeConfig& c, const json::value& v)
{
  if (!v.is_object()) {
    return "expected {\"<model>\": usd_per_second}";
  }
  for (const auto& [model, price] : v.get_object()) {
    auto p = as_number(price);
    if (!p || *p < 0) {
      return fmt::format("{}: expected a non-negative number", std::string_view(model));
    }
    c.prices[std::string(model)] = *p;
  }
  return {};
}
std::string set_generating_by_model(FakeConfig& c, const json::value& v)
{
  if (!v.is_object()) {
    return "expected {\"<model>\": seconds}";
  }
  std::map<std::string, double, std::less<>> out;
  for (const auto& [model, seconds] : v.get_object()) {
    auto t = as_number(seconds);
    if (!t || *t < 0 || *t > 1e7) {
      return fmt::format("{}: expected seconds in [0, 1e7]", std::string_view(model));
    }
    out[std::string(model)] = *t;
  }
  c.generating_s_by_model = std::move(out);
  return {};
}


const std::map<std::string, Setter, std::less<>>& setters()
{
  static const std::map<std::string, Setter, std::less<>> k_setters = {
    {"api_key", string_setter(&FakeConfig::api_key, {})},
    {"seed", int_setter(&FakeConfig::seed, 0, 9e15)},
    {"queued_s", number_setter(&FakeConfig::queued_s, 0, 1e7)},
    {"generating_s", number_setter(&FakeConfig::generating_s, 0, 1e7)},
    {"generating_s_by_model", set_generating_by_model},
    {"generating_per_video_s", number_setter(&FakeConfig::generating_per_video_s, 0, 1e5)},
    {"generating_jitter", number_setter(&FakeConfig::generating_jitter, 0, 0.9)},
    {"status_style", string_setter(&FakeConfig::status_style, {"modern", "legacy"})},
    {"failure_rate", number_setter(&FakeConfig::failure_rate, 0, 1)},
    {"failure_style", string_setter(&FakeConfig::failure_style, {"error", "detail", "mixed"})},
    {"failure_status", string_setter(&FakeConfig::failure_status, {})},
    {"completed_without_url_polls", int_setter(&FakeConfig::completed_without_url_polls, 0, 1e6)},
    {"id_shape",
     string_setter(&FakeConfig::id_shape, {"rotate", "uuid", "nanoid", "uuid_model", "numeric"})},
    {"unknown_id_status", int_setter(&FakeConfig::unknown_id_status, 200, 599)},
    {"status_code_as_string", bool_setter(&FakeConfig::status_code_as_string)},
    {"strict_fields", bool_setter(&FakeConfig::strict_fields)},
    {"credits_exhausted", bool_setter(&FakeConfig::credits_exhausted)},
    {"auto_route", string_setter(&FakeConfig::auto_route, {"kling", "fal"})},
    {"status_provider_field", string_setter(&FakeConfig::status_provider_field, {"provider", "meta.provider", "none"})},
    {"meta_usage", bool_setter(&FakeConfig::meta_usage)},
    {"balance_usd", number_setter(&FakeConfig::balance_usd, -1e9, 1e9)},
    {"enforce_balance", bool_setter(&FakeConfig::enforce_balance)},
    {"charge_factor", number_setter(&FakeConfig::charge_factor, 0, 1000)},
    {"refund_rate", number_setter(&FakeConfig::refund_rate, 0, 1)},
    {"billing_enabled", bool_setter(&FakeConfig::billing_enabled)},
    {"account_429_message", string_setter(&FakeConfig::account_429_message, {})},
    {"url_ttl_s", number_setter(&FakeConfig::url_ttl_s, 0, 1e9)},
    {"fal_url_ttl_s", number_setter(&FakeConfig::fal_url_ttl_s, 0, 1e9)},
    {"expired_url_status", int_setter(&FakeConfig::expired_url_status, 400, 599)},
    {"bad_signature_status", int_setter(&FakeConfig::bad_signature_status, 400, 599)},
    {"video_bytes", int_setter(&FakeConfig::video_bytes, 0, 1ull << 50)},
    {"create_cost_headers", bool_setter(&FakeConfig::create_cost_headers)},
    {"poll_cost_headers", bool_setter(&FakeConfig::poll_cost_headers)},
    {"credits_per_usd", number_setter(&FakeConfig::credits_per_usd, 0, 1e12)},
    {"prices", set_prices},
    {"logs_enabled", bool_setter(&FakeConfig::logs_enabled)},
    {"logs_delay_s", number_setter(&FakeConfig::logs_delay_s, 0, 1e7)},
    {"logs_rate_limit", int_setter(&FakeConfig::logs_rate_limit, 0, 1e9)},
    {"log_polls", bool_setter(&FakeConfig::log_polls)},
    {"faults", set_faults},
    {"slow_delay_s", number_setter(&FakeConfig::slow_delay_s, 0, 1e6)},
    {"retry_after_s", number_setter(&FakeConfig::retry_after_s, 0, 1e6)},
    {"idle_timeout_s", number_setter(&FakeConfig::idle_timeout_s, 0.01, 1e7)},
    {"io_timeout_s", number_setter(&FakeConfig::io_timeout_s, 0.01, 1e7)},
    {"max_body_bytes", int_setter(&FakeConfig::max_body_bytes, 1024, 1ull << 40)},
  };
  return k_setters;
}

std::string parse_script(const json::value& v, std::vector<ScriptStep>& steps)
{
  if (!v.is_array()) {
    return "expected an array of {kind, fault, count} or \"kind.fault=count\"";
  }
  for (const auto& item : v.get_array()) {
    ScriptStep step;
    if (item.is_string()) {
      double count = 1;
      auto err = parse_fault_spec(item.get_string(), step.kind, step.fault, count);
      if (!err.empty()) {
        return err;
      }
      step.count = static_cast<int>(count);
    } else if (item.is_object()) {
      const auto& o = item.get_object();
      auto kind = o.if_contains("kind");
      auto fault = o.if_contains("fault");
      auto count = o.if_contains("count");
      std::optional<EndpointKind> k;
      std::optional<FaultType> f;
      if (kind && kind->is_string()) {
        k = endpoint_kind_from(kind->get_string());
      }
      if (fault && fault->is_string()) {
        f = fault_type_from(fault->get_string());
      }
      if (!k || !f) {
        return "each step needs a valid \"kind\" and \"fault\"";
      }
      step.kind = *k;
      step.fault = *f;
      if (count) {
        auto n = as_number(*count);
        if (!n || *n < 1) {
          return "\"count\" must be a positive integer";
        }
        step.count = static_cast<int>(*n);
      }
    } else {
      return "expected an array of {kind, fault, count} or \"kind.fault=count\"";
    }
    if (!fault_allowed(step.kind, step.fault)) {
      return fmt::format("fault '{}' does not apply to '{}'", to_string(step.fault),
                         to_string(step.kind));
    }
    steps.push_back(step);
  }
  return {};
}

} // namespace

std::string_view to_string(EndpointKind kind)
{
  return k_kind_names[static_cast<std::size_t>(kind)];
}

std::optional<EndpointKind> endpoint_kind_from(std::string_view name)
{
  for (std::size_t i = 0; i < k_kind_names.size(); ++i) {
    if (k_kind_names[i] == name) {
      return static_cast<EndpointKind>(i);
    }
  }
  return std::nullopt;
}

std::string_view to_string(FaultType type)
{
  for (const auto& f : k_fault_names) {
    if (f.type == type) {
      return f.name;
    }
  }
  return "none";
}

std::optional<FaultType> fault_type_from(std::string_view name)
{
  for (const auto& f : k_fault_names) {
    if (f.name == name) {
      return f.type;
    }
  }
  return std::nullopt;
}

bool fault_allowed(EndpointKind kind, FaultType type)
{
  switch (type) {
  case FaultType::none:
  case FaultType::error_500:
  case FaultType::error_502:
  case FaultType::error_503:
  case FaultType::error_504:
  case FaultType::rate_limit:
  case FaultType::rate_limit_no_retry_after:
  case FaultType::rate_limit_account:
  case FaultType::reset:
  case FaultType::slow:
    return true;
  case FaultType::malformed_json:
    return kind != EndpointKind::download;
  case FaultType::error_500_after_create:
  case FaultType::error_504_after_create:
  case FaultType::reset_after_create:
  case FaultType::lost:
    return kind == EndpointKind::create;
  case FaultType::garbage_status:
  case FaultType::not_found:
  case FaultType::failed_status:
    return kind == EndpointKind::poll;
  case FaultType::truncated:
  case FaultType::expired_url:
    return kind == EndpointKind::download;
  }
  return false;
}

std::string parse_fault_spec(std::string_view spec, EndpointKind& kind, FaultType& type,
                             double& value)
{
  auto dot = spec.find('.');
  auto eq = spec.find('=');
  if (dot == std::string_view::npos || eq == std::string_view::npos || eq < dot) {
    return fmt::format("'{}': expected kind.fault=value", spec);
  }
  auto k = endpoint_kind_from(spec.substr(0, dot));
  auto f = fault_type_from(spec.substr(dot + 1, eq - dot - 1));
  if (!k || !f || !fault_allowed(*k, *f)) {
    return fmt::format("'{}': unknown endpoint kind or fault, or the fault does not apply", spec);
  }
  std::string number(spec.substr(eq + 1));
  try {
    std::size_t used = 0;
    value = std::stod(number, &used);
    if (used != number.size()) {
      throw std::invalid_argument(number);
    }
  } catch (const std::exception&) {
    return fmt::format("'{}': the value is not a number", spec);
  }
  kind = *k;
  type = *f;
  return {};
}

std::string apply_config(FakeConfig& config, const json::object& patch,
                         std::optional<std::vector<ScriptStep>>& script)
{
  // Work on a copy so a bad key leaves the running configuration untouched.
  FakeConfig next = config;
  for (const auto& [key, value] : patch) {
    if (key == "script") {
      std::vector<ScriptStep> steps;
      auto err = parse_script(value, steps);
      if (!err.empty()) {
        return fmt::format("script: {}", err);
      }
      script = std::move(steps);
      continue;
    }
    auto it = setters().find(std::string_view(key));
    if (it == setters().end()) {
      return fmt::format("{}: unknown configuration key", std::string_view(key));
    }
    auto err = it->second(next, value);
    if (!err.empty()) {
      return fmt::format("{}: {}", std::string_view(key), err);
    }
  }
  config = std::move(next);
  return {};
}

json::object config_to_json(const FakeConfig& c)
{
  json::object faults;
  for (std::size_t k = 0; k < k_endpoint_kinds; ++k) {
    json::object rates;
    for (const auto& [type, p] : c.fault_rates[k]) {
      rates[to_string(type)] = p;
    }
    faults[k_kind_names[k]] = std::move(rates);
  }
  json::object prices;
  for (const auto& [model, p] : c.prices) {
    prices[model] = p;
  }
  return {
    {"api_key", c.api_key},
    {"seed", c.seed},
    {"queued_s", c.queued_s},
    {"generating_s", c.generating_s},
    {"generating_s_by_model", [&] {
       json::object o;
       for (const auto& [model, t] : c.generating_s_by_model) {
         o[model] = t;
       }
       return o;
     }()},
    {"generating_per_video_s", c.generating_per_video_s},
    {"generating_jitter", c.generating_jitter},
    {"status_style", c.status_style},
    {"failure_rate", c.failure_rate},
    {"failure_style", c.failure_style},
    {"failure_status", c.failure_status},
    {"completed_without_url_polls", c.completed_without_url_polls},
    {"id_shape", c.id_shape},
    {"unknown_id_status", c.unknown_id_status},
    {"status_code_as_string", c.status_code_as_string},
    {"strict_fields", c.strict_fields},
    {"credits_exhausted", c.credits_exhausted},
    {"auto_route", c.auto_route},
    {"status_provider_field", c.status_provider_field},
    {"meta_usage", c.meta_usage},
    {"balance_usd", c.balance_usd},
    {"enforce_balance", c.enforce_balance},
    {"charge_factor", c.charge_factor},
    {"refund_rate", c.refund_rate},
    {"billing_enabled", c.billing_enabled},
    {"account_429_message", c.account_429_message},
    {"url_ttl_s", c.url_ttl_s},
    {"fal_url_ttl_s", c.fal_url_ttl_s},
    {"expired_url_status", c.expired_url_status},
    {"bad_signature_status", c.bad_signature_status},
    {"video_bytes", c.video_bytes},
    {"create_cost_headers", c.create_cost_headers},
    {"poll_cost_headers", c.poll_cost_headers},
    {"credits_per_usd", c.credits_per_usd},
    {"prices", std::move(prices)},
    {"logs_enabled", c.logs_enabled},
    {"logs_delay_s", c.logs_delay_s},
    {"logs_rate_limit", c.logs_rate_limit},
    {"log_polls", c.log_polls},
    {"faults", std::move(faults)},
    {"slow_delay_s", c.slow_delay_s},
    {"retry_after_s", c.retry_after_s},
    {"idle_timeout_s", c.idle_timeout_s},
    {"io_timeout_s", c.io_timeout_s},
    {"max_body_bytes", c.max_body_bytes},
  };
}

} // namespace fake
