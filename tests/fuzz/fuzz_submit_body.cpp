// libFuzzer target: a submit body as the socket API receives it (POST /v1/jobs) — JSON with
// the daemon's limits, the three body shapes, every spec field and the catalog's validation
// of the provider request. Nothing here may crash, hang, leak or hit undefined behaviour,
// whatever the bytes; an accepted body must be one whose specs are all well-formed.
#include "common/catalog.hpp"
#include "common/job_spec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

const klingd::common::Catalog& catalog()
{
  // The catalog klingd embeds (config/models.json), read once.
  static const auto c = [] {
    auto r = klingd::common::Catalog::load_file(KLINGD_SOURCE_DIR "/config/models.json");
    if (!r) {
      std::abort();
    }
    return std::move(*r);
  }();
  return c;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size == 0) {
    return 0;
  }
  // The first byte picks the mode so that one corpus drives both parsers and both settings.
  const std::uint8_t mode = data[0];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool ndjson = mode & 1;
  const bool allow_unknown = mode & 2;
  auto r = klingd::common::parse_submit_body(body, ndjson, catalog(), allow_unknown);
  if (r) {
    if (r->jobs.empty()) {
      std::abort(); // an empty batch must be refused
    }
    for (const auto& job : r->jobs) {
      if (job.model.empty() || (job.key && job.key->empty())) {
        std::abort();
      }
      (void)catalog().estimate_usd(job.request);
    }
  } else {
    for (const auto& e : r.error()) {
      (void)klingd::common::to_string(e);
    }
  }
  // The request validator on its own, on whatever JSON the bytes are.
  if (auto v = klingd::common::parse_json_text(body)) {
    (void)catalog().validate(*v, allow_unknown);
  }
  return 0;
}
