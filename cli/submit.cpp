// klingctl submit: one job from flags, or many from a file of spec lines.
#include "cli/commands.hpp"
#include "cli/images.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <fstream>
#include <iostream>

namespace klingd::cli {

namespace json = boost::json;

namespace {

std::string read_input(const std::string& file)
{
  if (file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw CliExit(k_exit_usage, fmt::format("-f {}: cannot read the file", file));
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool request_flags_given(const SubmitOptions& o)
{
  return !o.model.empty() || !o.prompt.empty() || !o.multi_prompt.empty() || !o.image.empty() ||
         !o.tail_image.empty() || !o.images.empty() || o.duration || !o.aspect_ratio.empty() ||
         !o.negative_prompt.empty() || o.cfg_scale || o.no_audio || !o.shot_type.empty() || !o.key.empty() ||
         !o.output.empty();
}

} // namespace

json::object build_request(const SubmitOptions& o)
{
  if (o.model.empty()) {
    throw CliExit(k_exit_usage, "submit: --model is required (or use -f FILE); `klingctl models` lists them");
  }
  json::object r;
  r["model"] = o.model;
  if (!o.prompt.empty()) {
    r["prompt"] = o.prompt;
  }
  if (!o.multi_prompt.empty()) {
    r["multi_prompt"] = json::array(o.multi_prompt.begin(), o.multi_prompt.end());
  }
  try {
    if (!o.image.empty()) {
      r["image_url"] = image_argument(o.image);
    }
    if (!o.tail_image.empty()) {
      r["tail_image_url"] = image_argument(o.tail_image);
    }
    if (!o.images.empty()) {
      json::array list;
      for (const auto& i : o.images) {
        list.push_back(json::string(image_argument(i)));
      }
      r["image_list"] = std::move(list);
    }
  } catch (const std::runtime_error& e) {
    throw CliExit(k_exit_usage, e.what());
  }
  if (o.duration) {
    r["duration"] = *o.duration;
  }
  if (!o.aspect_ratio.empty()) {
    r["aspect_ratio"] = o.aspect_ratio;
  }
  if (!o.negative_prompt.empty()) {
    r["negative_prompt"] = o.negative_prompt;
  }
  if (o.cfg_scale) {
    r["cfg_scale"] = *o.cfg_scale;
  }
  if (o.no_audio) {
    r["generate_audio"] = false;
  }
  if (!o.shot_type.empty()) {
    r["shot_type"] = o.shot_type;
  }
  return r;
}

json::object spec_from_line(const json::value& line)
{
  if (!line.is_object()) {
    throw std::runtime_error("a line must be a JSON object (a job spec or a request)");
  }
  const auto& obj = line.get_object();
  if (obj.contains("request")) {
    return obj;
  }
  json::object spec;
  spec["request"] = obj;
  return spec;
}

int cmd_submit(Session& s, const SubmitOptions& o)
{
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::size_t> index_to_line;
  json::object defaults; // --priority and --label apply to every job
  if (o.priority) {
    defaults["priority"] = *o.priority;
  }
  json::object labels;
  for (const auto& l : o.labels) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw CliExit(k_exit_usage, fmt::format("--label {}: expected NAME=VALUE", l));
    }
    labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  if (!labels.empty()) {
    defaults["labels"] = labels;
  }

  const bool table = !o.csv.empty() || !o.template_file.empty() || !o.vars.empty();
  if (table && (!o.file.empty() || request_flags_given(o))) {
    throw CliExit(k_exit_usage, "submit --csv/--template take the jobs from the CSV: not with -f, request flags, "
                                "--key or --output (put them in the columns or the template)");
  }
  if (o.max_usd && !table) {
    throw CliExit(k_exit_usage, "submit --max-usd goes with --csv or --template (a -f file can say "
                                "{\"jobs\": [...], \"max_usd\": N} through the socket API instead)");
  }
  if (table) {
    auto built = build_csv_batch(s, o, defaults);
    body = std::move(built.body);
    index_to_line = std::move(built.index_to_line);
  } else if (!o.file.empty()) {
    if (request_flags_given(o)) {
      throw CliExit(k_exit_usage,
                    "submit -f takes the jobs from the file: request flags, --key and --output go in its lines");
    }
    auto text = read_input(o.file);
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      auto nl = text.find('\n', pos);
      std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
      pos = nl == std::string::npos ? text.size() : nl + 1;
      ++line_no;
      auto first = line.find_first_not_of(" \t\r");
      if (first == std::string_view::npos || line[first] == '#') {
        continue;
      }
      boost::system::error_code ec;
      auto v = json::parse(line, ec);
      if (ec) {
        throw CliExit(k_exit_usage, fmt::format("{} line {}: invalid JSON: {}", o.file, line_no, ec.message()));
      }
      json::object spec;
      try {
        spec = spec_from_line(v);
      } catch (const std::runtime_error& e) {
        throw CliExit(k_exit_usage, fmt::format("{} line {}: {}", o.file, line_no, e.what()));
      }
      for (const auto& kv : defaults) {
        if (!spec.contains(kv.key())) {
          spec[kv.key()] = kv.value();
        }
      }
      body += json::serialize(spec);
      body += '\n';
      index_to_line.push_back(line_no);
    }
    if (index_to_line.empty()) {
      throw CliExit(k_exit_usage, fmt::format("{}: no job specs in it", o.file));
    }
    content_type = "application/x-ndjson";
  } else {
    json::object spec;
    spec["request"] = build_request(o);
    if (!o.key.empty()) {
      spec["key"] = o.key;
    }
    if (!o.output.empty()) {
      spec["output"] = o.output;
    }
    for (const auto& kv : defaults) {
      spec[kv.key()] = kv.value();
    }
    body = json::serialize(spec);
  }

