#include "common/job.hpp"
#include "common/log.hpp"
#include "common/time.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <vector>

using namespace klingd;
using namespace klingd::common;

TEST_CASE("job: state and error names round-trip")
{
  for (int i = 0; i <= static_cast<int>(JobState::canceled); ++i) {
    auto s = static_cast<JobState>(i);
    CHECK(parse_job_state(to_string(s)) == s);
  }
  CHECK_FALSE(parse_job_state("done"));
  for (int i = 0; i <= static_cast<int>(ErrorCode::internal); ++i) {
    auto e = static_cast<ErrorCode>(i);
    CHECK(parse_error_code(to_string(e)) == e);
  }
  CHECK(to_string(ErrorCode::ambiguous_create) == "ambiguous_create");
  for (int i = 0; i <= static_cast<int>(JobStep::retry); ++i) {
    auto st = static_cast<JobStep>(i);
    CHECK(parse_job_step(to_string(st)) == st);
  }
  CHECK(to_string(JobStep::reconciling) == "reconciling");
  CHECK(to_string(JobStep::url_refresh) == "url_refresh");
  CHECK_FALSE(parse_job_step("polling"));
}

TEST_CASE("job: the transition table")
{
  using S = JobState;
  // Every edge a code path takes (grep `transition(` in daemon/engine), and nothing else:
  // ARCHITECTURE.md "Job states" draws the same.
  const std::set<std::pair<S, S>> legal = {
    {S::queued, S::submitting},      {S::queued, S::canceled},
    {S::submitting, S::generating},  {S::submitting, S::queued},   {S::submitting, S::failed},
    {S::submitting, S::canceled},    {S::generating, S::downloading}, {S::generating, S::failed},
    {S::generating, S::canceled},    {S::downloading, S::completed}, {S::downloading, S::failed},
    {S::downloading, S::canceled},   {S::failed, S::queued},       {S::failed, S::generating},
    {S::canceled, S::queued},        {S::canceled, S::generating}, {S::canceled, S::submitting},
  };
  const auto all = {S::queued, S::submitting, S::generating, S::downloading, S::completed, S::failed, S::canceled};
  for (auto from : all) {
    for (auto to : all) {
      CAPTURE(to_string(from));
      CAPTURE(to_string(to));
      CHECK(is_legal_transition(from, to) == (legal.count({from, to}) == 1));
    }
  }
  CHECK(is_terminal(S::completed));
  CHECK(is_terminal(S::failed));
  CHECK(is_terminal(S::canceled));
  CHECK_FALSE(is_terminal(S::downloading));
}

TEST_CASE("job: ids are unique, sortable by creation, and header-safe")
{
  std::vector<std::string> ids;
  for (int i = 0; i < 5000; ++i) {
    ids.push_back(make_id());
  }
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique.size() == ids.size());
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  for (const auto& id : ids) {
    REQUIRE(id.size() == 26);
    for (char c : id) {
      CHECK(((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')));
    }
  }
}

TEST_CASE("job: output path checks")
{
  CHECK(check_output_path("a.mp4").empty());
  CHECK(check_output_path("dir/sub/clip-01.mp4").empty());
  CHECK(check_output_path("").find("empty") != std::string::npos);
  CHECK(check_output_path("/etc/passwd.mp4").find("relative") != std::string::npos);
  CHECK(check_output_path("../x.mp4").find("'..'") != std::string::npos);
  CHECK(check_output_path("a/../../x.mp4").find("'..'") != std::string::npos);
  CHECK(check_output_path("a/./x.mp4").find("'.'") != std::string::npos);
  CHECK(check_output_path("a//x.mp4").find("empty path segment") != std::string::npos);
  CHECK(check_output_path(std::string("a\0b.mp4", 7)).find("control") != std::string::npos);
  CHECK(check_output_path("a\nb.mp4").find("control") != std::string::npos);
  CHECK(check_output_path("a\\b.mp4").find("backslash") != std::string::npos);
  CHECK(check_output_path("video.mov").find(".mp4") != std::string::npos);
  CHECK(check_output_path(std::string(300, 'a') + ".mp4").find("255") != std::string::npos);
}

TEST_CASE("time: RFC 3339 formatting and parsing")
{
  SysTime t{std::chrono::milliseconds(1763789401123)};
  CHECK(format_rfc3339(t) == "2025-11-22T05:30:01.123Z");
  CHECK(parse_rfc3339("2025-11-22T05:30:01.123Z") == t);
  CHECK(parse_rfc3339("2025-11-22T07:30:01.123+02:00") == t);
  CHECK(parse_rfc3339("2025-11-22T05:30:01Z") == SysTime{std::chrono::milliseconds(1763789401000)});
  CHECK_FALSE(parse_rfc3339("2025-11-22"));
  CHECK_FALSE(parse_rfc3339("2025-13-22T05:30:01Z"));
  CHECK_FALSE(parse_rfc3339("2025-11-22T05:30:01.Z"));
  CHECK(format_day(t) == "2025-11-22");
}

TEST_CASE("log: key=value lines, quoting, journald prefixes")
{
  auto line = log::format_line(log::Level::warning, "job.state", {{"job", "01ABC"}, {"msg", "two words"}, {"n", 3}}, true);
  CHECK(line == "<4>level=warning event=job.state job=01ABC msg=\"two words\" n=3\n");
  auto esc = log::format_line(log::Level::info, "x", {{"v", "a\nb\"c"}}, true);
  CHECK(esc == "<6>level=info event=x v=\"a\\nb\\\"c\"\n");
  auto plain = log::format_line(log::Level::error, "x", {}, false);
  CHECK(plain.find("Z level=error event=x\n") != std::string::npos);
  log::Level lv;
  CHECK(log::parse_level("warn", lv));
  CHECK(lv == log::Level::warning);
  CHECK_FALSE(log::parse_level("loud", lv));
}
