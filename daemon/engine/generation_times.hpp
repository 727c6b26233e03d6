// How long each model takes to generate, learned from finished jobs (docs/contract.md §3.3):
// the poller's schedule looks first near the expected end, then at short steps, instead of on a
// fixed schedule from acceptance. Keyed by (model, seconds of video asked); the newest
// k_samples of each key, loaded from the store at start and added to as jobs complete.
#pragma once

#include "daemon/store/job_store.hpp"

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace klingd::engine {

// Where a generation of one key usually ends: lo_s and hi_s are the 10th and 90th percentiles
// of its samples (seconds from acceptance).
struct GenerationProfile
{
  double lo_s = 0;
  double hi_s = 0;
  std::size_t samples = 0;
};

class GenerationTimes
{
public:
  static constexpr std::size_t k_samples = 32;    // newest kept per key
  static constexpr std::size_t k_min_samples = 3; // fewer: no profile (poll.* applies)

  void load(const std::vector<store::GenerationTime>& rows);
  void add(const std::string& model, std::int64_t video_s, double seconds);
  std::optional<GenerationProfile> profile(const std::string& model, std::int64_t video_s) const;
  std::size_t keys() const { return m_samples.size(); }

private:
  std::map<std::pair<std::string, std::int64_t>, std::deque<double>> m_samples;
};

} // namespace klingd::engine
