// The schema migrations embedded at build time from migrations/NNNN_name.sql.
#pragma once
#include <string_view>
#include <vector>
namespace klingd::store {
struct Migration
{
  int version;            // the NNNN prefix: user_version after applying it
  std::string_view name;  // file name without extension
  std::string_view sql;
};
// Sorted by version, ascending.
extern const std::vector<Migration> k_migrations;
} // namespace klingd::store
