// klingctl wait: follows jobs or a batch until every job has ended, with a live
// progress line on a terminal and plain lines otherwise.
#include "cli/commands.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <thread>

namespace klingd::cli {

namespace json = boost::json;

namespace {

constexpr std::string_view k_states[] = {"queued", "submitting", "generating", "downloading",
                                         "completed", "failed", "canceled"};

bool is_terminal(std::string_view s)
{
  return s == "completed" || s == "failed" || s == "canceled";
}

std::string format_elapsed(std::chrono::seconds d)
{
  auto s = d.count();
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}

struct Progress
{
  std::map<std::string, std::int64_t, std::less<>> counts;
  std::int64_t total = 0;
  std::int64_t done() const
  {
    std::int64_t d = 0;
    for (const auto& [state, n] : counts) {
      d += is_terminal(state) ? n : 0;
    }
    return d;
  }
  std::string summary(std::string_view sep) const
  {
    std::string out;
    for (auto st : k_states) {
      auto it = counts.find(st);
      if (it != counts.end() && it->second > 0) {
        out += fmt::format("{}{} {}", out.empty() ? "" : sep, st, it->second);
      }
    }
    return out;
  }
};

std::string bar(std::int64_t done, std::int64_t total, int width)
{
  int filled = total > 0 ? static_cast<int>(done * width / total) : width;
  std::string out = "[";
  for (int i = 0; i < width; ++i) {
    out += i < filled ? "#" : "-";
  }
  return out + "]";
}

} // namespace

int cmd_wait(Session& s, const std::vector<std::string>& ids, const std::string& batch)
{
  if (ids.empty() && batch.empty()) {
    throw CliExit(k_exit_usage, "wait: give job ids or --batch ID");
  }
  const bool tty = ::isatty(STDOUT_FILENO) && !s.json();
  const auto t0 = std::chrono::steady_clock::now();
  std::string last_line;
  std::vector<json::value> final_jobs(ids.size());
  json::value final_batch;
  auto delay = std::chrono::milliseconds(200);
  for (;;) {
    Progress p;
    if (!batch.empty()) {
      final_batch = s.call_ok("GET", "/v1/batches/" + url_encode(batch));
      const auto& o = final_batch.as_object();
      for (const auto& kv : o.at("counts").as_object()) {
        p.counts[std::string(kv.key())] = kv.value().to_number<std::int64_t>();
      }
      p.total = o.at("total").to_number<std::int64_t>();
    } else {
      for (std::size_t i = 0; i < ids.size(); ++i) {
        // Jobs already ended are not asked again.
        if (final_jobs[i].is_object() && is_terminal(final_jobs[i].as_object().at("state").as_string())) {
          p.counts[std::string(final_jobs[i].as_object().at("state").as_string())]++;
          continue;
        }
        final_jobs[i] = s.call_ok("GET", "/v1/jobs/" + url_encode(ids[i]));
        p.counts[std::string(final_jobs[i].as_object().at("state").as_string())]++;
      }
      p.total = static_cast<std::int64_t>(ids.size());
    }
    auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0);
    const bool finished = p.done() == p.total;
    if (tty) {
      auto line = fmt::format("{} {}/{}  {}  {}", bar(p.done(), p.total, 24), p.done(), p.total, p.summary(" · "),
                              format_elapsed(elapsed));
      std::cout << "\r\033[K" << line << std::flush;
      if (finished) {
        std::cout << '\n';
      }
    } else if (!s.json()) {
      auto line = fmt::format("{}/{} done: {}", p.done(), p.total, p.summary(", "));
      if (line != last_line || finished) {
        std::cout << fmt::format("{} {}\n", format_elapsed(elapsed), line) << std::flush;
        last_line = line;
      }
    }
    if (finished) {
      auto failed = p.counts["failed"] + p.counts["canceled"];
      if (s.json()) {
        if (!batch.empty()) {
          std::cout << json::serialize(final_batch) << '\n';
        } else {
          for (const auto& j : final_jobs) {
            std::cout << json::serialize(j) << '\n';
          }
        }
      } else if (failed > 0) {
        // Say which jobs failed and why.
        std::vector<json::value> bad;
        if (!batch.empty()) {
          auto list = s.call_ok("GET", fmt::format("/v1/jobs?batch={}&state=failed,canceled&limit=20", url_encode(batch)));
          for (const auto& j : list.as_object().at("jobs").as_array()) {
            bad.push_back(j);
          }
        } else {
          for (const auto& j : final_jobs) {
            auto st = j.as_object().at("state").as_string();
            if (st == "failed" || st == "canceled") {
              bad.push_back(j);
            }
          }
        }
        for (const auto& j : bad) {
          const auto& o = j.as_object();
          std::string why;
          if (o.at("error").is_object()) {
            const auto& e = o.at("error").as_object();
            why = fmt::format(": {}: {}", std::string_view(e.at("code").as_string()),
                              std::string_view(e.at("message").as_string()));
          }
          std::cerr << fmt::format("job {} {}{}\n", std::string_view(o.at("id").as_string()),
                                   std::string_view(o.at("state").as_string()), why);
        }
        if (static_cast<std::int64_t>(bad.size()) < failed) {
          std::cerr << fmt::format("… {} failed or canceled in all\n", failed);
        }
      }
      return failed > 0 ? k_exit_failed : k_exit_ok;
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

} // namespace klingd::cli
