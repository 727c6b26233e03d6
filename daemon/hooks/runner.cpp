#include "daemon/hooks/runner.hpp"

#include "common/log.hpp"
#include "common/time.hpp"
#include "daemon/hooks/command.hpp"
#include "daemon/hooks/payload.hpp"
#include "daemon/provider/http_client.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace klingd::hooks {

namespace asio = boost::asio;
using namespace std::chrono;

constexpr std::size_t k_max_concurrent = 8;
constexpr auto k_idle_look = seconds(5); // a look at the outbox even without a wake

namespace {

store::HookPolicy policy_of(const common::Config& c)
{
  store::HookPolicy p;
  p.job_command = !c.hooks.on_job_done.command.empty();
  p.job_webhook = !c.hooks.on_job_done.webhook_url.empty();
  p.batch_command = !c.hooks.on_batch_done.command.empty();
  p.batch_webhook = !c.hooks.on_batch_done.webhook_url.empty();
  return p;
}

provider::HttpClient::Options http_options(const common::Config& c)
{
  provider::HttpClient::Options o;
  o.ca_file = c.provider.ca_file;
  o.max_response_bytes = 64 * 1024;
  o.user_agent = "klingd-hooks";
  return o;
}

} // namespace

struct HookRunner::Impl
{
  Impl(asio::any_io_executor e, const common::Config& c, store::JobStore& s, store::GroupCommitter& g)
    : ex(e), config(c), store(s), committer(g), http(e, http_options(c)), timer(e), parent(common::current_environment())
  {
    store.set_hook_policy(policy_of(config));
  }

  asio::any_io_executor ex;
  common::Config config;
  store::JobStore& store;
  store::GroupCommitter& committer;
  provider::HttpClient http;
  asio::thread_pool spawner{1}; // posix_spawnp waits for the child's exec: not on the loop
  asio::steady_timer timer;
  common::Environment parent;
  std::vector<std::int64_t> busy;
  bool dirty = true;
  bool stopped = false;

  asio::awaitable<void> loop();
  asio::awaitable<void> deliver(store::HookRow row);
  asio::awaitable<std::optional<std::string>> attempt(const HookSubject& s); // nullopt: delivered
  // `final`: no point in trying again (the hook was removed from the config, the job is gone).
  asio::awaitable<void> settle(const store::HookRow& row, std::optional<std::string> failure, bool final);
};

