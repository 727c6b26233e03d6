#include "common/placeholders.hpp"

#include "common/job.hpp"

#include <fmt/format.h>

namespace klingd::common {

std::string scan_placeholders(std::string_view text, const std::function<void(std::string_view)>& literal,
                              const std::function<void(std::string_view)>& placeholder)
{
  std::string run;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      run += '{';
      i += 2;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      run += '}';
      i += 2;
    } else if (c == '}') {
      return fmt::format("a '}}' at position {} closes nothing (write '}}}}' for a literal brace)", i + 1);
    } else if (c == '{') {
      const auto close = text.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || text[close] == '{') {
        return fmt::format("the '{{' at position {} is never closed (write '{{{{' for a literal brace)", i + 1);
      }
      if (close == i + 1) {
        return fmt::format("an empty placeholder '{{}}' at position {}", i + 1);
      }
      if (!run.empty()) {
        literal(run);
        run.clear();
      }
      placeholder(text.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      run += c;
      ++i;
    }
  }
  if (!run.empty()) {
    literal(run);
  }
  return {};
}

bool has_braces(std::string_view text)
{
  return text.find_first_of("{}") != std::string_view::npos;
}

std::string escape_braces(std::string_view text)
{
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    out += c;
    if (c == '{' || c == '}') {
      out += c;
    }
  }
  return out;
}

bool is_output_placeholder(std::string_view name)
{
  if (name == "batch" || name == "key" || name == "id" || name == "model" || name == "date" || name == "index") {
    return true;
  }
  return name.size() > 6 && name.substr(0, 6) == "label.";
}

std::string model_short_name(std::string_view model)
{
  if (auto slash = model.find('/'); slash != std::string_view::npos && slash + 1 < model.size()) {
    model.remove_prefix(slash + 1);
  }
  std::string out;
  for (char c : model) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-';
    out += c == '/' ? '-' : safe ? c : '_';
  }
  if (out.empty() || out == "." || out == "..") {
    out = "model";
  }
  return out;
}

std::string check_output_template(std::string_view output)
{
  std::string filled;
  std::string bad;
  auto why = scan_placeholders(
    output, [&](std::string_view lit) { filled += lit; },
    [&](std::string_view name) {
      if (!is_output_placeholder(name) && bad.empty()) {
        bad = std::string(name);
      }
      filled += 'x';
    });
  if (!why.empty()) {
    return why;
  }
  if (!bad.empty()) {
    return fmt::format("unknown placeholder {{{}}} (known: {{batch}}, {{key}}, {{id}}, {{model}}, {{date}}, "
                       "{{index}}, {{label.NAME}}; '{{{{' and '}}}}' are literal braces)",
                       bad);
  }
  return check_output_path(filled);
}

Result<std::string> resolve_output_template(std::string_view output, const OutputVars& vars)
{
  std::string out;
  std::string problem;
  auto why = scan_placeholders(
    output, [&](std::string_view lit) { out += lit; },
    [&](std::string_view name) {
      if (!problem.empty()) {
        return;
      }
      if (name == "batch") {
        out += vars.batch;
      } else if (name == "id") {
        out += vars.id;
      } else if (name == "model") {
        out += model_short_name(vars.model);
      } else if (name == "date") {
        out += vars.date;
      } else if (name == "index") {
        out += std::to_string(vars.index);
      } else if (name == "key") {
        if (vars.key && *vars.key) {
          out += **vars.key;
        } else {
          problem = "{key} is used but the job has no key";
        }
      } else if (name.substr(0, 6) == "label.") {
        const auto label = name.substr(6);
        const std::string* value = nullptr;
        if (vars.labels) {
          for (const auto& [k, v] : *vars.labels) {
            if (k == label) {
              value = &v;
            }
          }
        }
        if (value) {
          out += *value;
        } else {
          problem = fmt::format("{{{}}} is used but the job has no label \"{}\"", name, label);
        }
      } else {
        problem = fmt::format("unknown placeholder {{{}}}", name);
      }
    });
  if (!why.empty()) {
    return make_error("invalid", why);
  }
  if (!problem.empty()) {
    return make_error("invalid", problem);
  }
  if (auto bad = check_output_path(out); !bad.empty()) {
    return make_error("invalid", fmt::format("resolves to \"{}\", which {}", out, bad));
  }
  return out;
}

} // namespace klingd::common
