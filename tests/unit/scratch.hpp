// A scratch directory per test, removed afterwards (kept when KLINGD_KEEP_SCRATCH is set).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace klingd::test {

class ScratchDir
{
public:
  ScratchDir()
  {
    std::random_device rd;
    m_path = std::filesystem::temp_directory_path() / ("klingd-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(m_path);
  }
  ~ScratchDir()
  {
    if (!std::getenv("KLINGD_KEEP_SCRATCH")) {
      std::error_code ec;
      std::filesystem::remove_all(m_path, ec);
    }
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::string file(const std::string& name) const { return (m_path / name).string(); }
  std::string write(const std::string& name, const std::string& content) const
  {
    auto p = m_path / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }

private:
  std::filesystem::path m_path;
};

} // namespace klingd::test
