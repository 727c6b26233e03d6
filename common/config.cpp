#include "common/config.hpp"

#include "common/validate_request.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <unistd.h>

extern char** environ;

namespace klingd::common {

namespace json = boost::json;

namespace {

// One configuration key: how to set it from JSON (validating) and how to show it.
struct KeyDef
{
  std::string_view name;
  std::function<std::string(const json::value&, Config&)> set; // returns an error message or ""
  std::function<json::value(const Config&)> get;
};

std::string show(const json::value& v)
{
  std::string s = json::serialize(v);
  if (s.size() > 60) {
    s = s.substr(0, 57) + "...";
  }
  return s;
}

std::optional<double> as_number(const json::value& v)
{
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  if (v.is_double()) return v.as_double();
  return std::nullopt;
}


template <typename Get>
KeyDef number_key(std::string_view name, Get ref, double lo, double hi, bool lo_open)
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      auto n = as_number(v);
      if (!n || !std::isfinite(*n)) {
        return fmt::format("must be a number (got {})", json_kind_name(v));
      }
      if ((lo_open ? *n <= lo : *n < lo) || *n > hi) {
        return fmt::format("must be {} {} and at most {} (got {})", lo_open ? "greater than" : "at least", lo, hi, show(v));
      }
      ref(c) = *n;
      return {};
    },
    [=](const Config& c) -> json::value { return ref(const_cast<Config&>(c)); }};
}

template <typename Int, typename Get>
KeyDef integer_key(std::string_view name, Get ref, std::int64_t lo, std::int64_t hi)
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      std::int64_t n;
      if (v.is_int64()) {
        n = v.as_int64();
      } else if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        n = static_cast<std::int64_t>(v.as_uint64());
      } else if (v.is_double() && std::floor(v.as_double()) == v.as_double() && std::abs(v.as_double()) < 9e15) {
        n = static_cast<std::int64_t>(v.as_double());
      } else {
        return fmt::format("must be a whole number (got {})", v.is_number() ? show(v) : json_kind_name(v));
      }
      if (n < lo || n > hi) {
        return fmt::format("must be between {} and {} (got {})", lo, hi, n);
      }
      ref(c) = static_cast<Int>(n);
      return {};
    },
    [=](const Config& c) -> json::value { return static_cast<std::int64_t>(ref(const_cast<Config&>(c))); }};
}

template <typename Get>
KeyDef string_key(std::string_view name, Get ref, std::function<std::string(const std::string&)> check = {})
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      if (!v.is_string()) {
        return fmt::format("must be a string (got {})", json_kind_name(v));
      }
      std::string s(v.as_string());
      if (s.find('\0') != std::string::npos) {
        return "must not contain NUL";
      }
      if (check) {
        if (auto e = check(s); !e.empty()) {
          return e;
        }
      }
      ref(c) = std::move(s);
      return {};
    },
    [=](const Config& c) -> json::value { return json::string(ref(const_cast<Config&>(c))); }};
}

// A number of days (at least 1: a job finished today still counts against today's
// budget), or null for "keep forever".
template <typename Get>
KeyDef days_or_null_key(std::string_view name, Get ref)
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      if (v.is_null()) {
        ref(c) = std::nullopt;
        return {};
      }
      auto n = as_number(v);
      if (!n || !std::isfinite(*n)) {
        return fmt::format("must be a number of days or null for \"keep forever\" (got {})", json_kind_name(v));
      }
      if (*n < 1 || *n > 36500) {
        return fmt::format("must be at least 1 and at most 36500 days, or null (got {})", show(v));
      }
      ref(c) = *n;
      return {};
    },
    [=](const Config& c) -> json::value {
      const auto& d = ref(const_cast<Config&>(c));
      return d ? json::value(*d) : json::value(nullptr);
    }};
}

template <typename Get>
KeyDef bool_key(std::string_view name, Get ref)
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      if (!v.is_bool()) {
        return fmt::format("must be true or false (got {})", json_kind_name(v));
      }
      ref(c) = v.as_bool();
      return {};
    },
    [=](const Config& c) -> json::value { return ref(const_cast<Config&>(c)); }};
}

std::function<std::string(const std::string&)> one_of(std::vector<std::string> allowed);

