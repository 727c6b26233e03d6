#include "daemon/api/submit_stream.hpp"

#include <boost/json/serialize.hpp>

namespace klingd::api {

bool is_ndjson_type(std::string_view media_type)
{
  return media_type == "application/x-ndjson" || media_type == "application/jsonl" ||
         media_type == "application/x-jsonlines";
}

store::NewJob to_new_job(common::JobSpec&& spec)
{
  store::NewJob nj;
  nj.key = std::move(spec.key);
  nj.output = std::move(spec.output);
  nj.model = std::move(spec.model);
  nj.request = boost::json::serialize(spec.request);
  spec.request = {};
  nj.priority = spec.priority;
  nj.timeout_s = spec.timeout_s;
  nj.labels = std::move(spec.labels);
  return nj;
}

SubmitStream::SubmitStream(const common::Catalog& catalog, bool allow_unknown_models)
  : m_reader(catalog, allow_unknown_models,
             [this](common::JobSpec&& spec, std::size_t) { jobs.push_back(to_new_job(std::move(spec))); })
{
}

void SubmitStream::feed(std::string_view chunk)
{
  m_reader.feed(chunk);
  if (m_reader.failed() && !jobs.empty()) {
    std::vector<store::NewJob>().swap(jobs); // nothing will be stored: free it now
  }
}

void SubmitStream::finish()
{
  auto done = m_reader.finish();
  if (!done) {
    errors = std::move(done).error();
    std::vector<store::NewJob>().swap(jobs);
  }
}

} // namespace klingd::api
