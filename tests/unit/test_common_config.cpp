#include "common/config.hpp"
#include "tests/unit/scratch.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

using namespace klingd;
using namespace klingd::common;

namespace {
Environment base_env() { return {{"HOME", "/home/u"}}; }

std::string error_of(std::string_view text, Environment env = base_env())
{
  auto r = parse_config(text, "test.jsonc", env);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}
} // namespace

TEST_CASE("config: defaults when no file is given")
{
  auto r = load_config("", base_env());
  REQUIRE(r.ok());
  CHECK(r->provider.base_url == "https://api.aimlapi.com");
  CHECK(r->store.state_dir == "/home/u/.local/state/klingd");
  CHECK(r->store.db == "/home/u/.local/state/klingd/klingd.db");
  CHECK(r->store.videos_dir == "/home/u/.local/state/klingd/videos");
  CHECK(r->socket.path == "/run/klingd/klingd.sock");
  CHECK(r->socket.mode == 0660);
  CHECK(r->on_ambiguous_create == common::AmbiguousCreate::fail);
  CHECK(r->provider.route.empty()); // provider.route: none, the provider's own default applies
  CHECK(r->api_key.empty());
  CHECK(r->source == "(defaults)");
}

TEST_CASE("config: a full file with comments and trailing commas")
{
  test::ScratchDir dir;
  const auto path = dir.write("klingd.jsonc", R"({
    // comments are allowed
    "provider": { "base_url": "http://127.0.0.1:9000/", "allow_http": true, "max_in_flight": 3, "creates_per_minute": 0.5, "route": "fal", },
    "poll": { "initial_s": 0.2, "factor": 2, "max_s": 1.5, "jitter": 0 },
    /* block comment */
    "retry": { "max_attempts": 4, "base_s": 0.1, "max_s": 2 },
    "download": { "max_bytes": 1000000, "allow_http": true },
    "store": { "state_dir": "/tmp/st", "synchronous": "normal" },
    "socket": { "path": "/tmp/k.sock", "mode": "0600", "max_connections": 100 },
    "on_ambiguous_create": "retry",
    "allow_unknown_models": true,
    "log": { "level": "debug" },
    "dashboard": { "listen": "127.0.0.1:8787", "max_connections": 16 },
    "budget": { "max_usd_per_day": 12.5 },
    "reconcile": { "window_s": 60 },
  })");
  auto r = load_config(path, base_env());
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->provider.base_url == "http://127.0.0.1:9000"); // trailing slash trimmed
  CHECK(r->provider.max_in_flight == 3);
  CHECK(r->provider.creates_per_minute == doctest::Approx(0.5));
  CHECK(r->provider.route == "fal");
  CHECK(r->poll.initial_s == doctest::Approx(0.2));
  CHECK(r->poll.max_s == doctest::Approx(1.5));
  CHECK(r->retry.max_attempts == 4);
  CHECK(r->download.max_bytes == 1000000);
  CHECK(r->download.allow_http);
  CHECK(r->store.db == "/tmp/st/klingd.db");
  CHECK(r->store.synchronous == "normal");
  CHECK(r->socket.mode == 0600);
  CHECK(r->on_ambiguous_create == common::AmbiguousCreate::retry);
  CHECK(r->allow_unknown_models);
  CHECK(r->dashboard.listen == "127.0.0.1:8787");
  CHECK(r->dashboard.max_connections == 16);
  CHECK(r->socket.max_connections == 100);
  CHECK(r->provider.allow_http);
  CHECK(r->budget.max_usd_per_day == doctest::Approx(12.5));
  CHECK(r->source == path);
}