// A string naming one of `values`, by their to_string names.
template <typename Enum, typename Get>
KeyDef enum_key(std::string_view name, Get ref, std::vector<Enum> values)
{
  std::vector<std::string> names;
  for (auto e : values) {
    names.emplace_back(to_string(e));
  }
  auto check = one_of(names);
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      if (!v.is_string()) {
        return fmt::format("must be a string (got {})", json_kind_name(v));
      }
      std::string s(v.as_string());
      if (auto e = check(s); !e.empty()) {
        return e;
      }
      for (auto e : values) {
        if (to_string(e) == s) {
          ref(c) = e;
        }
      }
      return {};
    },
    [=](const Config& c) -> json::value { return json::string(to_string(ref(const_cast<Config&>(c)))); }};
}

// A command line as an argv array of non-empty strings (no shell); [] for none.
template <typename Get>
KeyDef argv_key(std::string_view name, Get ref)
{
  return KeyDef{
    name,
    [=](const json::value& v, Config& c) -> std::string {
      if (!v.is_array()) {
        return fmt::format("must be an array of strings, the program then its arguments (got {})", json_kind_name(v));
      }
      std::vector<std::string> argv;
      for (const auto& a : v.as_array()) {
        if (!a.is_string() || a.as_string().empty() || std::string_view(a.as_string()).find('\0') != std::string_view::npos) {
          return fmt::format("must hold non-empty strings without NUL (got {})", show(a));
        }
        argv.emplace_back(a.as_string());
      }
      ref(c) = std::move(argv);
      return {};
    },
    [=](const Config& c) -> json::value {
      json::array out;
      for (const auto& a : ref(const_cast<Config&>(c))) {
        out.emplace_back(json::string(a));
      }
      return out;
    }};
}

std::function<std::string(const std::string&)> one_of(std::vector<std::string> allowed)
{
  return [allowed](const std::string& s) -> std::string {
    for (const auto& a : allowed) {
      if (a == s) {
        return {};
      }
    }
    std::string list;
    for (const auto& a : allowed) {
      list += (list.empty() ? "\"" : ", \"") + a + "\"";
    }
    return fmt::format("must be one of {} (got \"{}\")", list, s);
  };
}

std::string check_base_url(const std::string& s)
{
  auto u = boost::urls::parse_absolute_uri(s);
  if (!u) {
    return fmt::format("is not an absolute URL (\"{}\")", s);
  }
  if (u->scheme() != "https" && u->scheme() != "http") {
    return fmt::format("must be an http or https URL (got scheme \"{}\")", u->scheme());
  }
  if (u->host().empty()) {
    return "has no host";
  }
  if (u->has_query() || u->has_fragment()) {
    return "must not have a query or fragment";
  }
  if (u->has_userinfo()) {
    // The URL is logged and shown by `klingctl status`; credentials do not belong in it.
    return "must not carry a user name or password (the API key goes in provider.api_key_file)";
  }
  return {};
}

std::string check_listen(const std::string& s)
{
  if (s.empty()) {
    return {};
  }
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 == s.size()) {
    return fmt::format("must be host:port, e.g. 127.0.0.1:8787 (got \"{}\")", s);
  }
  std::string host = s.substr(0, colon);
  const std::string port = s.substr(colon + 1);
  for (char ch : port) {
    if (ch < '0' || ch > '9') {
      return fmt::format("has a bad port \"{}\"", port);
    }
  }
  if (port.size() > 5 || std::stoi(port) > 65535) {
    return fmt::format("has a bad port \"{}\"", port);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0) {
    return {};
  }
  return fmt::format("must be a loopback address (127.0.0.0/8, [::1] or localhost); \"{}\" is not", host);
}

