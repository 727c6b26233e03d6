// The job as the metadata sidecar and the hooks' webhook body describe it (docs/contract.md §4.6,
// §4.7): request (inline media redacted), model, route, generation, cost, video, timings,
// labels, ids. Pure: no I/O, unit-tested in tests/unit/test_hooks.cpp.
#pragma once

#include "daemon/store/job_store.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace klingd::engine {

// The request with every inline image or file — a `data:` URI, or a string of 256 or more
// base64 characters — replaced by "[redacted <data-uri|base64>: <n> chars, sha256 <hex>]".
boost::json::value redact_request(const boost::json::value& request);

// The MP4 as it was written (the sidecar is written before the job row says so).
struct VideoFacts
{
  std::string path; // absolute
  std::uint64_t bytes = 0;
  std::string sha256;
};

// {"job_id","batch_id","key","state","model","request","labels","output","generation_id",
//  "route":{"asked","served"},"cost":{"usd","credits","refund_usd"},"video":{…}|null,
//  "error":{…}|null,"timings":{"created_at","accepted_at","completed_at","finished_at","attempts","polls"}}
// `state` overrides the job's (the state a hook was owed for); `video` the job's own video fields.
boost::json::object job_document(const store::Job& job, const std::filesystem::path& videos_dir,
                                 std::optional<common::JobState> state = std::nullopt,
                                 const std::optional<VideoFacts>& video = std::nullopt);

// The sidecar's name for an MP4: a trailing ".mp4" (any case) replaced by ".json", else ".json"
// appended ("clip.mp4" → "clip.json", "clip" → "clip.json", "a.json" → "a.json.json").
std::filesystem::path sidecar_path(const std::filesystem::path& mp4);

// The sidecar's text: job_document with state completed and `video`, `completed_at` = `now`,
// plus "format": "klingd.sidecar/1".
std::string sidecar_json(const store::Job& job, const std::filesystem::path& videos_dir, const VideoFacts& video,
                         std::string_view now);

} // namespace klingd::engine
