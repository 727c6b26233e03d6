// Learned generation times (migrations/0005_generation_times.sql): what the poller's schedule
// learns from (engine/generation_times.hpp, docs/contract.md §3.3).
#include "daemon/store/job_store.hpp"

#include "common/time.hpp"

namespace klingd::store {

namespace {
constexpr std::int64_t k_kept_per_key = 64;
}

void JobStore::add_generation_time(const GenerationTime& t)
{
  auto ins = m_db.prepare("INSERT INTO generation_times (model, video_s, seconds, at) VALUES (?, ?, ?, ?)");
  ins.bind(1, t.model).bind(2, t.video_s).bind(3, t.seconds).bind(4, format_rfc3339(now_utc()));
  ins.run();
  // Keep the newest per key: the index (model, video_s, id) makes this a short range delete.
  auto trim = m_db.prepare(
    "DELETE FROM generation_times WHERE model = ?1 AND video_s = ?2 AND id <= "
    "(SELECT id FROM generation_times WHERE model = ?1 AND video_s = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)");
  trim.bind(1, t.model).bind(2, t.video_s).bind(3, k_kept_per_key);
  trim.run();
}

std::vector<GenerationTime> JobStore::generation_times(std::size_t per_key)
{
  auto q = m_db.prepare(
    "SELECT model, video_s, seconds FROM (SELECT model, video_s, seconds, id, "
    "ROW_NUMBER() OVER (PARTITION BY model, video_s ORDER BY id DESC) AS n FROM generation_times) "
    "WHERE n <= ? ORDER BY model, video_s, id");
  q.bind(1, static_cast<std::int64_t>(per_key));
  std::vector<GenerationTime> out;
  while (q.step()) {
    out.push_back(GenerationTime{q.text(0), q.int64(1), q.real(2)});
  }
  return out;
}

} // namespace klingd::store
