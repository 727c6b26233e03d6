// The API's JSON shapes: jobs (docs/contract.md §2), events, counts, and the error envelope.
#include "daemon/api/error.hpp"
#include "daemon/api/json_codec.hpp"
#include "daemon/engine/engine.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

using namespace klingd;
using namespace klingd::api;
namespace json = boost::json;

namespace {

store::Job sample_job()
{
  store::Job j;
  j.id = "01J0000000000000000000000A";
  j.key = "k1";
  j.batch = "01J0000000000000000000000B";
  j.state = common::JobState::completed;
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"a"})";
  j.output = "out/a.mp4";
  j.labels = R"({"team":"x"})";
  j.generation_id = "abc:klingai/video";
  j.provider_status = "completed";
  j.attempts = 1;
  j.polls = 4;
  j.video_url = "https://cdn.example/v.mp4";
  j.video_bytes = 1234;
  j.video_sha256 = std::string(64, 'a');
  j.cost_usd = 0.6;
  j.created_at = "2026-11-22T05:40:01.123Z";
  j.updated_at = "2026-11-22T05:41:01.123Z";
  j.finished_at = "2026-11-22T05:41:01.123Z";
  return j;
}

} // namespace

TEST_CASE("api json: a job has every docs/contract.md §2 field")
{
  common::Config config;
  config.store.videos_dir = "/var/lib/klingd/videos";
  auto o = job_to_json(sample_job(), config);
  for (auto name : {"id", "key", "batch", "state", "model", "request", "output", "priority", "labels", "generation_id",
                    "provider_status", "attempts", "polls", "error", "video", "created_at", "updated_at",
                    "finished_at", "step", "timeout_s", "cost"}) {
    CHECK_MESSAGE(o.contains(name), name);
  }
  CHECK(o["state"] == "completed");
  CHECK(o["request"].is_object());
  CHECK(o["labels"].at("team") == "x");
  CHECK(o["error"].is_null());
  CHECK(o["video"].at("path") == "/var/lib/klingd/videos/out/a.mp4");
  CHECK(o["video"].at("bytes") == 1234);
  CHECK(o["cost"].at("usd") == 0.6);
  CHECK(o["cost"].at("credits").is_null());
}

TEST_CASE("api json: a failed job has an error and no video")
{
  auto j = sample_job();
  j.state = common::JobState::failed;
  j.video_sha256.reset();
  j.cost_usd.reset();
  j.error = store::JobError{"invalid_request", "bad prompt", 422};
  auto o = job_to_json(j, common::Config{});
  CHECK(o["video"].is_null());
  CHECK(o["cost"].is_null());
  CHECK(o["error"].at("code") == "invalid_request");
  CHECK(o["error"].at("http_status") == 422);
  j.error->http_status.reset();
  CHECK_FALSE(job_to_json(j, common::Config{})["error"].as_object().contains("http_status"));
}

TEST_CASE("api json: events and history entries")
{
  store::Event e{7, "J", "B", common::JobState::failed, std::nullopt, "2026-11-22T05:40:01.123Z",
                 store::JobError{"timeout", "too slow", std::nullopt}};
  auto o = event_to_json(e);
  CHECK(o["seq"] == 7);
  CHECK(o["job"] == "J");
  CHECK(o["batch"] == "B");
  CHECK(o["error"].at("code") == "timeout");
  CHECK_FALSE(o.contains("step"));
  e.error.reset();
  e.step = "reconciling";
  auto h = history_to_json(e);
  CHECK_FALSE(h.contains("error"));
  CHECK(h["step"] == "reconciling");
  CHECK_FALSE(h.contains("job"));
}

TEST_CASE("api json: counts list every state")
{
  std::int64_t total = 0;
  auto o = counts_to_json({{common::JobState::queued, 3}, {common::JobState::completed, 2}}, &total);
  CHECK(o.size() == 7);
  CHECK(o["queued"] == 3);
  CHECK(o["failed"] == 0);
  CHECK(total == 5);
}

TEST_CASE("api errors: one mapping to HTTP status and the envelope")
{
  CHECK(http_status(ApiError::invalid_spec) == 400);
  CHECK(http_status(ApiError::not_found) == 404);
  CHECK(http_status(ApiError::conflict) == 409);
  CHECK(http_status(ApiError::method_not_allowed) == 405);
  CHECK(http_status(ApiError::payload_too_large) == 413);
  CHECK(http_status(ApiError::headers_too_large) == 431);
  CHECK(http_status(ApiError::internal) == 500);
  CHECK(from_engine(engine::ActionError::conflict) == ApiError::conflict);
  CHECK(from_engine(engine::ActionError::not_found) == ApiError::not_found);
  auto r = error_response(ApiError::conflict, "job is completed", json::array{json::object{{"index", 1}}});
  CHECK(r.status == 409);
  auto v = json::parse(r.body);
  CHECK(v.at("error").at("code") == "conflict");
  CHECK(v.at("error").at("message") == "job is completed");
  CHECK(v.at("error").at("details").as_array().size() == 1);
}
