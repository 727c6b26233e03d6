#include "daemon/engine/cost_collector.hpp"

#include "common/log.hpp"
#include "daemon/store/group_commit.hpp"

#include <algorithm>

namespace klingd::engine {

namespace asio = boost::asio;
using common::JobState;
using store::JobStore;
using store::JobUpdate;

namespace {
constexpr int k_give_up_after_checks = 20; // ~15 min with the capped backoff
constexpr int k_max_pages = 20;
} // namespace

void CostCollector::add(const store::Job& job)
{
  if (job.cost_usd || !job.generation_id) {
    return;
  }
  Lookup c;
  c.job_id = job.id;
  c.generation_id = *job.generation_id;
  c.model = job.model;
  c.accepted = job.accepted_at ? parse_rfc3339(*job.accepted_at).value_or(now_utc()) : now_utc();
  c.next_check = Clock::now() + log_lookup_delay(m_core.config, 0);
  m_lookups[job.id] = std::move(c);
  m_core.reconcile_wake.notify();
}

asio::awaitable<void> CostCollector::step()
{
  const auto now = Clock::now();
  Clock::time_point next;
  std::vector<std::string> due = due_now(m_lookups, now, next);
  if (due.empty()) {
    co_await m_core.reconcile_wake.wait(next - now);
    co_return;
  }
  std::unordered_map<std::string, std::string> by_generation; // generation id → job id
  std::vector<std::string> models;
  SysTime earliest = now_utc();
  for (const auto& id : due) {
    const auto& c = m_lookups.at(id);
    by_generation[c.generation_id] = id;
    if (std::find(models.begin(), models.end(), c.model) == models.end()) {
      models.push_back(c.model);
    }
    earliest = std::min(earliest, c.accepted);
  }
  std::vector<std::pair<std::string, provider::LogRow>> found;
  co_await m_scanner.scan(
    earliest - std::chrono::minutes(5), now_utc() + std::chrono::minutes(5), models,
    [&](provider::LogRow& row) {
      if (row.inference_id && row.usd && by_generation.contains(*row.inference_id)) {
        found.emplace_back(by_generation.at(*row.inference_id), std::move(row));
      }
      return found.size() >= by_generation.size();
    },
    k_max_pages);
  if (!found.empty()) {
    co_await m_core.committer.run([&](JobStore& s) {
      for (const auto& [id, row] : found) {
        JobUpdate u;
        u.cost_usd = *row.usd;
        if (row.credits) u.cost_credits = *row.credits;
        s.update(id, JobState::completed, u);
      }
    });
    for (const auto& [id, row] : found) {
      m_lookups.erase(id);
      log::info("job.cost_recorded", {{"job", id}, {"usd", *row.usd}});
    }
  }
  for (const auto& id : due) {
    auto it = m_lookups.find(id);
    if (it == m_lookups.end()) {
      continue;
    }
    if (++it->second.checks >= k_give_up_after_checks) {
      log::warning("job.cost_unknown", {{"job", id}, {"generation", it->second.generation_id}});
      m_lookups.erase(it);
    } else {
      it->second.next_check = Clock::now() + log_lookup_delay(m_core.config, it->second.checks);
    }
  }
}

} // namespace klingd::engine