const std::vector<KeyDef>& key_defs()
{
  static const std::vector<KeyDef> defs = [] {
    std::vector<KeyDef> d;
    d.push_back(string_key("provider.base_url", [](Config& c) -> auto& { return c.provider.base_url; }, check_base_url));
    d.push_back(bool_key("provider.allow_http", [](Config& c) -> auto& { return c.provider.allow_http; }));
    d.push_back(string_key("provider.api_key_file", [](Config& c) -> auto& { return c.provider.api_key_file; }));
    d.push_back(string_key("provider.ca_file", [](Config& c) -> auto& { return c.provider.ca_file; }));
    d.push_back(number_key("provider.request_timeout_s", [](Config& c) -> auto& { return c.provider.request_timeout_s; }, 0, 3600, true));
    d.push_back(integer_key<int>("provider.max_in_flight", [](Config& c) -> auto& { return c.provider.max_in_flight; }, 1, 100000));
    d.push_back(number_key("provider.balance_check_s", [](Config& c) -> auto& { return c.provider.balance_check_s; }, 0, 86400, false));
    d.push_back(number_key("provider.creates_per_minute", [](Config& c) -> auto& { return c.provider.creates_per_minute; }, 0, 1e6, true));
    d.push_back(string_key("provider.route", [](Config& c) -> auto& { return c.provider.route; }, one_of({"", "kling", "klingai", "fal", "auto"})));
    d.push_back(number_key("poll.initial_s", [](Config& c) -> auto& { return c.poll.initial_s; }, 0, 86400, true));
    d.push_back(number_key("poll.factor", [](Config& c) -> auto& { return c.poll.factor; }, 1, 10, false));
    d.push_back(number_key("poll.max_s", [](Config& c) -> auto& { return c.poll.max_s; }, 0, 86400, true));
    d.push_back(number_key("poll.jitter", [](Config& c) -> auto& { return c.poll.jitter; }, 0, 0.9, false));
    d.push_back(number_key("poll.slow_after_s", [](Config& c) -> auto& { return c.poll.slow_after_s; }, 0, 1e7, false));
    d.push_back(number_key("poll.slow_s", [](Config& c) -> auto& { return c.poll.slow_s; }, 0, 86400, true));
    d.push_back(bool_key("poll.learn", [](Config& c) -> auto& { return c.poll.learn; }));
    d.push_back(integer_key<int>("retry.max_attempts", [](Config& c) -> auto& { return c.retry.max_attempts; }, 1, 1000));
    d.push_back(number_key("retry.base_s", [](Config& c) -> auto& { return c.retry.base_s; }, 0, 86400, true));
    d.push_back(number_key("retry.max_s", [](Config& c) -> auto& { return c.retry.max_s; }, 0, 86400, true));
    d.push_back(number_key("retry.rate_limited_max_s", [](Config& c) -> auto& { return c.retry.rate_limited_max_s; }, 0, 30 * 86400, true));
    d.push_back(integer_key<std::uint64_t>("download.max_bytes", [](Config& c) -> auto& { return c.download.max_bytes; }, 1, 1LL << 50));
    d.push_back(number_key("download.timeout_s", [](Config& c) -> auto& { return c.download.timeout_s; }, 0, 86400, true));
    d.push_back(bool_key("download.allow_http", [](Config& c) -> auto& { return c.download.allow_http; }));
    d.push_back(integer_key<int>("download.max_concurrent", [](Config& c) -> auto& { return c.download.max_concurrent; }, 1, 1000));
    d.push_back(string_key("store.state_dir", [](Config& c) -> auto& { return c.store.state_dir; }));
    d.push_back(string_key("store.db", [](Config& c) -> auto& { return c.store.db; }));
    d.push_back(string_key("store.videos_dir", [](Config& c) -> auto& { return c.store.videos_dir; }));
    d.push_back(string_key("store.synchronous", [](Config& c) -> auto& { return c.store.synchronous; }, one_of({"full", "normal", "extra"})));
    d.push_back(days_or_null_key("store.retention.completed_days", [](Config& c) -> auto& { return c.store.retention.completed_days; }));
    d.push_back(days_or_null_key("store.retention.failed_days", [](Config& c) -> auto& { return c.store.retention.failed_days; }));
    d.push_back(days_or_null_key("store.retention.canceled_days", [](Config& c) -> auto& { return c.store.retention.canceled_days; }));
    d.push_back(string_key("socket.path", [](Config& c) -> auto& { return c.socket.path; }));
    d.push_back(KeyDef{
      "socket.mode",
      [](const json::value& v, Config& c) -> std::string {
        // Octal text like "0660" (JSON has no octal literals; a decimal 660 would be a trap).
        if (!v.is_string()) {
          return fmt::format("must be an octal string like \"0660\" (got {})", json_kind_name(v));
        }
        const std::string s(v.as_string());
        if (s.empty() || s.size() > 4) {
          return fmt::format("must be an octal string like \"0660\" (got \"{}\")", s);
        }
        unsigned mode = 0;
        for (char ch : s) {
          if (ch < '0' || ch > '7') {
            return fmt::format("must be an octal string like \"0660\" (got \"{}\")", s);
          }
          mode = mode * 8 + static_cast<unsigned>(ch - '0');
        }
        if (mode > 0777) {
          return fmt::format("must be at most \"0777\" (got \"{}\")", s);
        }
        if ((mode & 0600) != 0600) {
          return fmt::format("must give the owner read and write (got \"{}\")", s);
        }
        c.socket.mode = mode;
        return {};
      },
      [](const Config& c) -> json::value { return json::string(fmt::format("{:04o}", c.socket.mode)); }});
    d.push_back(integer_key<std::size_t>("socket.max_connections", [](Config& c) -> auto& { return c.socket.max_connections; }, 8, 1000000));
    d.push_back(integer_key<std::uint64_t>("socket.max_body_bytes", [](Config& c) -> auto& { return c.socket.max_body_bytes; }, 1024, 1LL << 34));
    d.push_back(enum_key("on_ambiguous_create", [](Config& c) -> auto& { return c.on_ambiguous_create; },
                         std::vector{AmbiguousCreate::fail, AmbiguousCreate::retry}));
    d.push_back(string_key("models_file", [](Config& c) -> auto& { return c.models_file; }));
    d.push_back(bool_key("allow_unknown_models", [](Config& c) -> auto& { return c.allow_unknown_models; }));
    d.push_back(string_key("log.level", [](Config& c) -> auto& { return c.log.level; }, one_of({"debug", "info", "warning", "error"})));
    d.push_back(string_key("dashboard.listen", [](Config& c) -> auto& { return c.dashboard.listen; }, check_listen));
    d.push_back(integer_key<std::size_t>("dashboard.max_connections", [](Config& c) -> auto& { return c.dashboard.max_connections; }, 4, 100000));
    d.push_back(number_key("budget.max_usd_per_day", [](Config& c) -> auto& { return c.budget.max_usd_per_day; }, 0, 1e9, false));
    d.push_back(number_key("reconcile.window_s", [](Config& c) -> auto& { return c.reconcile.window_s; }, 0, 30 * 86400, false));
    d.push_back(bool_key("reconcile.absence_proof", [](Config& c) -> auto& { return c.reconcile.absence_proof; }));
    d.push_back(number_key("reconcile.absence_slack_s", [](Config& c) -> auto& { return c.reconcile.absence_slack_s; }, 0, 86400, false));
    d.push_back(bool_key("store.sidecar", [](Config& c) -> auto& { return c.store.sidecar; }));
    auto webhook_url = [](const std::string& s) { return s.empty() ? std::string() : check_base_url(s); };
    d.push_back(argv_key("hooks.on_job_done.command", [](Config& c) -> auto& { return c.hooks.on_job_done.command; }));
    d.push_back(string_key("hooks.on_job_done.webhook.url", [](Config& c) -> auto& { return c.hooks.on_job_done.webhook_url; }, webhook_url));
    d.push_back(argv_key("hooks.on_batch_done.command", [](Config& c) -> auto& { return c.hooks.on_batch_done.command; }));
    d.push_back(string_key("hooks.on_batch_done.webhook.url", [](Config& c) -> auto& { return c.hooks.on_batch_done.webhook_url; }, webhook_url));
    d.push_back(string_key("hooks.secret_file", [](Config& c) -> auto& { return c.hooks.secret_file; }));
    d.push_back(KeyDef{
      "hooks.secret",
      [](const json::value& v, Config& c) -> std::string {
        if (!v.is_string()) {
          return fmt::format("must be a string (got {})", json_kind_name(v));
        }
        c.hooks.secret = std::string(v.as_string());
        return {};
      },
      // Shown as set or not, never the value; "" when it came from hooks.secret_file.
      [](const Config& c) -> json::value {
        return c.hooks.secret.empty() || !c.hooks.secret_file.empty() ? json::value("") : json::value("<redacted>");
      }});
    d.push_back(number_key("hooks.command_timeout_s", [](Config& c) -> auto& { return c.hooks.command_timeout_s; }, 0, 86400, true));
    d.push_back(number_key("hooks.webhook_timeout_s", [](Config& c) -> auto& { return c.hooks.webhook_timeout_s; }, 0, 3600, true));
    d.push_back(integer_key<int>("hooks.max_attempts", [](Config& c) -> auto& { return c.hooks.max_attempts; }, 1, 1000));
    d.push_back(number_key("hooks.backoff_s", [](Config& c) -> auto& { return c.hooks.backoff_s; }, 0, 86400, true));
    d.push_back(number_key("hooks.backoff_max_s", [](Config& c) -> auto& { return c.hooks.backoff_max_s; }, 0, 86400, true));
    d.push_back(integer_key<std::size_t>("hooks.output_max_bytes", [](Config& c) -> auto& { return c.hooks.output_max_bytes; }, 0, 1 << 20));
    d.push_back(number_key("shutdown.grace_s", [](Config& c) -> auto& { return c.shutdown.grace_s; }, 0, 3600, false));
    return d;
  }();
  return defs;
}

