// Scripted stand-ins for the engine's ports (daemon/engine/ports.hpp) and a fixture that runs
// a real Engine on a real store in a scratch directory, on one event loop, in milliseconds:
// the provider answers as each test scripts it, its request log is a list the test fills.
#pragma once

#include "common/catalog.hpp"
#include "common/config.hpp"
#include "common/time.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/engine/ports.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/job_store.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace klingd::test {

struct ScriptedLogRow
{
  provider::LogRow row;
  bool visible = true; // false: the log has not caught up with it yet
};

class ScriptedProvider final : public engine::ProviderPort
{
public:
  // Per create call (by client request id). Default: accepted, generation "gen-<crid>", with a
  // visible `succeeded` log row for it.
  std::function<provider::CreateResult(const std::string& crid)> on_create;
  // Per poll (by generation id). Default: completed with a URL.
  std::function<provider::PollResult(const std::string& generation)> on_poll;
  std::vector<std::string> creates; // client request ids, in order
  std::vector<std::string> bodies;  // what each create sent
  std::map<std::string, int> polls; // by generation
  std::vector<ScriptedLogRow> log;  // oldest first
  int log_queries = 0;

  static provider::CreateResult accepted(const std::string& generation)
  {
    provider::CreateResult r;
    r.generation_id = generation;
    r.provider_status = "queued";
    return r;
  }
  static provider::CreateResult ambiguous()
  {
    provider::CreateResult r;
    r.outcome.cls = provider::CallClass::ambiguous;
    r.outcome.message = "no answer after sending (scripted)";
    return r;
  }
  static provider::PollResult status(const std::string& s, std::optional<std::string> url = std::nullopt)
  {
    provider::PollResult r;
    provider::GenerationStatus st;
    st.status = s;
    st.kind = s == "completed" ? provider::GenerationStatus::Kind::completed
              : (s == "failed" || s == "error") ? provider::GenerationStatus::Kind::failed
                                                : provider::GenerationStatus::Kind::working;
    st.video_url = std::move(url);
    if (st.kind == provider::GenerationStatus::Kind::failed) {
      st.error_message = "scripted failure";
    }
    r.status = st;
    return r;
  }
  void add_log(std::string status, std::optional<std::string> crid, std::optional<std::string> generation,
               SysTime created, bool visible = true, std::string model = "klingai/video-v3-pro-text-to-video")
  {
    ScriptedLogRow r;
    r.row.status = std::move(status);
    r.row.client_request_id = std::move(crid);
    r.row.inference_id = std::move(generation);
    r.row.model = std::move(model);
    r.row.created = format_rfc3339(created);
    r.visible = visible;
    log.push_back(std::move(r));
  }
  int creates_for(const std::string& job_id) const
  {
    return static_cast<int>(std::count_if(creates.begin(), creates.end(),
                                          [&](const std::string& c) { return c.rfind(job_id + ".", 0) == 0; }));
  }

  boost::asio::awaitable<provider::CreateResult> create(common::Family, std::string body, std::string crid) override
  {
    creates.push_back(crid);
    bodies.push_back(std::move(body));
    if (on_create) {
      co_return on_create(crid);
    }
    add_log("succeeded", crid, "gen-" + crid, now_utc());
    co_return accepted("gen-" + crid);
  }
  boost::asio::awaitable<provider::PollResult> poll(common::Family, std::string generation) override
  {
    ++polls[generation];
    if (on_poll) {
      co_return on_poll(generation);
    }
    co_return status("completed", "https://cdn.test/" + generation + ".mp4");
  }
  boost::asio::awaitable<provider::LogPage> logs(std::string start, std::string end, std::vector<std::string> models,
                                                 int limit, int offset) override
  {
    ++log_queries;
    const auto s = parse_rfc3339(start);
    const auto e = parse_rfc3339(end);
    std::vector<const provider::LogRow*> rows;
    for (auto it = log.rbegin(); it != log.rend(); ++it) { // newest first
      const auto t = parse_rfc3339(*it->row.created);
      const bool model_ok = models.empty() || std::find(models.begin(), models.end(), *it->row.model) != models.end();
      if (it->visible && model_ok && t && s && e && *t >= *s && *t <= *e) {
        rows.push_back(&it->row);
      }
    }
    provider::LogPage page;
    for (int i = offset; i < std::min<int>(static_cast<int>(rows.size()), offset + limit); ++i) {
      page.rows.push_back(*rows[static_cast<std::size_t>(i)]);
    }
    page.has_more = offset + limit < static_cast<int>(rows.size());
    co_return page;
  }
  std::optional<double> balance_usd; // nullopt: GET /v2/billing answers 404 (no billing here)
  int balance_queries = 0;
  boost::asio::awaitable<provider::Balance> balance() override
  {
    ++balance_queries;
    provider::Balance b;
    if (balance_usd) {
      b.usd = balance_usd;
      b.currency = "USD";
    } else {
      b.outcome.cls = provider::CallClass::job_error;
      b.outcome.http_status = 404;
      b.outcome.message = "Cannot GET /v2/billing";
    }
    co_return b;
  }
  std::vector<provider::Transaction> ledger; // newest last; nothing: 404 (no billing here)
  int ledger_queries = 0;
  boost::asio::awaitable<provider::TransactionPage> transactions(std::optional<std::string> cursor,
                                                                 provider::TransactionQuery q) override
  {
    ++ledger_queries;
    provider::TransactionPage page;
    if (ledger.empty() && !balance_usd) {
      page.outcome.cls = provider::CallClass::job_error;
      page.outcome.http_status = 404;
      co_return page;
    }
    const auto from = q.from.empty() ? std::nullopt : parse_rfc3339(q.from);
    std::vector<provider::Transaction> rows;
    for (auto it = ledger.rbegin(); it != ledger.rend(); ++it) {
      const auto t = parse_rfc3339(it->created_at);
      if (!from || (t && *t >= *from)) {
        rows.push_back(*it);
      }
    }
    const std::size_t start = cursor ? std::stoul(*cursor) : 0;
    for (std::size_t i = start; i < rows.size() && i < start + static_cast<std::size_t>(q.limit); ++i) {
      page.rows.push_back(rows[i]);
    }
    if (start + static_cast<std::size_t>(q.limit) < rows.size()) {
      page.has_more = true;
      page.next_cursor = std::to_string(start + static_cast<std::size_t>(q.limit));
    }
    co_return page;
  }
  void add_ledger(std::string type, std::string direction, std::string generation, double usd)
  {
    provider::Transaction t;
    t.created_at = format_rfc3339(now_utc());
    t.type = std::move(type);
    t.direction = std::move(direction);
    t.reference_id = std::move(generation);
    t.usd = usd;
    ledger.push_back(std::move(t));
  }
  void set_options(provider::ProviderClient::Options) override {}
  void close_all() override {}
};

