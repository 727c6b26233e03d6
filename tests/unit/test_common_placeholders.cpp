// Output names from a template (docs/contract.md §2 "output"): the placeholders, the model's
// short form, and the hostile-name checks on what a template resolves to.
#include "common/placeholders.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace klingd;
using namespace klingd::common;

namespace {

const std::optional<std::string> k_key = "scene-1";
const std::vector<std::pair<std::string, std::string>> k_labels = {{"team", "blue"}, {"x", "../../etc"}};

OutputVars vars(const std::optional<std::string>* key = &k_key)
{
  return {"01BATCH", "01JOB", "klingai/video-v3-pro-text-to-video", "2026-12-02", 7, key, &k_labels};
}

} // namespace

TEST_CASE("output template: every placeholder resolves")
{
  auto r = resolve_output_template("{date}/{batch}/{model}/{label.team}-{key}-{id}-{index}.mp4", vars());
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(*r == "2026-12-02/01BATCH/video-v3-pro-text-to-video/blue-scene-1-01JOB-7.mp4");
  CHECK(*resolve_output_template("{{lit}}-{index}.mp4", vars()) == "{lit}-7.mp4");
  CHECK(*resolve_output_template("plain.mp4", vars()) == "plain.mp4");
}

TEST_CASE("output template: the model's short form")
{
  CHECK(model_short_name("klingai/video-v3-pro-text-to-video") == "video-v3-pro-text-to-video");
  CHECK(model_short_name("kling-video/v1/pro/text-to-video") == "v1-pro-text-to-video");
  CHECK(model_short_name("plain") == "plain");
  CHECK(model_short_name("v/a b:c") == "a_b_c");
  CHECK(model_short_name("v/..") == "model");
}

TEST_CASE("output template: hostile results are refused by the output checks")
{
  auto dots = resolve_output_template("{label.x}/a.mp4", vars());
  REQUIRE_FALSE(dots.ok());
  CHECK(dots.error().message == "resolves to \"../../etc/a.mp4\", which must not contain '.' or '..' segments");
  const std::optional<std::string> slash_key = "/etc/passwd";
  CHECK(resolve_output_template("{key}.mp4", vars(&slash_key)).error().message.find("/etc/passwd.mp4\", which must be a relative path") !=
        std::string::npos);
  const std::optional<std::string> no_key;
  CHECK(resolve_output_template("{key}.mp4", vars(&no_key)).error().message == "{key} is used but the job has no key");
  CHECK(resolve_output_template("{label.nope}.mp4", vars()).error().message ==
        "{label.nope} is used but the job has no label \"nope\"");
  CHECK(resolve_output_template("{key}", vars()).error().message.find("must end in .mp4") != std::string::npos);
}

TEST_CASE("output template: checked before the job exists")
{
  CHECK(check_output_template("{batch}/{key}.mp4").empty());
  CHECK(check_output_template("{label.a}/{{x}}.mp4").empty());
  CHECK(check_output_template("{nope}.mp4").find("unknown placeholder {nope}") == 0);
  CHECK(check_output_template("{label.}.mp4").find("unknown placeholder") == 0);
  CHECK(check_output_template("a}.mp4").find("closes nothing") != std::string::npos);
  CHECK(check_output_template("{key.mp4").find("never closed") != std::string::npos);
  CHECK(check_output_template("/{key}.mp4").find("relative") != std::string::npos);
  CHECK(check_output_template("{key}.mov").find(".mp4") != std::string::npos);
}
