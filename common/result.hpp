// Result<T>: the return type of operations whose failure depends on input
// (bad config, invalid request, unknown job). I/O failures and bugs throw.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace klingd {

// A failure that a caller can show to a user: a stable machine-readable code
// and a message that names what was wrong (a key, a field, a file).
struct Error
{
  std::string code;
  std::string message;
};

template <typename T, typename E = Error>
class [[nodiscard]] Result
{
public:
  Result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}
  Result(E error) : m_v(std::in_place_index<1>, std::move(error)) {}

  bool ok() const noexcept { return m_v.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(m_v); }
  const T& value() const& { assert(ok()); return std::get<0>(m_v); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(m_v)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { assert(!ok()); return std::get<1>(m_v); }
  E&& error() && { assert(!ok()); return std::get<1>(std::move(m_v)); }

private:
  std::variant<T, E> m_v;
};

// Result of an operation that produces no value.
struct Ok
{
};

inline Error make_error(std::string code, std::string message)
{
  return Error{std::move(code), std::move(message)};
}

} // namespace klingd

// Propagate the error of a Result-returning expression; evaluates to its value.
#define KLINGD_TRY(expr)                                                       \
  ({                                                                           \
    auto klingd_try_result_ = (expr);                                          \
    if (!klingd_try_result_) {                                                 \
      return std::move(klingd_try_result_).error();                            \
    }                                                                          \
    std::move(klingd_try_result_).value();                                     \
  })