const KeyDef* find_key(std::string_view name)
{
  for (const auto& d : key_defs()) {
    if (d.name == name) {
      return &d;
    }
  }
  return nullptr;
}

bool is_section(std::string_view prefix)
{
  for (const auto& d : key_defs()) {
    if (d.name.size() > prefix.size() && d.name.substr(0, prefix.size()) == prefix && d.name[prefix.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::string apply_object(const json::object& obj, const std::string& prefix, Config& c)
{
  for (const auto& [k, v] : obj) {
    const std::string name = prefix.empty() ? std::string(k) : prefix + "." + std::string(k);
    if (!prefix.empty() && k.empty()) {
      return fmt::format("{}: empty key", prefix);
    }
    if (const KeyDef* d = find_key(name)) {
      if (auto e = d->set(v, c); !e.empty()) {
        return fmt::format("{}: {}", name, e);
      }
    } else if (is_section(name)) {
      if (!v.is_object()) {
        return fmt::format("{}: must be an object (got {})", name, json_kind_name(v));
      }
      if (auto e = apply_object(v.as_object(), name, c); !e.empty()) {
        return e;
      }
    } else if (prefix.empty() && !k.empty() && k.front() == '$') {
      // "$schema"-style annotations are allowed at the top level.
    } else {
      return fmt::format("{}: unknown key", name);
    }
  }
  return {};
}

std::string env_get(const Environment& env, const std::string& name)
{
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

std::string trim_trailing(std::string s)
{
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) {
    s.pop_back();
  }
  return s;
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error("config", fmt::format("cannot read {}", path));
  }
  std::string data;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return make_error("config", fmt::format("{} is larger than {} bytes", path, max_bytes));
    }
  }
  return data;
}

// Applies environment overrides and directory defaults; then cross-key checks.
std::string finish(Config& c, const Environment& env)
{
  if (auto v = env_get(env, "AIMLAPI_BASE_URL"); !v.empty()) {
    if (auto e = check_base_url(v); !e.empty()) {
      return fmt::format("AIMLAPI_BASE_URL (environment): {}", e);
    }
    c.provider.base_url = v;
  }
  while (c.provider.base_url.size() > 1 && c.provider.base_url.back() == '/') {
    c.provider.base_url.pop_back();
  }
  if (c.provider.base_url.rfind("http://", 0) == 0 && !c.provider.allow_http) {
    return fmt::format("provider.base_url: \"{}\" is http: the API key would travel in clear text; use https, "
                       "or set provider.allow_http to true (a local test provider only)",
                       c.provider.base_url);
  }
  if (auto v = env_get(env, "KLINGD_SOCKET"); !v.empty()) {
    c.socket.path = v;
  }
  if (c.store.state_dir.empty()) {
    if (auto v = env_get(env, "STATE_DIRECTORY"); !v.empty()) {
      c.store.state_dir = v.substr(0, v.find(':')); // systemd joins several with ':'
    } else if (auto x = env_get(env, "XDG_STATE_HOME"); !x.empty()) {
      c.store.state_dir = x + "/klingd";
    } else if (auto h = env_get(env, "HOME"); !h.empty()) {
      c.store.state_dir = h + "/.local/state/klingd";
    } else {
      return "store.state_dir: not set, and neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set to derive it";
    }
  }
  if (c.store.db.empty()) {
    c.store.db = c.store.state_dir + "/klingd.db";
  }
  if (c.store.videos_dir.empty()) {
    c.store.videos_dir = c.store.state_dir + "/videos";
  }
  if (c.socket.path.empty()) {
    c.socket.path = default_socket_path(env);
  }
  if (c.poll.max_s < c.poll.initial_s) {
    return fmt::format("poll.max_s: must be at least poll.initial_s ({} < {})", c.poll.max_s, c.poll.initial_s);
  }
  if (c.hooks.backoff_max_s < c.hooks.backoff_s) {
    return fmt::format("hooks.backoff_max_s: must be at least hooks.backoff_s ({} < {})", c.hooks.backoff_max_s,
                       c.hooks.backoff_s);
  }
  if (c.retry.max_s < c.retry.base_s) {
    return fmt::format("retry.max_s: must be at least retry.base_s ({} < {})", c.retry.max_s, c.retry.base_s);
  }
  return {};
}

Result<Ok> load_api_key(Config& c, const Environment& env)
{
  constexpr std::size_t k_max_key_file = 64 * 1024;
  std::string path;
  std::string source;
  if (!c.provider.api_key_file.empty()) {
    path = c.provider.api_key_file;
    source = "file " + path;
  } else if (auto dir = env_get(env, "CREDENTIALS_DIRECTORY"); !dir.empty() && ::access((dir + "/aimlapi_key").c_str(), F_OK) == 0) {
    path = dir + "/aimlapi_key";
    source = "credential aimlapi_key";
  }
  std::string key;
  if (!path.empty()) {
    auto data = read_file(path, k_max_key_file);
    if (!data) {
      return make_error("config", fmt::format("provider.api_key_file: {}", data.error().message));
    }
    key = trim_trailing(std::move(*data));
  } else if (auto v = env_get(env, "AIMLAPI_KEY"); !v.empty()) {
    key = trim_trailing(v);
    source = "environment AIMLAPI_KEY";
  }
  for (unsigned char ch : key) {
    // The key goes into an HTTP header: refuse what would break or inject into it.
    if (ch < 0x21 || ch == 0x7f) {
      return make_error("config", fmt::format("the API key from {} contains whitespace or control characters", source));
    }
  }
  c.api_key = Secret(std::move(key));
  c.api_key.source = c.api_key.empty() ? std::string("none") : source;
  return Ok{};
}

// The webhook signing key: hooks.secret_file read here (so a reload picks up a new one).
Result<Ok> load_hook_secret(Config& c)
{
  if (!c.hooks.secret_file.empty()) {
    if (!c.hooks.secret.empty()) {
      return make_error("config", "hooks.secret_file: set hooks.secret_file or hooks.secret, not both");
    }
    auto data = read_file(c.hooks.secret_file, 64 * 1024);
    if (!data) {
      return make_error("config", fmt::format("hooks.secret_file: {}", data.error().message));
    }
    c.hooks.secret = trim_trailing(std::move(*data));
  }
  const bool webhook = !c.hooks.on_job_done.webhook_url.empty() || !c.hooks.on_batch_done.webhook_url.empty();
  if (webhook && c.hooks.secret.empty()) {
    return make_error("config", "hooks.secret_file: a webhook is set but no secret signs it (hooks.secret_file or "
                                "hooks.secret)");
  }
  return Ok{};
}

} // namespace

