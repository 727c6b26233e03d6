// A submit body read while it arrives: POST /v1/jobs with an NDJSON body is parsed line by
// line as the socket delivers it (api_server.cpp feeds the chunks) and each checked spec is
// turned into the row it will be stored as at once. The batch is never held as body text
// and as parsed specs at the same time: peak memory is the rows plus one line.
#pragma once

#include "common/job_spec.hpp"
#include "daemon/store/job_store.hpp"

#include <string_view>
#include <vector>

namespace klingd::api {

// The media types that mean "one job spec per line".
bool is_ndjson_type(std::string_view media_type);

// The row a checked spec is stored as (the request serialised once, here).
store::NewJob to_new_job(common::JobSpec&& spec);

class SubmitStream
{
public:
  SubmitStream(const common::Catalog& catalog, bool allow_unknown_models);
  SubmitStream(const SubmitStream&) = delete;
  SubmitStream& operator=(const SubmitStream&) = delete;

  void feed(std::string_view chunk);
  // Ends the body; then jobs (all of them) or errors (every one found) is filled.
  void finish();

  std::vector<store::NewJob> jobs;
  std::vector<common::SpecError> errors;

private:
  common::NdjsonSpecReader m_reader;
};

} // namespace klingd::api
