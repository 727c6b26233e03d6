#include "daemon/hooks/payload.hpp"

#include "daemon/engine/job_document.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <openssl/hmac.h>

#include <array>

namespace klingd::hooks {

namespace json = boost::json;
namespace fs = std::filesystem;
using common::JobState;

std::string hmac_sha256_hex(std::string_view key, std::string_view body)
{
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), mac.data(), &len);
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += fmt::format("{:02x}", mac[i]);
  }
  return out;
}

std::string_view event_name(const store::HookRow& row)
{
  return row.scope == "batch" ? "batch.done" : "job.done";
}

fs::path output_path(const store::Job& job, const common::Config& config)
{
  const fs::path p = job.video_path ? fs::path(*job.video_path) : fs::path(config.store.videos_dir) / job.output;
  return p.lexically_normal();
}

namespace {

std::int64_t count_of(const BatchFacts& b, JobState state)
{
  std::int64_t n = 0;
  for (const auto& [st, c] : b.counts) {
    n += st == state ? c : 0;
  }
  return n;
}

std::string number(double v)
{
  return fmt::format("{}", v);
}

} // namespace

std::vector<std::string> hook_env(const HookSubject& s, const common::Config& config,
                                  const common::Environment& parent)
{
  std::vector<std::string> env;
  for (const char* name : {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}) {
    if (auto it = parent.find(name); it != parent.end()) {
      env.push_back(fmt::format("{}={}", name, it->second));
    }
  }
  auto put = [&env](std::string_view name, std::string_view value) { env.push_back(fmt::format("{}={}", name, value)); };
  const auto& j = s.job;
  put("KLINGD_EVENT", event_name(s.row));
  put("KLINGD_HOOK_ID", std::to_string(s.row.id));
  put("KLINGD_JOB_ID", j.id);
  put("KLINGD_JOB_STATE", common::to_string(s.row.state));
  put("KLINGD_BATCH_ID", j.batch);
  put("KLINGD_JOB_KEY", j.key.value_or(""));
  put("KLINGD_JOB_MODEL", j.model);
  put("KLINGD_JOB_LABELS", j.labels);
  put("KLINGD_JOB_GENERATION_ID", j.generation_id.value_or(""));
  const bool completed = s.row.state == JobState::completed;
  const auto out = output_path(j, config);
  put("KLINGD_JOB_OUTPUT", completed ? out.string() : "");
  put("KLINGD_JOB_SIDECAR", completed && config.store.sidecar ? engine::sidecar_path(out).string() : "");
  put("KLINGD_JOB_SHA256", completed ? j.video_sha256.value_or("") : "");
  put("KLINGD_JOB_BYTES", completed && j.video_bytes ? std::to_string(*j.video_bytes) : "");
  put("KLINGD_JOB_COST_USD", j.cost_usd ? number(*j.cost_usd) : "");
  put("KLINGD_JOB_CREDITS", j.cost_credits ? std::to_string(*j.cost_credits) : "");
  put("KLINGD_JOB_ERROR_CODE", j.error && !completed ? j.error->code : "");
  put("KLINGD_JOB_ERROR_MESSAGE", j.error && !completed ? j.error->message : "");
  if (s.row.scope == "batch") {
    std::int64_t total = 0;
    for (const auto& [st, c] : s.batch.counts) {
      total += c;
    }
    put("KLINGD_BATCH_JOBS", std::to_string(total));
    put("KLINGD_BATCH_COMPLETED", std::to_string(count_of(s.batch, JobState::completed)));
    put("KLINGD_BATCH_FAILED", std::to_string(count_of(s.batch, JobState::failed)));
    put("KLINGD_BATCH_CANCELED", std::to_string(count_of(s.batch, JobState::canceled)));
    put("KLINGD_BATCH_SPEND_USD", number(s.batch.spend_usd));
  }
  return env;
}

std::string hook_body(const HookSubject& s, const common::Config& config)
{
  json::object o;
  o["event"] = event_name(s.row);
  o["delivery"] = s.row.id;
  if (s.row.scope == "batch") {
    std::int64_t total = 0;
    json::object counts;
    for (auto st : {JobState::completed, JobState::failed, JobState::canceled}) {
      counts[common::to_string(st)] = count_of(s.batch, st);
    }
    for (const auto& [st, c] : s.batch.counts) {
      total += c;
    }
    o["batch"] = json::object{{"id", s.batch.id}, {"jobs", total}, {"counts", std::move(counts)},
                              {"spend_usd", s.batch.spend_usd}};
  }
  o["job"] = engine::job_document(s.job, config.store.videos_dir, s.row.state);
  return json::serialize(o);
}

} // namespace klingd::hooks
