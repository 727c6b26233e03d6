// klingctl's smaller commands: ls, show, cancel, retry, watch, status, pause,
// resume, models. Human output is a table or summary; --json prints the API's answer.
#include "cli/commands.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <iostream>

namespace klingd::cli {

namespace json = boost::json;

namespace {

std::string str(const json::value& v)
{
  if (v.is_string()) {
    return std::string(v.get_string());
  }
  if (v.is_null()) {
    return "-";
  }
  if (v.is_double()) {
    return fmt::format("{}", v.get_double()); // 100000, 0.6: not JSON's 1E5, 6E-1
  }
  return json::serialize(v);
}

std::string field(const json::object& o, std::string_view name)
{
  auto* v = o.if_contains(name);
  return v ? str(*v) : "-";
}

std::string error_text(const json::value& e)
{
  if (!e.is_object()) {
    return "";
  }
  const auto& o = e.get_object();
  std::string out = fmt::format("{}: {}", field(o, "code"), field(o, "message"));
  if (auto* h = o.if_contains("http_status"); h && !h->is_null()) {
    out += fmt::format(" (HTTP {})", str(*h));
  }
  return out;
}

void print_job_row(const json::object& j)
{
  std::string note = field(j, "output");
  if (j.at("error").is_object()) {
    note = error_text(j.at("error"));
  }
  std::cout << fmt::format("{:<26}  {:<11}  {:<40}  {:<24}  {}\n", field(j, "id"), field(j, "state"),
                           field(j, "model"), field(j, "created_at"), note);
}

std::string job_path(const std::string& id, std::string_view action = {})
{
  auto p = "/v1/jobs/" + url_encode(id);
  if (!action.empty()) {
    p += "/";
    p += action;
  }
  return p;
}

int job_action(Session& s, const std::string& id, std::string_view action, std::string_view done)
{
  auto res = s.call_ok("POST", job_path(id, action));
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
  } else {
    const auto& j = res.as_object();
    std::cout << fmt::format("job {} {}: now {}\n", field(j, "id"), done, field(j, "state"));
  }
  return k_exit_ok;
}

std::string format_uptime(double seconds)
{
  auto s = static_cast<long long>(seconds);
  if (s >= 86400) {
    return fmt::format("{}d {}h", s / 86400, s / 3600 % 24);
  }
  if (s >= 3600) {
    return fmt::format("{}h {}m", s / 3600, s / 60 % 60);
  }
  return fmt::format("{}m {}s", s / 60, s % 60);
}

// 4096 → "4.0 KiB", 0 → "0 B".
std::string format_size(double bytes)
{
  static constexpr const char* k_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t u = 0;
  while (bytes >= 1024 && u + 1 < std::size(k_units)) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, k_units[u]);
}

} // namespace

int cmd_ls(Session& s, const ListOptions& o)
{
  std::string query;
  auto add = [&](std::string_view name, const std::string& value) {
    if (!value.empty()) {
      query += fmt::format("{}{}={}", query.empty() ? "?" : "&", name, url_encode(value));
    }
  };
  add("state", o.state);
  add("batch", o.batch);
  add("label", o.label);
  if (o.limit > 0) {
    add("limit", std::to_string(o.limit));
  }
  json::array all_jobs;
  json::value next;
  std::string after;
  bool header = false;
  for (;;) {
    std::string q = query;
    if (!after.empty()) {
      q += fmt::format("{}after={}", q.empty() ? "?" : "&", url_encode(after));
    }
    auto res = s.call_ok("GET", "/v1/jobs" + q);
    const auto& page = res.as_object();
    next = page.at("next");
    if (s.json()) {
      if (!o.all) {
        std::cout << json::serialize(res) << '\n';
        return k_exit_ok;
      }
      for (const auto& j : page.at("jobs").as_array()) {
        all_jobs.push_back(j);
      }
    } else {
      if (!header) {
        std::cout << fmt::format("{:<26}  {:<11}  {:<40}  {:<24}  {}\n", "ID", "STATE", "MODEL", "CREATED",
                                 "OUTPUT / ERROR");
        header = true;
      }
      for (const auto& j : page.at("jobs").as_array()) {
        print_job_row(j.as_object());
      }
    }
    if (!o.all || !next.is_string()) {
      break;
    }
    after = std::string(next.get_string());
  }
  if (s.json()) {
    json::object out;
    out["jobs"] = std::move(all_jobs);
    out["next"] = nullptr;
    std::cout << json::serialize(out) << '\n';
  } else if (next.is_string()) {
    std::cout << fmt::format("(more: klingctl ls --all, or the API's after={})\n", str(next));
  }
  return k_exit_ok;
}

