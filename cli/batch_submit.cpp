// klingctl submit --csv / --template --vars: a batch from a CSV table (common/batch_input.hpp),
// the daemon's dry run (POST /v1/jobs?dry_run=1) and the confirmation gate (docs/contract.md §4.2).
#include "cli/commands.hpp"
#include "common/batch_input.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <map>

namespace klingd::cli {

namespace json = boost::json;

namespace {

std::string read_file(const std::string& flag, const std::string& file)
{
  if (file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw CliExit(k_exit_usage, fmt::format("{} {}: cannot read the file", flag, file));
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The catalog's parameter types, as GET /v1/models lists them; asked once, when first needed.
class CatalogTypes
{
public:
  explicit CatalogTypes(Session& s) : m_session(s) {}

  std::string operator()(const std::string& model, const std::string& field)
  {
    if (!m_loaded) {
      m_loaded = true;
      auto res = m_session.call_ok("GET", "/v1/models");
      for (const auto& m : res.as_object().at("models").as_array()) {
        auto& params = m_types[std::string(m.as_object().at("id").as_string())];
        for (const auto& p : m.as_object().at("params").as_array()) {
          const auto& o = p.as_object();
          params[std::string(o.at("name").as_string())] = std::string(o.at("type").as_string());
        }
      }
    }
    auto m = m_types.find(model);
    if (m == m_types.end()) {
      return {};
    }
    auto f = m->second.find(field);
    return f == m->second.end() ? std::string() : f->second;
  }

private:
  Session& m_session;
  bool m_loaded = false;
  std::map<std::string, std::map<std::string, std::string>> m_types;
};

std::string usd(double v)
{
  return fmt::format("${:.2f}", v);
}

} // namespace

BatchBody build_csv_batch(Session& s, const SubmitOptions& o, const json::object& defaults)
{
  const bool csv = !o.csv.empty();
  if (csv == !o.template_file.empty()) {
    throw CliExit(k_exit_usage, "submit: give --csv FILE, or --template FILE with --vars FILE (not both)");
  }
  if (!csv && o.vars.empty()) {
    throw CliExit(k_exit_usage, "submit --template needs --vars FILE (the CSV whose rows fill it in)");
  }
  const std::string& csv_file = csv ? o.csv : o.vars;
  auto table = common::parse_csv(read_file(csv ? "--csv" : "--vars", csv_file));
  if (!table) {
    throw CliExit(k_exit_usage, fmt::format("{}: {}", csv_file, table.error().message));
  }
  if (table->rows.empty()) {
    throw CliExit(k_exit_usage, fmt::format("{}: no rows after the header", csv_file));
  }
  json::object tmpl;
  if (!csv) {
    boost::system::error_code ec;
    auto v = json::parse(read_file("--template", o.template_file), ec);
    if (ec || !v.is_object()) {
      throw CliExit(k_exit_usage, fmt::format("--template {}: {}", o.template_file,
                                              ec ? "invalid JSON: " + ec.message() : std::string("must be a JSON object")));
    }
    tmpl = std::move(v.as_object());
  }
  CatalogTypes catalog(s);
  common::FieldTypeFn types = [&catalog](const std::string& m, const std::string& f) { return catalog(m, f); };
  BatchBody out;
  json::array jobs;
  for (const auto& row : table->rows) {
    auto spec = csv ? common::spec_from_csv_row(*table, row, types) : common::expand_template(tmpl, *table, row, types);
    if (!spec) {
      throw CliExit(k_exit_usage, fmt::format("{} {}", csv_file, spec.error().message));
    }
    for (const auto& kv : defaults) {
      if (!spec->contains(kv.key())) {
        (*spec)[kv.key()] = kv.value();
      }
    }
    jobs.push_back(std::move(spec).value());
    out.index_to_line.push_back(row.line);
  }
  json::object body;
  body["jobs"] = std::move(jobs);
  if (o.max_usd) {
    body["max_usd"] = *o.max_usd;
  }
  out.body = json::serialize(body);
  return out;
}

json::value dry_run(Session& s, const std::string& body, const std::string& content_type,
                    const std::vector<std::size_t>* index_to_line)
{
  return s.call_ok("POST", "/v1/jobs?dry_run=1", body, content_type, index_to_line);
}

void print_dry_run(const json::value& answer)
{
  const auto& a = answer.as_object();
  std::cout << fmt::format("dry run: {} job(s), {} new, {} already stored (by key); nothing was stored\n",
                           a.at("jobs").to_number<std::int64_t>(), a.at("new").to_number<std::int64_t>(),
                           a.at("duplicates").to_number<std::int64_t>());
  for (const auto& kv : a.at("by_model").as_object()) {
    const auto& m = kv.value().as_object();
    auto unpriced = m.at("unpriced").to_number<std::int64_t>();
    std::cout << fmt::format("  {:<44} {:>6} job(s)  {:>10}{}\n", std::string_view(kv.key()),
                             m.at("jobs").to_number<std::int64_t>(), usd(m.at("expected_usd").to_number<double>()),
                             unpriced ? fmt::format("  ({} without a price)", unpriced) : std::string());
  }
  std::string budget = a.at("max_usd").is_null() ? std::string("no max_usd")
                                                  : fmt::format("max_usd {}", usd(a.at("max_usd").to_number<double>()));
  std::cout << fmt::format("expected cost: {} ({}{})\n", usd(a.at("expected_usd").to_number<double>()), budget,
                           a.at("over_budget").as_bool() ? ", EXCEEDED" : "")
            << std::flush;
}

void confirm_gate(const json::value& answer, const SubmitOptions& o)
{
  const auto& a = answer.as_object();
  const auto jobs = a.at("new").to_number<std::int64_t>();
  if (jobs > o.confirm_over) {
    throw CliExit(k_exit_confirm,
                  fmt::format("submit: {} new jobs is more than --confirm-over {} (expected cost {}): nothing was "
                              "submitted; check with --dry-run, then add --yes",
                              jobs, o.confirm_over, usd(a.at("expected_usd").to_number<double>())));
  }
  if (a.at("over_budget").as_bool()) {
    throw CliExit(k_exit_confirm,
                  fmt::format("submit: the expected cost {} exceeds the batch's max_usd {}: nothing was submitted "
                              "(the budget would hold the rest of the batch back); add --yes to submit anyway",
                              usd(a.at("expected_usd").to_number<double>()), usd(a.at("max_usd").to_number<double>())));
  }
}

} // namespace klingd::cli
