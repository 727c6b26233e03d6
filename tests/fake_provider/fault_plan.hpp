// Decides which fault (if any) the next request of each endpoint kind gets: scripted steps
// first ("the next N creates get reset_after_create"), then the configured probabilities,
// drawn deterministically from the seed and the request's ordinal within its kind.
#pragma once

#include "tests/fake_provider/fake_config.hpp"

#include <boost/json/object.hpp>
#include <boost/json/array.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

namespace fake {

class FaultPlan {
public:
  // Picks the fault for the next request of `kind` and counts it as injected.
  FaultType decide(EndpointKind kind, const FakeConfig& config);
  // Replaces the pending script.
  void set_script(const std::vector<ScriptStep>& steps);

  boost::json::object injected_json() const;
  boost::json::array script_json() const;
  std::uint64_t injected_total() const;

private:
  std::array<std::deque<ScriptStep>, k_endpoint_kinds> m_script;
  std::array<std::uint64_t, k_endpoint_kinds> m_requests{};
  std::array<std::map<FaultType, std::uint64_t>, k_endpoint_kinds> m_injected;
};

} // namespace fake