class ScriptedFetcher final : public engine::FetchPort
{
public:
  // Per fetch. Default: writes a small MP4-looking file at final_path and succeeds.
  std::function<engine::DownloadOutcome(const engine::DownloadTask&)> on_fetch;
  std::vector<engine::DownloadTask> tasks;

  static engine::DownloadOutcome write_ok(const engine::DownloadTask& t)
  {
    std::filesystem::create_directories(t.final_path.parent_path());
    std::ofstream(t.final_path, std::ios::binary) << std::string("\0\0\0\x18" "ftypisom", 12) << "video";
    engine::DownloadOutcome out;
    out.status = engine::DownloadStatus::ok;
    out.bytes = 17;
    out.sha256_hex = std::string(64, 'a');
    return out;
  }
  boost::asio::awaitable<engine::DownloadOutcome> fetch(engine::DownloadTask task) override
  {
    tasks.push_back(task);
    co_return on_fetch ? on_fetch(task) : write_ok(task);
  }
};

inline const common::Catalog& shipped_catalog()
{
  static const common::Catalog c = [] {
    auto r = common::Catalog::load_file(std::string(KLINGD_SOURCE_DIR) + "/config/models.json");
    REQUIRE(r.ok());
    return std::move(*r);
  }();
  return c;
}

struct EngineFixture
{
  ScratchDir dir;
  common::Config config;
  store::Db db{dir.file("klingd.db"), store::Db::Options{}};
  store::JobStore store{db};
  EventLoop io{1};
  store::GroupCommitter committer{io.get_executor(), store};
  Metrics metrics;
  ScriptedProvider provider;
  ScriptedFetcher fetcher;
  std::unique_ptr<engine::Engine> engine;

  EngineFixture()
  {
    REQUIRE(migrate(db).ok());
    config.api_key = common::Secret("test-key");
    config.store.state_dir = dir.path().string();
    config.store.videos_dir = (dir.path() / "videos").string();
    config.poll.initial_s = 0.02;
    config.poll.max_s = 0.05;
    config.poll.jitter = 0;
    config.retry.base_s = 0.01;
    config.retry.max_s = 0.05;
    config.provider.request_timeout_s = 0.2;
    config.reconcile.window_s = 300;
    config.reconcile.absence_slack_s = 0.1;
  }
  ~EngineFixture()
  {
    io.stop();
    io.destroy_pending(); // before the engine the frames point into (daemon/event_loop.hpp)
  }

  void start()
  {
    engine = std::make_unique<engine::Engine>(io.get_executor(), config, shipped_catalog(), store, committer, metrics,
                                              provider, fetcher);
    boost::asio::co_spawn(io, engine->start(), boost::asio::detached);
  }

  // Runs the loop until `done` holds (true) or `seconds` pass (false).
  bool run_until(const std::function<bool()>& done, double seconds = 5)
  {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(std::chrono::milliseconds(5));
      if (done()) {
        return true;
      }
    }
    return false;
  }
  void run_for(double seconds)
  {
    run_until([] { return false; }, seconds);
  }

  // Runs an awaitable to completion on the loop.
  template <typename T>
  T await(boost::asio::awaitable<T> a)
  {
    std::optional<T> out;
    boost::asio::co_spawn(
      io, [&, a = std::move(a)]() mutable -> boost::asio::awaitable<void> { out.emplace(co_await std::move(a)); },
      [](std::exception_ptr e) {
        if (e) {
          std::rethrow_exception(e);
        }
      });
    REQUIRE(run_until([&] { return out.has_value(); }));
    return std::move(*out);
  }

  // Commits `fn` through the group committer and waits for it (a previous run's writes).
  void write(std::function<void(store::JobStore&)> fn)
  {
    bool done = false;
    boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        co_await committer.run(fn);
        done = true;
      },
      boost::asio::detached);
    REQUIRE(run_until([&] { return done; }));
  }

  std::string submit(double timeout_s = 86400)
  {
    store::NewJob j;
    j.model = "klingai/video-v3-pro-text-to-video";
    j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"a lake","duration":5})";
    j.timeout_s = timeout_s;
    std::string id;
    write([&](store::JobStore& s) {
      auto r = s.insert_batch({j});
      REQUIRE(r.ok());
      id = r->jobs.at(0).id;
    });
    if (engine) {
      engine->wake_dispatcher();
    }
    return id;
  }

  store::Job job(const std::string& id) { return *store.get(id); }
  common::JobState state(const std::string& id) { return job(id).state; }
  std::string last_outcome(const std::string& id) { return store.last_attempt(id)->outcome; }
};

} // namespace klingd::test