TEST_CASE("config: errors name the file and the key")
{
  struct Case
  {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
    {R"({"provider": {"bogus": 1}})", "provider.bogus: unknown key"},
    {R"({"nonsense": true})", "nonsense: unknown key"},
    {R"({"poll": {"factor": "fast"}})", "poll.factor: must be a number"},
    {R"({"poll": {"factor": 0.5}})", "poll.factor: must be at least 1"},
    {R"({"poll": {"initial_s": 0}})", "poll.initial_s: must be greater than 0"},
    {R"({"poll": {"initial_s": 10, "max_s": 5}})", "poll.max_s: must be at least poll.initial_s"},
    {R"({"provider": {"max_in_flight": 2.5}})", "provider.max_in_flight: must be a whole number"},
    {R"({"provider": {"max_in_flight": 0}})", "provider.max_in_flight: must be between 1"},
    {R"({"provider": {"base_url": "ftp://x"}})", "provider.base_url: must be an http or https URL"},
    {R"({"provider": {"base_url": "not a url"}})", "provider.base_url: is not an absolute URL"},
    {R"({"provider": 5})", "provider: must be an object"},
    {R"({"provider": {"route": "replicate"}})", "provider.route: must be one of \"\", \"kling\", \"klingai\", \"fal\", \"auto\" (got \"replicate\")"},
    {R"({"provider": {"route": true}})", "provider.route: must be a string"},
    // The key must not travel in clear text or sit in a URL that is logged (issue 17).
    {R"({"provider": {"base_url": "http://api.aimlapi.com"}})", "provider.base_url: \"http://api.aimlapi.com\" is http"},
    {R"({"provider": {"base_url": "http://127.0.0.1:9000", "allow_http": false}})", "set provider.allow_http to true"},
    {R"({"provider": {"base_url": "https://user:secret@api.aimlapi.com"}})",
     "provider.base_url: must not carry a user name or password"},
    {R"({"provider": {"base_url": "https://user@api.aimlapi.com", "allow_http": true}})",
     "provider.base_url: must not carry a user name or password"},
    {R"({"provider": {"allow_http": 1}})", "provider.allow_http: must be true or false"},
    {R"({"socket": {"max_connections": 2}})", "socket.max_connections: must be between 8"},
    {R"({"dashboard": {"max_connections": 0}})", "dashboard.max_connections: must be between 4"},
    {R"({"download": {"allow_http": "yes"}})", "download.allow_http: must be true or false"},
    {R"({"socket": {"mode": 660}})", "socket.mode: must be an octal string"},
    {R"({"socket": {"mode": "0999"}})", "socket.mode: must be an octal string"},
    {R"({"socket": {"mode": "0066"}})", "socket.mode: must give the owner read and write"},
    {R"({"on_ambiguous_create": "maybe"})", "on_ambiguous_create: must be one of \"fail\", \"retry\""},
    {R"({"log": {"level": "loud"}})", "log.level: must be one of"},
    {R"({"dashboard": {"listen": "0.0.0.0:8787"}})", "dashboard.listen: must be a loopback address"},
    {R"({"dashboard": {"listen": "127.0.0.1"}})", "dashboard.listen: must be host:port"},
    {R"({"store": {"synchronous": "off"}})", "store.synchronous: must be one of"},
    {R"({"retry": {"max_attempts": -1}})", "retry.max_attempts: must be between 1"},
    {R"({"budget": {"max_usd_per_day": -3}})", "budget.max_usd_per_day: must be at least 0"},
    {R"([1, 2])", "the top level must be an object"},
    {R"({"poll": {)", "not valid JSON"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const std::string msg = error_of(c.text);
    CHECK_MESSAGE(msg.find("test.jsonc") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(c.expect) != std::string::npos, msg);
  }
}

TEST_CASE("config: a missing file is an error naming it")
{
  auto r = load_config("/nonexistent/klingd.jsonc", base_env());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/nonexistent/klingd.jsonc") != std::string::npos);
}

TEST_CASE("config: environment overrides and systemd directories")
{
  Environment env = base_env();
  env["AIMLAPI_BASE_URL"] = "https://127.0.0.1:4443";
  env["KLINGD_SOCKET"] = "/tmp/x.sock";
  env["STATE_DIRECTORY"] = "/var/lib/klingd:/var/lib/other";
  auto r = parse_config(R"({"provider": {"base_url": "https://example.invalid"}})", "t", env);
  REQUIRE(r.ok());
  CHECK(r->provider.base_url == "https://127.0.0.1:4443");
  CHECK(r->socket.path == "/tmp/x.sock");
  CHECK(r->store.state_dir == "/var/lib/klingd");
  // An http:// override needs provider.allow_http like the file's own value.
  env["AIMLAPI_BASE_URL"] = "http://127.0.0.1:4443";
  auto plain = parse_config("", "t", env);
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.error().message.find("provider.allow_http") != std::string::npos);
  CHECK(parse_config(R"({"provider": {"allow_http": true}})", "t", env).ok());

  Environment env2 = base_env();
  env2["RUNTIME_DIRECTORY"] = "/run/klingd";
  env2["XDG_STATE_HOME"] = "/xdg/state";
  auto r2 = parse_config("", "t", env2);
  REQUIRE(r2.ok());
  CHECK(r2->socket.path == "/run/klingd/klingd.sock");
  CHECK(r2->store.state_dir == "/xdg/state/klingd");

  Environment env3 = base_env();
  env3["XDG_RUNTIME_DIR"] = "/run/user/1000";
  CHECK(default_socket_path(env3) == "/run/user/1000/klingd.sock");
  CHECK(client_socket_candidates(env3) == std::vector<std::string>{"/run/user/1000/klingd.sock", "/run/klingd/klingd.sock"});
  env3["AIMLAPI_BASE_URL"] = "gopher://x";
  auto bad = parse_config("", "t", env3);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("AIMLAPI_BASE_URL") != std::string::npos);
}

TEST_CASE("config: API key from file, credentials directory, environment; never printed")
{
  test::ScratchDir dir;
  const std::string secret = "sk-test-SECRET-123";
  const auto keyfile = dir.write("key", secret + "\n");
  dir.write("creds/aimlapi_key", "cred-SECRET-456\n");

  Environment env = base_env();
  env["AIMLAPI_KEY"] = "env-SECRET-789";
  env["CREDENTIALS_DIRECTORY"] = dir.file("creds");

  auto from_file = parse_config(R"({"provider": {"api_key_file": ")" + keyfile + R"("}})", "t", env);
  REQUIRE(from_file.ok());
  CHECK(from_file->api_key.value() == secret);
  CHECK(from_file->api_key.source == "file " + keyfile);

  auto from_creds = parse_config("", "t", env);
  REQUIRE(from_creds.ok());
  CHECK(from_creds->api_key.value() == "cred-SECRET-456");
  CHECK(from_creds->api_key.source == "credential aimlapi_key");

  env.erase("CREDENTIALS_DIRECTORY");
  auto from_env = parse_config("", "t", env);
  REQUIRE(from_env.ok());
  CHECK(from_env->api_key.value() == "env-SECRET-789");

  for (const auto* c : {&*from_file, &*from_creds, &*from_env}) {
    const std::string shown = to_json_text(*c);
    CHECK(shown.find("SECRET") == std::string::npos);
    CHECK(shown.find("<redacted>") != std::string::npos);
  }

  auto missing = parse_config(R"({"provider": {"api_key_file": "/nonexistent/key"}})", "t", env);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("provider.api_key_file") != std::string::npos);

  const auto badkey = dir.write("badkey", "abc def\n");
  auto bad = parse_config(R"({"provider": {"api_key_file": ")" + badkey + R"("}})", "t", env);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("abc") == std::string::npos);
}

TEST_CASE("config: the effective configuration printed by --check-config reads back the same")
{
  auto r = parse_config(R"({"poll": {"initial_s": 0.25}, "socket": {"mode": "0640"}})", "t", base_env());
  REQUIRE(r.ok());
  const std::string text = to_json_text(*r);
  CHECK(text.find("\"initial_s\": 0.25") != std::string::npos);
  CHECK(text.find("\"mode\": \"0640\"") != std::string::npos);
  auto printed = boost::json::parse(text).as_object();
  printed["provider"].as_object().erase("api_key");
  printed["provider"].as_object().erase("api_key_source");
  auto again = parse_config(boost::json::serialize(printed), "t2", base_env());
  REQUIRE_MESSAGE(again.ok(), (again.ok() ? "" : again.error().message));
  CHECK(to_json_text(*again) == text);
}

TEST_CASE("config: the shipped example config is valid")
{
  auto r = load_config(std::string(KLINGD_SOURCE_DIR) + "/config/klingd.jsonc", base_env());
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
}

TEST_CASE("config: store.retention, days per final state or null (forever)")
{
  auto dflt = parse_config("{}", "test.jsonc", base_env());
  REQUIRE(dflt.ok());
  CHECK_FALSE(dflt->store.retention.any());
  auto r = parse_config(R"({"store": {"retention": {"completed_days": 90, "failed_days": 7.5, "canceled_days": null}}})",
                        "test.jsonc", base_env());
  REQUIRE(r.ok());
  CHECK(r->store.retention.completed_days == 90);
  CHECK(r->store.retention.failed_days == 7.5);
  CHECK_FALSE(r->store.retention.canceled_days);
  CHECK(r->store.retention.any());
  // --check-config shows null for "forever" and reads back the same.
  auto text = to_json_text(*r);
  CHECK(text.find("\"canceled_days\": null") != std::string::npos);
  auto printed = boost::json::parse(text).as_object();
  printed["provider"].as_object().erase("api_key");
  printed["provider"].as_object().erase("api_key_source");
  auto back = parse_config(boost::json::serialize(printed), "back.json", base_env());
  REQUIRE_MESSAGE(back.ok(), (back.ok() ? "" : back.error().message));
  CHECK(back->store.retention.failed_days == 7.5);
  CHECK_FALSE(back->store.retention.canceled_days);

  auto msg = error_of(R"({"store": {"retention": {"failed_days": 0}}})");
  CHECK_MESSAGE(msg.find("store.retention.failed_days") != std::string::npos, msg);
  CHECK_MESSAGE(msg.find("at least 1") != std::string::npos, msg);
  msg = error_of(R"({"store": {"retention": {"completed_days": "30"}}})");
  CHECK_MESSAGE(msg.find("store.retention.completed_days: must be a number of days or null") != std::string::npos, msg);
  msg = error_of(R"({"store": {"retention": {"done_days": 3}}})");
  CHECK_MESSAGE(msg.find("store.retention.done_days: unknown key") != std::string::npos, msg);
  msg = error_of(R"({"store": {"retention": 30}})");
  CHECK_MESSAGE(msg.find("store.retention: must be an object") != std::string::npos, msg);
}

TEST_CASE("config: hooks and store.sidecar; the webhook secret is required and never shown")
{
  auto dflt = parse_config("{}", "test.jsonc", base_env());
  REQUIRE(dflt.ok());
  CHECK_FALSE(dflt->store.sidecar);
  CHECK_FALSE(dflt->hooks.on_job_done.any());
  CHECK(dflt->hooks.max_attempts == 5);
  test::ScratchDir dir;
  const auto secret = dir.write("hook_secret", "s3cr3t-value\n");
  auto r = parse_config(fmt::format(R"({{"store": {{"sidecar": true}}, "hooks": {{"secret_file": "{}",
    "on_job_done": {{"command": ["/bin/echo", "done"], "webhook": {{"url": "https://hooks.example/x"}}}},
    "on_batch_done": {{"command": ["notify"]}}, "max_attempts": 2}}}})", secret),
                        "test.jsonc", base_env());
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->store.sidecar);
  CHECK(r->hooks.on_job_done.command == std::vector<std::string>{"/bin/echo", "done"});
  CHECK(r->hooks.on_job_done.webhook_url == "https://hooks.example/x");
  CHECK(r->hooks.on_batch_done.command == std::vector<std::string>{"notify"});
  CHECK(r->hooks.secret == "s3cr3t-value");
  CHECK(r->hooks.max_attempts == 2);
  const auto text = to_json_text(*r);
  CHECK(text.find("s3cr3t") == std::string::npos);
  CHECK(text.find("\"secret\": \"\"") != std::string::npos); // from the file: only secret_file is shown
  auto inline_secret = parse_config(R"({"hooks": {"secret": "s3cr3t-inline"}})", "test.jsonc", base_env());
  REQUIRE(inline_secret.ok());
  const auto shown = to_json_text(*inline_secret);
  CHECK(shown.find("s3cr3t-inline") == std::string::npos);
  CHECK(shown.find("\"secret\": \"<redacted>\"") != std::string::npos);

  auto msg = error_of(R"({"hooks": {"on_job_done": {"webhook": {"url": "http://127.0.0.1:9/h"}}}})");
  CHECK_MESSAGE(msg.find("hooks.secret_file: a webhook is set but no secret") != std::string::npos, msg);
  msg = error_of(R"({"hooks": {"on_job_done": {"command": "echo hi"}}})");
  CHECK_MESSAGE(msg.find("hooks.on_job_done.command: must be an array of strings") != std::string::npos, msg);
  msg = error_of(R"({"hooks": {"on_job_done": {"command": ["echo", ""]}}})");
  CHECK_MESSAGE(msg.find("hooks.on_job_done.command: must hold non-empty strings") != std::string::npos, msg);
  msg = error_of(R"({"hooks": {"secret": "s", "on_batch_done": {"webhook": {"url": "ftp://x/y"}}}})");
  CHECK_MESSAGE(msg.find("hooks.on_batch_done.webhook.url: must be an http or https URL") != std::string::npos, msg);
  msg = error_of(R"({"hooks": {"secret": "s", "secret_file": "/nonexistent"}})");
  CHECK_MESSAGE(msg.find("not both") != std::string::npos, msg);
  msg = error_of(R"({"hooks": {"secret_file": "/nonexistent/secret"}})");
  CHECK_MESSAGE(msg.find("hooks.secret_file: cannot read /nonexistent/secret") != std::string::npos, msg);
}
