#include "daemon/engine/download_step.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "daemon/engine/job_document.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"

#include <fmt/format.h>

namespace klingd::engine {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using common::JobState;
using provider::CallClass;
using store::Job;
using store::JobStore;
using store::JobUpdate;

namespace {
// A short stable tag for a generation id (ids hold ':' and '/'): FNV-1a, 64 bits, hex.
std::string generation_tag(std::string_view id)
{
  std::uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : id) {
    h = (h ^ c) * 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

} // namespace

fs::path DownloadStep::final_path(const common::Config& config, const Job& job)
{
  return fs::path(config.store.videos_dir) / job.output;
}

fs::path DownloadStep::part_path(const common::Config& config, const Job& job)
{
  auto p = final_path(config, job);
  return p.concat(fmt::format(".{}.part", generation_tag(job.generation_id.value_or(""))));
}

void DownloadStep::remove_parts(const common::Config& config, const Job& job)
{
  std::error_code ec;
  fs::remove(part_path(config, job), ec);
  fs::remove(fs::path(final_path(config, job)).concat(".part"), ec); // the name older versions used
}

asio::awaitable<DownloadEnd> DownloadStep::run(Job job, Actor& a)
{
  a.phase = Actor::Phase::downloading;
  set_in_flight(m_core, a, false);
  co_await m_core.download_slots.acquire();
  AsyncSemaphore::Permit permit(m_core.download_slots);
  int failures = job.step_failures;
  bool refreshed = false; // a fresh URL was fetched since the last counted failure
  for (;;) {
    if (!job.video_url) {
      co_await fail(job, a, common::ErrorCode::download_failed, "no video URL to download");
      co_return DownloadEnd::failed;
    }
    DownloadTask task;
    task.url = *job.video_url;
    task.final_path = final_path(m_core.config, job);
    task.part_path = part_path(m_core.config, job);
    task.store_root = m_core.config.store.videos_dir; // confined: no link or `..` leads out of the store
    std::error_code ec;
    fs::remove(fs::path(task.final_path).concat(".part"), ec); // older versions' unnamed part
    if (job.video_file_size) {
      task.expected_size = static_cast<std::uint64_t>(*job.video_file_size);
    }
    if (m_core.config.store.sidecar) {
      // The job as the store holds it when the MP4 is ready (cost and route as known by then).
      task.sidecar_name = sidecar_path(task.final_path).filename().string();
      task.sidecar = [this, job, path = task.final_path](const std::string& sha, std::uint64_t bytes) {
        const auto fresh = m_core.store.get(job.id);
        return sidecar_json(fresh.value_or(job), m_core.config.store.videos_dir,
                            VideoFacts{path.lexically_normal().string(), bytes, sha}, format_rfc3339(now_utc()));
      };
    }
    task.max_bytes = m_core.config.download.max_bytes;
    task.allow_http = m_core.config.download.allow_http;
    task.timeout = seconds(m_core.config.download.timeout_s);
    auto out = co_await m_core.fetcher.fetch(task);
    m_core.metrics.downloads(to_string(out.status)).Increment();
    switch (out.status) {
    case DownloadStatus::ok: {
      m_core.metrics.download_bytes().Increment(static_cast<double>(out.bytes));
      JobUpdate u;
      u.video_path = task.final_path.string();
      u.video_bytes = static_cast<std::int64_t>(out.bytes);
      u.video_sha256 = out.sha256_hex;
      u.step_failures = 0;
      co_await m_poller.commit_with_polls(a, [&](JobStore& s) {
        s.transition(job.id, JobState::downloading, JobState::completed, u);
      });
      log::info("job.completed", {{"job", job.id}, {"bytes", out.bytes}, {"sha256", out.sha256_hex},
                                  {"resumed", out.resumed}});
      co_return DownloadEnd::completed;
    }
    case DownloadStatus::fatal:
      co_await fail(job, a, common::ErrorCode::download_failed, out.message, out.http_status);
      co_return DownloadEnd::failed;
    case DownloadStatus::url_expired:
      if (!refreshed) {
        // Signed CDN URLs expire: ask the provider for a fresh one before counting a failure.
        refreshed = true;
        auto fresh = co_await refresh_url(job, a);
        if (fresh == Refresh::failed_job) {
          co_return DownloadEnd::failed;
        }
        if (fresh == Refresh::refreshed) {
          continue;
        }
      }
      refreshed = false;
      [[fallthrough]];
    case DownloadStatus::transient: {
      ++failures;
      if (failures >= m_core.config.retry.max_attempts) {
        co_await fail(job, a, common::ErrorCode::retries_exhausted,
                      fmt::format("download failed {} times; last: {}", failures, out.message), out.http_status);
        co_return DownloadEnd::failed;
      }
      const auto delay = retry_delay(m_core.config.retry, failures,
                                     out.retry_after ? std::optional<Millis>(*out.retry_after) : std::nullopt,
                                     m_core.rng);
      log::info("job.download_retry", {{"job", job.id}, {"failures", failures}, {"delay_ms", delay.count()},
                                       {"reason", out.message}});
      co_await m_core.sleep(delay);
      break;
    }
    }
  }
}

asio::awaitable<DownloadStep::Refresh> DownloadStep::refresh_url(Job& job, Actor& a)
{
  auto r = co_await m_poller.poll_for_url(job, a);
  if (r.outcome.cls != CallClass::ok) {
    co_return Refresh::unchanged;
  }
  const auto& st = *r.status;
  if (st.kind == provider::GenerationStatus::Kind::failed) {
    remove_parts(m_core.config, job);
    JobUpdate u;
    u.provider_failed = true;
    u.provider_status = st.status;
    u.error = make_job_error(common::ErrorCode::provider_failed, st.error_message);
    co_await m_poller.commit_with_polls(a, [&](JobStore& s) {
      s.transition(job.id, JobState::downloading, JobState::failed, u);
    });
    co_return Refresh::failed_job;
  }
  if (!st.video_url) {
    co_return Refresh::unchanged;
  }
  job.video_url = *st.video_url;
  if (st.file_size) {
    job.video_file_size = *st.file_size;
  }
  JobUpdate u;
  u.video_url = *st.video_url;
  if (st.file_size) u.video_file_size = *st.file_size;
  co_await m_poller.commit_with_polls(a, [&](JobStore& s) {
    s.update(job.id, JobState::downloading, u, std::string(common::to_string(common::JobStep::url_refresh)));
  });
  log::info("job.url_refreshed", {{"job", job.id}});
  co_return Refresh::refreshed;
}

asio::awaitable<void> DownloadStep::fail(const Job& job, Actor& a, common::ErrorCode code, std::string message,
                                         std::optional<int> http)
{
  remove_parts(m_core.config, job);
  JobUpdate u;
  u.error = make_job_error(code, "download: " + message, http && *http ? http : std::nullopt);
  co_await m_poller.commit_with_polls(a, [&](JobStore& s) {
    s.transition(job.id, JobState::downloading, JobState::failed, u);
  });
  log::warning("job.failed", {{"job", job.id}, {"code", common::to_string(code)}, {"message", message}});
}

} // namespace klingd::engine
