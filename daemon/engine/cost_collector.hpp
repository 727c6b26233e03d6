// CostCollector: the cost of completed jobs whose create answer carried no cost headers. The
// provider records a video's charge once it completed; its request-log row then has the cost
// (looked up by generation id through the shared LogScanner, in batches, backing off).
#pragma once

#include "daemon/engine/core.hpp"
#include "daemon/engine/log_scanner.hpp"

#include <string>
#include <unordered_map>

namespace klingd::engine {

class CostCollector
{
public:
  CostCollector(Core& core, LogScanner& scanner) : m_core(core), m_scanner(scanner) {}

  // Looks the job's cost up unless it has one (or no generation).
  void add(const store::Job& job);
  boost::asio::awaitable<void> step();

private:
  struct Lookup
  {
    std::string job_id;
    std::string generation_id;
    std::string model;
    SysTime accepted;
    Clock::time_point next_check;
    int checks = 0;
  };
  Core& m_core;
  LogScanner& m_scanner;
  std::unordered_map<std::string, Lookup> m_lookups;
};

} // namespace klingd::engine
