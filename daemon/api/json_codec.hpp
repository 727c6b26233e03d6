// Jobs, events and counts as the socket API shows them (docs/contract.md §2, §4.1).
#pragma once

#include "common/config.hpp"
#include "daemon/store/job_store.hpp"

#include <boost/json/object.hpp>

#include <string>
#include <utility>
#include <vector>

namespace klingd::common {
class Catalog;
}

namespace klingd::api {

// The job object of docs/contract.md §2 plus `step`, `timeout_s` and `cost`. `request` and `labels`
// are objects (stored JSON text that fails to parse shows as null, never throws);
// video.path is absolute (videos_dir/output when the store kept a relative path).
boost::json::object job_to_json(const store::Job& job, const common::Config& config);

// {"seq","job","batch","state","at","step"?,"error"?} — one line of GET /v1/events.
boost::json::object event_to_json(const store::Event& event);

// {"state","at","step"?,"error"?} — one entry of a job's history.
boost::json::object history_to_json(const store::Event& event);

// Every state with its count (zero included), in state-table order, and their total.
boost::json::object counts_to_json(const std::vector<std::pair<common::JobState, std::int64_t>>& counts,
                                   std::int64_t* total = nullptr);

// The catalog for GET /v1/models: {"models": [{id, kind, family, …, params: [...]}]}.
boost::json::object catalog_to_json(const common::Catalog& catalog);

} // namespace klingd::api