int cmd_show(Session& s, const std::string& id)
{
  auto res = s.call_ok("GET", job_path(id));
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto& j = res.as_object();
  auto row = [](std::string_view name, const std::string& value) {
    std::cout << fmt::format("{:<15}{}\n", fmt::format("{}:", name), value);
  };
  row("id", field(j, "id"));
  row("key", field(j, "key"));
  row("batch", field(j, "batch"));
  auto state = field(j, "state");
  if (auto* st = j.if_contains("step"); st && st->is_string()) {
    state += fmt::format(" ({})", str(*st));
  }
  row("state", state);
  row("model", field(j, "model"));
  row("output", field(j, "output"));
  row("priority", field(j, "priority"));
  std::string labels;
  if (auto* l = j.if_contains("labels"); l && l->is_object()) {
    for (const auto& kv : l->get_object()) {
      labels += fmt::format("{}{}={}", labels.empty() ? "" : ", ", std::string_view(kv.key()), str(kv.value()));
    }
  }
  row("labels", labels.empty() ? "-" : labels);
  row("generation_id", field(j, "generation_id"));
  row("provider", field(j, "provider_status"));
  if (auto* r = j.if_contains("route"); r && r->is_object()) {
    const auto& ro = r->get_object();
    row("route", fmt::format("asked {}, served by {}", ro.at("asked").is_string() ? field(ro, "asked") : "(provider default)",
                             ro.at("served").is_string() ? field(ro, "served") : "(not reported)"));
  }
  row("attempts", fmt::format("{} (polls {})", field(j, "attempts"), field(j, "polls")));
  if (j.at("error").is_object()) {
    row("error", error_text(j.at("error")));
  }
  if (auto* v = j.if_contains("video"); v && v->is_object()) {
    const auto& o = v->get_object();
    row("video", fmt::format("{} ({} bytes)", field(o, "path"), field(o, "bytes")));
    row("sha256", field(o, "sha256"));
  }
  if (auto* c = j.if_contains("cost"); c && c->is_object()) {
    const auto& cost = c->get_object();
    auto usd = cost.if_contains("usd");
    auto refunded = cost.if_contains("refunded_usd");
    row("cost", fmt::format("{} ({} credits){}",
                            usd && usd->is_number() ? fmt::format("${:.2f}", usd->to_number<double>()) : "-",
                            field(cost, "credits"),
                            refunded && refunded->is_number()
                              ? fmt::format(", ${:.2f} refunded", refunded->to_number<double>())
                              : ""));
  }
  row("created", field(j, "created_at"));
  row("updated", field(j, "updated_at"));
  row("finished", field(j, "finished_at"));
  auto request = json::serialize(j.at("request"));
  if (request.size() > 300) {
    request = request.substr(0, 300) + "…";
  }
  row("request", request);
  if (auto* h = j.if_contains("hooks"); h && h->is_array() && !h->get_array().empty()) {
    std::cout << "hooks:\n";
    for (const auto& e : h->get_array()) {
      const auto& o = e.as_object();
      const auto* err = o.if_contains("last_error");
      std::cout << fmt::format("  {} {} ({}): {} after {} attempt(s){}\n", field(o, "hook"), field(o, "kind"),
                               field(o, "state"), field(o, "status"), field(o, "attempts"),
                               err && err->is_string() ? " — " + str(*err) : std::string());
    }
  }
  if (auto* h = j.if_contains("history"); h && h->is_array()) {
    std::cout << "history:\n";
    for (const auto& e : h->get_array()) {
      const auto& o = e.as_object();
      std::string extra;
      if (auto* st = o.if_contains("step"); st && st->is_string()) {
        extra += fmt::format(" ({})", str(*st));
      }
      if (auto* er = o.if_contains("error"); er && er->is_object()) {
        extra += " " + error_text(*er);
      }
      std::cout << fmt::format("  {}  {}{}\n", field(o, "at"), field(o, "state"), extra);
    }
  }
  return k_exit_ok;
}

int cmd_cancel(Session& s, const std::string& id)
{
  return job_action(s, id, "cancel", "canceled");
}

int cmd_retry(Session& s, const std::string& id)
{
  return job_action(s, id, "retry", "retried");
}

int cmd_watch(Session& s, std::optional<long long> since)
{
  std::string target = "/v1/events";
  if (since) {
    target += fmt::format("?since={}", *since);
  }
  s.stream(target, [&](std::string_view line) {
    if (s.json()) {
      std::cout << line << '\n' << std::flush;
      return true;
    }
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      return true;
    }
    const auto& o = v.get_object();
    std::string extra;
    if (auto* st = o.if_contains("step")) {
      extra += fmt::format(" ({})", str(*st));
    }
    if (auto* e = o.if_contains("error")) {
      extra += " " + error_text(*e);
    }
    std::cout << fmt::format("{}  #{:<7} {}  {:<11}{}\n", field(o, "at"), field(o, "seq"), field(o, "job"),
                             field(o, "state"), extra)
              << std::flush;
    return true;
  });
  return k_exit_ok;
}