  const auto* lines = index_to_line.empty() ? nullptr : &index_to_line;
  if (o.dry_run) {
    auto answer = dry_run(s, body, content_type, lines);
    if (s.json()) {
      std::cout << json::serialize(answer) << '\n';
    } else {
      print_dry_run(answer);
    }
    return k_exit_ok;
  }
  if (table && !o.yes) {
    confirm_gate(dry_run(s, body, content_type, lines), o);
  }
  auto res = s.call_ok("POST", "/v1/jobs", body, content_type, lines);
  const auto& obj = res.as_object();
  std::string batch(obj.at("batch").as_string());
  const auto& jobs = obj.at("jobs").as_array();
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
  } else if (jobs.size() == 1) {
    const auto& j = jobs[0].as_object();
    if (j.at("duplicate").as_bool()) {
      std::cout << fmt::format("job {} already exists with key {} ({}); nothing submitted\n",
                               std::string_view(j.at("id").as_string()), json::serialize(j.at("key")),
                               std::string_view(j.at("state").as_string()));
    } else {
      std::cout << fmt::format("job {} {} (batch {})\n", std::string_view(j.at("id").as_string()),
                               std::string_view(j.at("state").as_string()), batch);
    }
  } else {
    std::size_t dup = 0;
    for (const auto& j : jobs) {
      dup += j.as_object().at("duplicate").as_bool();
    }
    std::cout << fmt::format("batch {}: {} jobs submitted ({} new, {} already existed)\n", batch, jobs.size(),
                             jobs.size() - dup, dup);
  }
  std::cout << std::flush;
  if (!o.wait) {
    return k_exit_ok;
  }
  // Duplicates belong to earlier batches: then wait on the jobs themselves.
  std::vector<std::string> ids;
  bool any_duplicate = false;
  for (const auto& j : jobs) {
    ids.emplace_back(j.as_object().at("id").as_string());
    any_duplicate = any_duplicate || j.as_object().at("duplicate").as_bool();
  }
  if (ids.size() == 1 || any_duplicate) {
    return cmd_wait(s, ids, "");
  }
  return cmd_wait(s, {}, batch);
}

} // namespace klingd::cli