std::string_view to_string(AmbiguousCreate policy)
{
  return policy == AmbiguousCreate::retry ? "retry" : "fail";
}

Environment current_environment()
{
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  return env;
}

std::string default_socket_path(const Environment& env)
{
  if (auto v = env_get(env, "KLINGD_SOCKET"); !v.empty()) {
    return v;
  }
  if (auto v = env_get(env, "RUNTIME_DIRECTORY"); !v.empty()) {
    return v.substr(0, v.find(':')) + "/klingd.sock";
  }
  if (auto v = env_get(env, "XDG_RUNTIME_DIR"); !v.empty()) {
    return v + "/klingd.sock";
  }
  return "/run/klingd/klingd.sock";
}

std::vector<std::string> client_socket_candidates(const Environment& env)
{
  if (auto v = env_get(env, "KLINGD_SOCKET"); !v.empty()) {
    return {v};
  }
  std::vector<std::string> out;
  if (auto v = env_get(env, "XDG_RUNTIME_DIR"); !v.empty()) {
    out.push_back(v + "/klingd.sock");
  }
  out.push_back("/run/klingd/klingd.sock");
  return out;
}

Result<Config> parse_config(std::string_view text, std::string_view origin, const Environment& env)
{
  Config c;
  c.source = std::string(origin);
  if (!text.empty()) {
    json::parse_options opts;
    opts.allow_comments = true;
    opts.allow_trailing_commas = true;
    opts.max_depth = 32;
    boost::system::error_code ec;
    json::value root = json::parse(text, ec, {}, opts);
    if (ec) {
      return make_error("config", fmt::format("config {}: not valid JSON: {}", origin, ec.message()));
    }
    if (!root.is_object()) {
      return make_error("config", fmt::format("config {}: the top level must be an object (got {})", origin, json_kind_name(root)));
    }
    if (auto e = apply_object(root.as_object(), "", c); !e.empty()) {
      return make_error("config", fmt::format("config {}: {}", origin, e));
    }
  }
  if (auto e = finish(c, env); !e.empty()) {
    return make_error("config", fmt::format("config {}: {}", origin, e));
  }
  if (auto r = load_api_key(c, env); !r) {
    return make_error("config", fmt::format("config {}: {}", origin, r.error().message));
  }
  if (auto r = load_hook_secret(c); !r) {
    return make_error("config", fmt::format("config {}: {}", origin, r.error().message));
  }
  return c;
}