asio::awaitable<void> HookRunner::Impl::loop()
{
  while (!stopped) {
    dirty = false;
    const std::string now = format_rfc3339(now_utc());
    std::vector<store::HookRow> due;
    if (busy.size() < k_max_concurrent) {
      due = store.due_hooks(now, k_max_concurrent - busy.size(), busy);
    }
    for (auto& row : due) {
      busy.push_back(row.id);
      asio::co_spawn(ex, deliver(std::move(row)), log::coroutine_failure_handler("hooks.deliver"));
    }
    auto wait = duration_cast<milliseconds>(k_idle_look);
    if (auto next = store.next_hook_due(); next && busy.size() < k_max_concurrent) {
      if (auto at = parse_rfc3339(*next)) {
        wait = std::clamp(duration_cast<milliseconds>(*at - now_utc()), milliseconds(10), wait);
      }
    }
    if (dirty) {
      continue;
    }
    timer.expires_after(wait);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<std::optional<std::string>> HookRunner::Impl::attempt(const HookSubject& s)
{
  const auto& hook = s.row.scope == "batch" ? config.hooks.on_batch_done : config.hooks.on_job_done;
  if (s.row.kind == "command") {
    const auto timeout = milliseconds(static_cast<long>(config.hooks.command_timeout_s * 1000));
    const auto argv = hook.command; // a copy: a reload may replace the config while it runs
    const auto env = hook_env(s, config, parent);
    auto r = co_await run_command(ex, spawner.get_executor(), argv, env, timeout, config.hooks.output_max_bytes);
    const std::string result = r.describe();
    log::write(r.ok() ? log::Level::info : log::Level::warning, r.ok() ? "hook.command_done" : "hook.command_failed",
               {{"hook", s.row.id}, {"job", s.row.job_id}, {"event", event_name(s.row)}, {"result", result},
                {"stdout", r.out}, {"stderr", r.err}});
    if (r.ok()) {
      co_return std::nullopt;
    }
    co_return r.describe();
  }
  provider::HttpRequest req;
  req.method = "POST";
  req.url = hook.webhook_url;
  req.body = hook_body(s, config);
  req.idempotent = false; // never sent twice by the client itself: the runner counts attempts
  req.timeout = milliseconds(static_cast<long>(config.hooks.webhook_timeout_s * 1000));
  req.headers = {{"Content-Type", "application/json"},
                 {"X-Klingd-Event", std::string(event_name(s.row))},
                 {"X-Klingd-Delivery", std::to_string(s.row.id)},
                 {"X-Klingd-Signature", "sha256=" + hmac_sha256_hex(config.hooks.secret, req.body)}};
  auto res = co_await http.request(std::move(req));
  std::optional<std::string> failure;
  if (!res) {
    failure = fmt::format("webhook: {} ({})", res.error().message, provider::to_string(res.error().kind));
  } else if (res->status < 200 || res->status > 299) {
    failure = fmt::format("webhook answered HTTP {}", res->status);
  }
  log::write(failure ? log::Level::warning : log::Level::info, failure ? "hook.webhook_failed" : "hook.webhook_done",
             {{"hook", s.row.id}, {"job", s.row.job_id}, {"event", event_name(s.row)},
              {"status", res ? res->status : 0}, {"error", failure.value_or("")}});
  co_return failure;
}

asio::awaitable<void> HookRunner::Impl::deliver(store::HookRow row)
{
  std::optional<std::string> failure;
  bool final = true;
  HookSubject s{row, {}, {}};
  const auto& hook = row.scope == "batch" ? config.hooks.on_batch_done : config.hooks.on_job_done;
  if (row.kind == "command" ? hook.command.empty() : hook.webhook_url.empty()) {
    failure = fmt::format("hooks.{}.{} is no longer configured", row.scope == "batch" ? "on_batch_done" : "on_job_done",
                          row.kind == "command" ? "command" : "webhook.url");
  } else if (auto job = store.get(row.job_id)) {
    s.job = std::move(*job);
    if (row.scope == "batch") {
      s.batch = BatchFacts{row.subject, store.batch_counts(row.subject), store.batch_spend(row.subject)};
    }
    failure = co_await attempt(s);
    final = false;
  } else {
    failure = "the job is gone";
  }
  try {
    if (!stopped) {
      co_await settle(row, std::move(failure), final);
    }
  } catch (const std::exception& e) {
    // The store could not commit: the row stays pending and is tried again (run again, at worst).
    log::error("hook.settle_failed", {{"hook", row.id}, {"job", row.job_id}, {"error", e.what()}});
  }
  busy.erase(std::remove(busy.begin(), busy.end(), row.id), busy.end());
  dirty = true;
  timer.cancel();
}

asio::awaitable<void> HookRunner::Impl::settle(const store::HookRow& row, std::optional<std::string> failure,
                                               bool final)
{
  const int attempts = row.attempts + 1;
  const std::string now = format_rfc3339(now_utc());
  const std::string hook = fmt::format("{} {}", row.scope == "batch" ? "on_batch_done" : "on_job_done", row.kind);
  if (failure && !final && attempts < config.hooks.max_attempts) {
    const double pause = std::min(config.hooks.backoff_max_s, config.hooks.backoff_s * std::pow(2.0, attempts - 1));
    const auto next = format_rfc3339(now_utc() + milliseconds(static_cast<long>(pause * 1000)));
    co_await committer.run([&](store::JobStore& s) { s.hook_retry_later(row.id, attempts, next, *failure); });
    log::info("hook.retry_later", {{"hook", row.id}, {"job", row.job_id}, {"attempts", attempts}, {"next_at", next}});
    co_return;
  }
  co_await committer.run([&](store::JobStore& s) {
    s.hook_settled(row.id, failure ? "failed" : "delivered", attempts, failure, now);
    std::optional<store::JobError> err;
    if (failure) {
      err = store::JobError{"hook_failed", fmt::format("{} failed after {} attempt(s): {}", hook, attempts, *failure),
                            std::nullopt};
    }
    s.append_note(row.job_id, failure ? "hook_failed" : "hook_delivered", err);
  });
}

HookRunner::HookRunner(asio::any_io_executor ex, const common::Config& config, store::JobStore& store,
                       store::GroupCommitter& committer)
  : m_impl(std::make_unique<Impl>(ex, config, store, committer))
{
}

HookRunner::~HookRunner() = default;

void HookRunner::start()
{
  asio::co_spawn(m_impl->ex, m_impl->loop(), log::coroutine_failure_handler("hooks.loop"));
}

void HookRunner::wake()
{
  m_impl->dirty = true;
  m_impl->timer.cancel();
}

void HookRunner::reconfigure(const common::Config& config)
{
  m_impl->config = config;
  m_impl->store.set_hook_policy(policy_of(config));
  wake();
}

void HookRunner::stop()
{
  m_impl->stopped = true;
  m_impl->timer.cancel();
  m_impl->http.close_all();
}

} // namespace klingd::hooks
