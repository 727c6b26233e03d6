// Reconciler: settles creates that may have been billed (docs/contract.md §3.2). While it
// holds a job (Owner::reconciler) nothing else sends a create for it. It looks the attempt's
// X-Client-Request-Id up in the provider's request log, a few queries for all due attempts:
//   - a row that names a generation → adopt it (poll; a canceled job keeps it for a retry);
//   - a `failed` row without one, or proof of absence (the log has caught up past the send
//     time + request timeout + slack and holds no row for it) → nothing was billed: re-send
//     (a canceled job stays canceled);
//   - nothing known after reconcile.window_s → on_ambiguous_create (`unresolved`).
// Every settlement is fenced by the attempt number (Core::settle_create).
#pragma once

#include "daemon/engine/core.hpp"
#include "daemon/engine/log_scanner.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace klingd::engine {

class Reconciler
{
public:
  Reconciler(Core& core, LogScanner& scanner) : m_core(core), m_scanner(scanner) {}

  // The create of `attempt` (sent at `sent`) got no usable answer: take the job over from its
  // actor and settle it. With reconcile.window_s = 0, on_ambiguous_create applies at once.
  boost::asio::awaitable<void> take_over(const store::Job& job, int attempt, SysTime sent, const provider::CreateResult* r,
                                         std::string why);
  // A job found `submitting` at start (or after a failed commit): its create may or may not
  // have gone out. Settled as above, or put back in the queue when no create was in flight.
  boost::asio::awaitable<void> settle_interrupted(const store::Job& job, std::string reason);
  // A canceled job whose current attempt is unsettled (found at start): settle it so that a
  // later retry knows whether a generation exists. No-op for any other job.
  boost::asio::awaitable<void> settle_canceled(const store::Job& job);

  // The loop: one round over every due attempt at a time.
  boost::asio::awaitable<void> step();
  std::size_t size() const { return m_pending.size(); }
  bool holds(const std::string& id) const { return m_pending.contains(id); }

private:
  struct Pending
  {
    std::string job_id;
    int attempt = 0;
    std::string client_request_id;
    std::string model;
    SysTime sent; // when the attempt was sent (wall clock: survives restarts)
    Clock::time_point next_check;
    int checks = 0;
  };

  void add(const store::Job& job, int attempt, SysTime sent);
  boost::asio::awaitable<void> round(std::vector<std::string> due);
  // What the round concluded for one attempt.
  enum class Verdict { adopt, never_billed, expired, wait };
  boost::asio::awaitable<void> settle(const Pending& p, Verdict v, const provider::LogRow* row);
  boost::asio::awaitable<void> adopt(const Pending& p, const provider::LogRow& row);
  boost::asio::awaitable<void> resend(const Pending& p, common::AttemptOutcome outcome, std::string why);
  boost::asio::awaitable<void> expire(const Pending& p);
  boost::asio::awaitable<void> apply_policy(const std::string& job_id, int attempt, const provider::CreateResult* r,
                                            std::string why);

  Core& m_core;
  LogScanner& m_scanner;
  std::unordered_map<std::string, Pending> m_pending;
};

} // namespace klingd::engine