Result<Config> load_config(const std::string& path, const Environment& env)
{
  if (path.empty()) {
    return parse_config("", "(defaults)", env);
  }
  auto text = read_file(path, 1 << 20);
  if (!text) {
    return make_error("config", fmt::format("config {}: {}", path, text.error().message));
  }
  return parse_config(*text, path, env);
}

std::string to_json_text(const Config& c)
{
  // Nested objects in key order, then the key's source (never the key).
  json::object root;
  for (const auto& d : key_defs()) {
    json::object* obj = &root;
    std::string_view name = d.name;
    std::size_t dot;
    while ((dot = name.find('.')) != std::string_view::npos) {
      auto& sub = (*obj)[name.substr(0, dot)];
      if (!sub.is_object()) {
        sub = json::object();
      }
      obj = &sub.as_object();
      name = name.substr(dot + 1);
    }
    (*obj)[name] = d.get(c);
  }
  root["provider"].as_object()["api_key"] = c.api_key.empty() ? json::value(nullptr) : json::value("<redacted>");
  root["provider"].as_object()["api_key_source"] = json::string(c.api_key.source);
  std::ostringstream out;
  // Pretty print with two-space indentation.
  std::function<void(const json::value&, int)> pretty = [&](const json::value& v, int indent) {
    if (v.is_object() && !v.as_object().empty()) {
      out << "{\n";
      bool first = true;
      for (const auto& [k, sub] : v.as_object()) {
        if (!first) {
          out << ",\n";
        }
        first = false;
        out << std::string(static_cast<std::size_t>(indent + 2), ' ') << json::serialize(json::string(k)) << ": ";
        pretty(sub, indent + 2);
      }
      out << "\n" << std::string(static_cast<std::size_t>(indent), ' ') << "}";
    } else if (v.is_double()) {
      out << fmt::format("{}", v.as_double()); // "0.25", not Boost.JSON's "2.5E-1"
    } else {
      out << json::serialize(v);
    }
  };
  pretty(root, 0);
  out << "\n";
  return out.str();
}

} // namespace klingd::common
