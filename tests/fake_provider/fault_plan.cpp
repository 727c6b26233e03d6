#include "tests/fake_provider/fault_plan.hpp"

#include "tests/fake_provider/support.hpp"

namespace fake {

namespace json = boost::json;

FaultType FaultPlan::decide(EndpointKind kind, const FakeConfig& config)
{
  const auto k = static_cast<std::size_t>(kind);
  const std::uint64_t ordinal = m_requests[k]++;
  FaultType chosen = FaultType::none;
  auto& queue = m_script[k];
  if (!queue.empty()) {
    chosen = queue.front().fault;
    if (--queue.front().count <= 0) {
      queue.pop_front();
    }
  } else {
    // One draw per request; the faults split [0, 1) in a fixed order, so their
    // probabilities add up and do not shadow each other.
    double u = unit_random(config.seed, 0xfa017 + k, ordinal);
    double cumulative = 0.0;
    for (const auto& [type, p] : config.fault_rates[k]) {
      cumulative += p;
      if (u < cumulative) {
        chosen = type;
        break;
      }
    }
  }
  if (chosen != FaultType::none) {
    ++m_injected[k][chosen];
  }
  return chosen;
}

void FaultPlan::set_script(const std::vector<ScriptStep>& steps)
{
  for (auto& queue : m_script) {
    queue.clear();
  }
  for (const auto& step : steps) {
    m_script[static_cast<std::size_t>(step.kind)].push_back(step);
  }
}

json::object FaultPlan::injected_json() const
{
  json::object out;
  for (std::size_t k = 0; k < k_endpoint_kinds; ++k) {
    json::object counts;
    for (const auto& [type, n] : m_injected[k]) {
      counts[to_string(type)] = n;
    }
    out[to_string(static_cast<EndpointKind>(k))] = std::move(counts);
  }
  return out;
}

json::array FaultPlan::script_json() const
{
  json::array out;
  for (const auto& queue : m_script) {
    for (const auto& step : queue) {
      out.push_back(json::object{
        {"kind", to_string(step.kind)}, {"fault", to_string(step.fault)}, {"count", step.count}});
    }
  }
  return out;
}

std::uint64_t FaultPlan::injected_total() const
{
  std::uint64_t total = 0;
  for (const auto& kind : m_injected) {
    for (const auto& [type, n] : kind) {
      total += n;
    }
  }
  return total;
}

} // namespace fake
