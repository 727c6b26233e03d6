#include "daemon/engine/generation_times.hpp"

#include <algorithm>
#include <cmath>

namespace klingd::engine {

namespace {
// Linear interpolation between closest ranks of sorted `v` (not empty).
double quantile(const std::vector<double>& v, double q)
{
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(std::floor(pos));
  const std::size_t j = std::min(i + 1, v.size() - 1);
  return v[i] + (v[j] - v[i]) * (pos - static_cast<double>(i));
}
} // namespace

void GenerationTimes::load(const std::vector<store::GenerationTime>& rows)
{
  for (const auto& r : rows) {
    add(r.model, r.video_s, r.seconds);
  }
}

void GenerationTimes::add(const std::string& model, std::int64_t video_s, double seconds)
{
  if (!(seconds >= 0) || !std::isfinite(seconds)) {
    return;
  }
  auto& q = m_samples[{model, video_s}];
  q.push_back(seconds);
  while (q.size() > k_samples) {
    q.pop_front();
  }
}

std::optional<GenerationProfile> GenerationTimes::profile(const std::string& model, std::int64_t video_s) const
{
  auto it = m_samples.find({model, video_s});
  if (it == m_samples.end() || it->second.size() < k_min_samples) {
    return std::nullopt;
  }
  std::vector<double> v(it->second.begin(), it->second.end());
  std::sort(v.begin(), v.end());
  return GenerationProfile{quantile(v, 0.1), quantile(v, 0.9), v.size()};
}

} // namespace klingd::engine
