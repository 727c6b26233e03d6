// What a completion hook is given (docs/contract.md §4.7): the environment of a command hook, the
// JSON body of a webhook and its signature. Pure: unit-tested in tests/unit/test_hooks.cpp.
#pragma once

#include "common/config.hpp"
#include "daemon/store/hook_outbox.hpp"
#include "daemon/store/job_store.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace klingd::hooks {

// Lower-case hex HMAC-SHA256 of `body` under `key`; the header is "sha256=" + this.
std::string hmac_sha256_hex(std::string_view key, std::string_view body);

// A batch as its hook describes it.
struct BatchFacts
{
  std::string id;
  std::vector<std::pair<common::JobState, std::int64_t>> counts;
  double spend_usd = 0;
};

// What one owed hook is about: its row, the job of the transition that owed it and, for a
// batch hook, the batch.
struct HookSubject
{
  store::HookRow row;
  store::Job job;
  BatchFacts batch; // scope "batch" only
};

// "job.done" or "batch.done".
std::string_view event_name(const store::HookRow& row);

// The command's environment, "NAME=value" each: PATH, HOME, LANG, LC_ALL, TZ and TMPDIR from
// `parent` (nothing else of the daemon's environment: it may hold the API key), then the
// KLINGD_* fields of docs/contract.md §4.7.
std::vector<std::string> hook_env(const HookSubject& s, const common::Config& config,
                                  const common::Environment& parent);

// The webhook's body: {"event","delivery","job":{job document}} or
// {"event","delivery","batch":{"id","jobs","counts","spend_usd"},"job":{the job that ended it}}.
std::string hook_body(const HookSubject& s, const common::Config& config);

// The absolute path of a job's MP4 (and of its sidecar when store.sidecar is on).
std::filesystem::path output_path(const store::Job& job, const common::Config& config);

} // namespace klingd::hooks
