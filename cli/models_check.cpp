// klingctl models --check: compares klingd's catalog (ids, prices per second) with the
// provider's live model list, GET /v1/models?include=pricing, and lists the drift. klingctl
// has no HTTPS client of its own, so the list is fetched with curl (the key goes on curl's
// stdin, never on its command line); --pricing-file compares with a saved answer instead.
#include "cli/commands.hpp"
#include "common/catalog.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace klingd::cli {

namespace json = boost::json;

namespace {

constexpr std::size_t k_max_answer_bytes = 64u << 20;

std::string read_text_file(const std::string& path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw CliExit(k_exit_usage, fmt::format("models --check: cannot read {}", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The API key as klingd would find it without a config file: AIMLAPI_KEY, else the systemd
// credential. Empty when there is none.
std::string find_key()
{
  if (const char* k = std::getenv("AIMLAPI_KEY"); k && *k) {
    return k;
  }
  if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
    std::ifstream in(std::string(dir) + "/aimlapi_key");
    std::string key;
    std::getline(in, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) {
      key.pop_back();
    }
    return key;
  }
  return {};
}

// Runs curl with `args`, writes `input` to its stdin, returns its stdout; throws on failure.
std::string run_curl(const std::vector<std::string>& args, const std::string& input)
{
  int to_child[2];
  int from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) {
    throw std::runtime_error(fmt::format("models --check: pipe: {}", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    throw std::runtime_error(fmt::format("models --check: fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(to_child[0], STDIN_FILENO);
    dup2(from_child[1], STDOUT_FILENO);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    std::vector<char*> argv;
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  std::size_t written = 0;
  while (written < input.size()) {
    const ssize_t n = write(to_child[1], input.data() + written, input.size() - written);
    if (n <= 0) {
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  close(to_child[1]);
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(from_child[0], buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    if (out.size() < k_max_answer_bytes) {
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(from_child[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    throw std::runtime_error(code == 127 ? std::string("models --check: curl is not installed")
                                         : fmt::format("models --check: fetching the provider's model list failed (curl exit {})", code));
  }
  return out;
}

std::string fetch_pricing()
{
  const std::string key = find_key();
  if (key.empty()) {
    throw CliExit(k_exit_usage, "models --check needs the API key (AIMLAPI_KEY or $CREDENTIALS_DIRECTORY/aimlapi_key), "
                                "or --pricing-file with a saved GET /v1/models?include=pricing answer");
  }
  std::string base = "https://api.aimlapi.com";
  if (const char* b = std::getenv("AIMLAPI_BASE_URL"); b && *b) {
    base = b;
  }
  while (base.size() > 1 && base.back() == '/') {
    base.pop_back();
  }
  return run_curl({"curl", "--silent", "--show-error", "--fail", "--max-time", "60", "--header", "@-",
                   "--header", "Accept: application/json", base + "/v1/models?include=pricing"},
                  "Authorization: Bearer " + key + "\n");
}

} // namespace

int check_models(Session& s, const json::value& catalog, const ModelsOptions& options)
{
  std::vector<common::PricedModel> models;
  if (const auto* list = catalog.is_object() ? catalog.get_object().if_contains("models") : nullptr; list && list->is_array()) {
    for (const auto& m : list->get_array()) {
      if (!m.is_object()) {
        continue;
      }
      const auto& o = m.get_object();
      const json::value* id = o.if_contains("id");
      if (!id || !id->is_string()) {
        continue;
      }
      common::PricedModel pm{std::string(id->get_string()), std::nullopt};
      const json::value* price = o.if_contains("price_usd");
      const json::value* unit = o.if_contains("price_unit");
      if (price && price->is_number() && !(unit && unit->is_string() && unit->get_string() == "per_video")) {
        pm.usd_per_second = price->to_number<double>();
      }
      models.push_back(std::move(pm));
    }
  }
  const std::string answer = options.pricing_file.empty() ? fetch_pricing() : read_text_file(options.pricing_file);
  auto drift = common::catalog_drift(models, answer);
  if (!drift) {
    throw std::runtime_error("models --check: " + drift.error().message);
  }
  if (s.json()) {
    json::array out;
    for (const auto& d : *drift) {
      out.push_back(json::object{{"model", d.model}, {"kind", common::to_string(d.kind)}, {"detail", d.detail}});
    }
    std::cout << json::serialize(json::object{{"drift", std::move(out)}}) << '\n';
  } else if (drift->empty()) {
    std::cout << fmt::format("no drift: the provider lists all {} catalog models at the catalog's prices\n", models.size());
  } else {
    std::cout << fmt::format("{:<48}  {:<14}  {}\n", "MODEL", "DRIFT", "DETAIL");
    for (const auto& d : *drift) {
      std::cout << fmt::format("{:<48}  {:<14}  {}\n", d.model, common::to_string(d.kind), d.detail);
    }
  }
  return drift->empty() ? k_exit_ok : k_exit_failed;
}

} // namespace klingd::cli