int cmd_status(Session& s)
{
  auto res = s.call_ok("GET", "/v1/status");
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto& o = res.as_object();
  std::cout << fmt::format("klingd {}, up {}\n", field(o, "version"), format_uptime(o.at("uptime_s").to_number<double>()));
  std::cout << fmt::format("socket:   {}\ndatabase: {}\n", field(o, "socket"), field(o, "db"));
  if (o.at("paused").is_string()) {
    std::cout << fmt::format("dispatch: PAUSED: {}\n", str(o.at("paused")));
  } else {
    std::cout << "dispatch: running\n";
  }
  if (auto* b = o.if_contains("balance"); b && b->is_object() && b->at("usd").is_number()) {
    std::cout << fmt::format("balance:  ${:.2f} (read {})\n", b->at("usd").to_number<double>(), field(b->as_object(), "checked_at"));
  }
  const auto& limits = o.at("limits").as_object();
  std::cout << fmt::format("in flight: {}/{} (submitting {}, generating {}), downloading {}\n", field(o, "in_flight"),
                           field(limits, "max_in_flight"), field(o, "submitting"), field(o, "generating"),
                           field(o, "downloading"));
  std::cout << fmt::format("limits:   {} creates/min, {} concurrent downloads\n", field(limits, "creates_per_minute"),
                           field(limits, "download_max_concurrent"));
  std::string counts;
  for (const auto& kv : o.at("counts").as_object()) {
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", std::string_view(kv.key()), str(kv.value()));
  }
  std::cout << fmt::format("jobs:     {} (total {})\n", counts, field(o, "total"));
  if (o.contains("db_bytes")) {
    std::cout << fmt::format("store:    database {}, WAL {}\n", format_size(o.at("db_bytes").to_number<double>()),
                             format_size(o.at("wal_bytes").to_number<double>()));
  }
  return k_exit_ok;
}

int cmd_prune(Session& s, bool dry_run)
{
  auto res = s.call_ok("POST", "/v1/prune", dry_run ? R"({"dry_run":true})" : R"({"dry_run":false})");
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto& o = res.as_object();
  std::string kept;
  for (const auto& kv : o.at("retention").as_object()) {
    kept += fmt::format("{}{} {}", kept.empty() ? "" : ", ", std::string_view(kv.key()),
                        kv.value().is_null() ? std::string("forever") : str(kv.value()));
  }
  std::cout << fmt::format("retention: {}\n", kept);
  std::cout << fmt::format("{} {} jobs (their rows, events, labels and attempts; {} idempotency keys kept as "
                           "tombstones)\n",
                           dry_run ? "would delete" : "deleted", field(o, "jobs_deleted"), field(o, "tombstones"));
  std::cout << fmt::format("{} the history of {} completed jobs whose MP4 is still on disk\n",
                           dry_run ? "would prune" : "pruned", field(o, "jobs_trimmed"));
  std::cout << fmt::format("{} events in all\n", field(o, "events_deleted"));
  return k_exit_ok;
}

int cmd_pause(Session& s, const std::string& reason)
{
  std::string body;
  if (!reason.empty()) {
    json::object o;
    o["reason"] = reason;
    body = json::serialize(o);
  }
  auto res = s.call_ok("POST", "/v1/pause", body);
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
  } else {
    std::cout << fmt::format("dispatch paused: {}\n", field(res.as_object(), "paused"));
  }
  return k_exit_ok;
}

int cmd_resume(Session& s)
{
  auto res = s.call_ok("POST", "/v1/resume");
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
  } else {
    std::cout << "dispatch resumed\n";
  }
  return k_exit_ok;
}

int cmd_models(Session& s, const ModelsOptions& options)
{
  auto res = s.call_ok("GET", "/v1/models");
  if (options.check || !options.pricing_file.empty()) {
    return check_models(s, res, options);
  }
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  auto join = [](const json::value& v) {
    std::string out;
    if (v.is_array()) {
      for (const auto& x : v.get_array()) {
        out += (out.empty() ? "" : ",") + str(x);
      }
    }
    return out.empty() ? std::string("-") : out;
  };
  auto price = [](const json::object& o) {
    const json::value* p = o.if_contains("price_usd");
    if (!p || !p->is_number()) {
      return std::string("-");
    }
    const json::value* unit = o.if_contains("price_unit");
    const bool per_video = unit && unit->is_string() && unit->get_string() == "per_video";
    return fmt::format("{:.3f}{}", p->to_number<double>(), per_video ? "/video" : "");
  };
  std::cout << fmt::format("{:<48}  {:<22}  {:<9}  {:<14}  {:<7}  {}\n", "MODEL", "KIND", "FAMILY", "DURATIONS", "USD/S",
                           "ASPECT RATIOS");
  for (const auto& m : res.as_object().at("models").as_array()) {
    const auto& o = m.as_object();
    std::cout << fmt::format("{:<48}  {:<22}  {:<9}  {:<14}  {:<7}  {}\n", field(o, "id"), field(o, "kind"),
                             field(o, "family"), join(o.at("durations")), price(o), join(o.at("aspect_ratios")));
  }
  return k_exit_ok;
}

} // namespace klingd::cli
