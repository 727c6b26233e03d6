#include "daemon/store/job_store.hpp"

#include "common/placeholders.hpp"
#include "common/time.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

namespace klingd::store {

namespace {

constexpr const char* k_job_columns =
  "id, key, batch, state, step, model, request, output, priority, timeout_s, labels, generation_id, "
  "provider_status, provider_failed, attempts, step_failures, polls, error_code, error_message, "
  "error_http_status, video_url, video_file_size, video_path, video_bytes, video_sha256, cost_usd, "
  "cost_credits, created_at, updated_at, accepted_at, finished_at, route_asked, route_served, refund_usd";

JobState state_from_text(const std::string& s)
{
  auto st = common::parse_job_state(s);
  if (!st) {
    throw std::runtime_error(fmt::format("store: unknown job state '{}'", s));
  }
  return *st;
}

std::optional<JobError> read_error(Query& st, int code_col)
{
  if (st.is_null(code_col)) {
    return std::nullopt;
  }
  JobError e;
  e.code = st.text(code_col);
  e.message = st.text(code_col + 1);
  if (auto h = st.opt_int64(code_col + 2)) {
    e.http_status = static_cast<int>(*h);
  }
  return e;
}

Event read_event(Query& st)
{
  // seq, job_id, batch, state, step, at, error_code, error_message, error_http_status
  Event e;
  e.seq = st.int64(0);
  e.job_id = st.text(1);
  e.batch = st.text(2);
  e.state = state_from_text(st.text(3));
  e.step = st.opt_text(4);
  e.at = st.text(5);
  e.error = read_error(st, 6);
  return e;
}

} // namespace

JobStore::JobStore(Db& db) : m_db(db) {}

Job JobStore::read_job(Query& st)
{
  Job j;
  j.id = st.text(0);
  j.key = st.opt_text(1);
  j.batch = st.text(2);
  j.state = state_from_text(st.text(3));
  j.step = st.opt_text(4);
  j.model = st.text(5);
  j.request = st.text(6);
  j.output = st.text(7);
  j.priority = static_cast<int>(st.int64(8));
  j.timeout_s = st.real(9);
  j.labels = st.text(10);
  j.generation_id = st.opt_text(11);
  j.provider_status = st.opt_text(12);
  j.provider_failed = st.int64(13) != 0;
  j.attempts = static_cast<int>(st.int64(14));
  j.step_failures = static_cast<int>(st.int64(15));
  j.polls = st.int64(16);
  j.error = read_error(st, 17);
  j.video_url = st.opt_text(20);
  j.video_file_size = st.opt_int64(21);
  j.video_path = st.opt_text(22);
  j.video_bytes = st.opt_int64(23);
  j.video_sha256 = st.opt_text(24);
  j.cost_usd = st.opt_real(25);
  j.cost_credits = st.opt_int64(26);
  j.created_at = st.text(27);
  j.updated_at = st.text(28);
  j.accepted_at = st.opt_text(29);
  j.finished_at = st.opt_text(30);
  j.route_asked = st.opt_text(31);
  j.route_served = st.opt_text(32);
  j.refund_usd = st.opt_real(33);
  return j;
}

Result<BatchInsert, std::vector<IndexError>> JobStore::insert_batch(const std::vector<NewJob>& jobs,
                                                                    std::optional<double> max_usd, bool dry_run)
{
  std::vector<IndexError> errors;
  BatchInsert out;
  out.batch = common::make_id();
  const std::string now = format_rfc3339(now_utc());

  // Checks that need no writes first, so a bad batch costs no savepoint work.
  std::set<std::string_view> keys_seen;
  std::set<std::string_view> outputs_seen;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto& j = jobs[i];
    if (j.key && !keys_seen.insert(*j.key).second) {
      errors.push_back({i, "key", fmt::format("key \"{}\" appears more than once in this batch", *j.key)});
    }
    if (j.output && !common::has_braces(*j.output) && !outputs_seen.insert(*j.output).second) {
      errors.push_back({i, "output", fmt::format("output \"{}\" appears more than once in this batch", *j.output)});
    }
  }
  if (!errors.empty()) {
    return errors;
  }

  std::map<std::string, std::string> tombstone_batches; // pruned job id -> its batch
  std::map<std::string, std::size_t> resolved_outputs;  // output name -> index of the job holding it
  const std::string date = now.substr(0, 10);
  Savepoint sp(m_db, "insert_batch");
  const std::size_t pending_before = m_pending.size();
  std::size_t inserted = 0;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto& nj = jobs[i];
    if (nj.key) {
      if (auto existing = get_by_key(*nj.key)) {
        out.jobs.push_back({existing->id, existing->key, existing->state, true});
        continue;
      }
      if (auto gone = key_tombstone(*nj.key)) {
        out.jobs.push_back({gone->job_id, gone->key, gone->state, true});
        tombstone_batches.emplace(gone->job_id, gone->batch);
        continue;
      }
    }
    Job j;
    j.id = common::make_id();
    j.key = nj.key;
    j.batch = out.batch;
    j.model = nj.model;
    j.request = nj.request;
    j.output = nj.output ? *nj.output : j.id + ".mp4";
    if (nj.output && common::has_braces(*nj.output)) {
      auto name = common::resolve_output_template(
        *nj.output, {out.batch, j.id, nj.model, date, i, &nj.key, &nj.labels});
      if (!name) {
        errors.push_back({i, "output", fmt::format("\"{}\": {}", *nj.output, name.error().message)});
        continue;
      }
      j.output = std::move(name).value();
    }
    if (auto [at, fresh] = resolved_outputs.emplace(j.output, i); !fresh) {
      errors.push_back({i, "output", fmt::format("output \"{}\" is also the output of jobs[{}] in this batch", j.output,
                                                 at->second)});
      continue;
    }
    j.priority = nj.priority;
    j.timeout_s = nj.timeout_s;
    boost::json::object labels;
    for (const auto& [k, v] : nj.labels) {
      labels[k] = v;
    }
    j.labels = boost::json::serialize(labels);

    auto owner = m_db.prepare("SELECT id FROM jobs WHERE output = ?");
    owner.bind(1, j.output);
    if (owner.step()) {
      errors.push_back({i, "output", fmt::format("output \"{}\" is already claimed by job {}", j.output, owner.text(0)), true});
      continue;
    }
    if (inserted == 0) {
      auto b = m_db.prepare("INSERT INTO batches (id, created_at, max_usd) VALUES (?, ?, ?)");
      b.bind(1, out.batch).bind(2, now).bind(3, max_usd);
      b.run();
    }
    auto ins = m_db.prepare(
      "INSERT INTO jobs (id, key, batch, state, model, request, output, priority, timeout_s, labels, created_at, updated_at) "
      "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)");
    ins.bind(1, j.id).bind(2, j.key).bind(3, j.batch).bind(4, j.model).bind(5, j.request).bind(6, j.output);
    ins.bind(7, static_cast<std::int64_t>(j.priority)).bind(8, j.timeout_s).bind(9, j.labels).bind(10, now).bind(11, now);
    ins.run();
    for (const auto& [k, v] : nj.labels) {
      auto l = m_db.prepare("INSERT OR IGNORE INTO job_labels (name, value, job_id) VALUES (?, ?, ?)");
      l.bind(1, k).bind(2, v).bind(3, j.id);
      l.run();
    }
    append_event(j, JobState::queued, std::nullopt, std::nullopt, now);
    out.jobs.push_back({j.id, j.key, JobState::queued, false});
    ++inserted;
  }
  if (!errors.empty() || dry_run) {
    m_pending.resize(pending_before);
    if (!errors.empty()) {
      return errors; // the savepoint rolls back
    }
    return out; // dry run: the same answer, and the savepoint rolls back
  }
  if (inserted > 0) {
    auto c = m_db.prepare("UPDATE batches SET job_count = job_count + ? WHERE id = ?");
    c.bind(1, static_cast<std::int64_t>(inserted)).bind(2, out.batch);
    c.run();
  } else if (!out.jobs.empty()) {
    // Every job was a duplicate: answer with the batch the first one belongs to.
    if (auto first = get(out.jobs.front().id)) {
      out.batch = first->batch;
    } else if (auto t = tombstone_batches.find(out.jobs.front().id); t != tombstone_batches.end()) {
      out.batch = t->second;
    }
  }
  sp.commit();
  return out;
}

std::optional<Job> JobStore::get(std::string_view id)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM jobs WHERE id = ?", k_job_columns));
  st.bind(1, id);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_job(st);
}

std::optional<Job> JobStore::get_by_key(std::string_view key)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM jobs WHERE key = ?", k_job_columns));
  st.bind(1, key);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_job(st);
}

std::optional<Job> JobStore::get_by_generation(std::string_view generation_id)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM jobs WHERE generation_id = ? ORDER BY id DESC LIMIT 1", k_job_columns));
  st.bind(1, generation_id);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_job(st);
}

JobList JobStore::list(const ListFilter& f)
{
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE 1", k_job_columns);
  if (!f.states.empty()) {
    sql += " AND state IN (";
    for (std::size_t i = 0; i < f.states.size(); ++i) {
      sql += i ? ",?" : "?";
    }
    sql += ")";
  }
  if (f.batch) {
    sql += " AND batch = ?";
  }
  if (f.label) {
    sql += " AND id IN (SELECT job_id FROM job_labels WHERE name = ? AND value = ?)";
  }
  if (f.after) {
    sql += " AND id > ?";
  }
  sql += " ORDER BY id LIMIT ?";
  auto st = m_db.prepare(sql);
  int p = 1;
  for (auto s : f.states) {
    st.bind(p++, common::to_string(s));
  }
  if (f.batch) {
    st.bind(p++, *f.batch);
  }
  if (f.label) {
    st.bind(p++, f.label->first);
    st.bind(p++, f.label->second);
  }
  if (f.after) {
    st.bind(p++, *f.after);
  }
  // One extra row tells whether there is a next page.
  st.bind(p++, static_cast<std::int64_t>(f.limit + 1));
  JobList out;
  while (st.step()) {
    if (out.jobs.size() == f.limit) {
      out.next = out.jobs.back().id;
      break;
    }
    out.jobs.push_back(read_job(st));
  }
  return out;
}

std::vector<Job> JobStore::active_jobs()
{
  auto st = m_db.prepare(fmt::format(
    "SELECT {} FROM jobs WHERE state IN ('queued','submitting','generating','downloading') ORDER BY id", k_job_columns));
  std::vector<Job> out;
  while (st.step()) {
    out.push_back(read_job(st));
  }
  return out;
}

std::vector<Job> JobStore::next_queued(std::size_t limit, const std::vector<std::string>& exclude_batches)
{
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE state = 'queued'", k_job_columns);
  if (!exclude_batches.empty()) {
    sql += " AND batch NOT IN (";
    for (std::size_t i = 0; i < exclude_batches.size(); ++i) {
      sql += i ? ",?" : "?";
    }
    sql += ")";
  }
  sql += " ORDER BY priority DESC, id LIMIT ?";
  auto st = m_db.prepare(sql);
  int p = 1;
  for (const auto& b : exclude_batches) {
    st.bind(p++, b);
  }
  st.bind(p, static_cast<std::int64_t>(limit));
  std::vector<Job> out;
  while (st.step()) {
    out.push_back(read_job(st));
  }
  return out;
}

namespace {

// Builds "SET a = ?, b = ?" for the fields present in `u`, binding in order.
struct SetClause
{
  std::string sql;
  std::vector<std::function<void(Query&, int)>> binders;

  template <typename T>
  void add(const char* col, T value)
  {
    sql += fmt::format(", {} = ?", col);
    binders.push_back([value](Query& st, int i) { st.bind(i, value); });
  }
  void add_null(const char* col) { sql += fmt::format(", {} = NULL", col); }
};

SetClause build_set(const JobUpdate& u)
{
  SetClause s;
  if (u.step) {
    if (*u.step) {
      s.add("step", **u.step);
    } else {
      s.add_null("step");
    }
  }
  if (u.error) {
    if (*u.error) {
      const JobError& e = **u.error;
      s.add("error_code", e.code);
      s.add("error_message", e.message);
      if (e.http_status) {
        s.add("error_http_status", static_cast<std::int64_t>(*e.http_status));
      } else {
        s.add_null("error_http_status");
      }
    } else {
      s.add_null("error_code");
      s.add_null("error_message");
      s.add_null("error_http_status");
    }
  }
  if (u.clear_generation) {
    s.add_null("generation_id");
    s.add_null("provider_status");
    s.add_null("accepted_at");
    s.sql += ", provider_failed = 0";
  }
  if (u.clear_video) {
    s.add_null("video_url");
    s.add_null("video_file_size");
    s.add_null("video_path");
    s.add_null("video_bytes");
    s.add_null("video_sha256");
  }
  if (u.generation_id) s.add("generation_id", *u.generation_id);
  if (u.provider_status) s.add("provider_status", *u.provider_status);
  if (u.provider_failed) s.add("provider_failed", static_cast<std::int64_t>(*u.provider_failed));
  if (u.step_failures) s.add("step_failures", static_cast<std::int64_t>(*u.step_failures));
  if (u.video_url) s.add("video_url", *u.video_url);
  if (u.video_file_size) s.add("video_file_size", *u.video_file_size);
  if (u.video_path) s.add("video_path", *u.video_path);
  if (u.video_bytes) s.add("video_bytes", *u.video_bytes);
  if (u.video_sha256) s.add("video_sha256", *u.video_sha256);
  if (u.accepted_at) s.add("accepted_at", *u.accepted_at);
  if (u.cost_usd) s.add("cost_usd", *u.cost_usd);
  if (u.cost_credits) s.add("cost_credits", *u.cost_credits);
  if (u.cost_estimate_usd) s.add("cost_estimate_usd", *u.cost_estimate_usd);
  if (u.route_asked) s.add("route_asked", *u.route_asked);
  if (u.route_served) s.add("route_served", *u.route_served);
  if (u.refund_usd) s.add("refund_usd", *u.refund_usd);
  return s;
}

} // namespace

bool JobStore::transition(std::string_view id, JobState from, JobState to, const JobUpdate& update)
{
  if (!common::is_legal_transition(from, to)) {
    throw std::logic_error(fmt::format("illegal transition {} -> {} for job {}", common::to_string(from),
                                       common::to_string(to), id));
  }
  const std::string now = format_rfc3339(now_utc());
  SetClause set = build_set(update);
  std::string finished = common::is_terminal(to) ? ", finished_at = ?" : ", finished_at = NULL";
  auto st = m_db.prepare(
    fmt::format("UPDATE jobs SET state = ?, updated_at = ?{}{} WHERE id = ? AND state = ?", finished, set.sql));
  int p = 1;
  st.bind(p++, common::to_string(to));
  st.bind(p++, now);
  if (common::is_terminal(to)) {
    st.bind(p++, now);
  }
  for (auto& b : set.binders) {
    b(st, p++);
  }
  st.bind(p++, id);
  st.bind(p++, common::to_string(from));
  st.run();
  if (m_db.changes() == 0) {
    return false;
  }
  auto job = get(id);
  append_event(*job, to, job->step, job->error, now);
  if (common::is_terminal(to) && m_hooks.any()) {
    owe_hooks(m_db, m_hooks, job->id, job->batch, to, m_pending.back().seq, now);
  }
  return true;
}

bool JobStore::append_note(std::string_view id, const std::string& step, const std::optional<JobError>& error)
{
  auto job = get(id);
  if (!job) {
    return false;
  }
  append_event(*job, job->state, step, error, format_rfc3339(now_utc()));
  return true;
}

bool JobStore::update(std::string_view id, JobState expected, const JobUpdate& update,
                      std::optional<std::string> event_step, std::optional<JobError> event_error)
{
  const std::string now = format_rfc3339(now_utc());
  SetClause set = build_set(update);
  auto st = m_db.prepare(fmt::format("UPDATE jobs SET updated_at = ?{} WHERE id = ? AND state = ?", set.sql));
  int p = 1;
  st.bind(p++, now);
  for (auto& b : set.binders) {
    b(st, p++);
  }
  st.bind(p++, id);
  st.bind(p++, common::to_string(expected));
  st.run();
  if (m_db.changes() == 0) {
    return false;
  }
  if (event_step) {
    auto job = get(id);
    append_event(*job, expected, event_step, event_error, now);
  }
  return true;
}

void JobStore::add_polls(std::string_view id, std::int64_t polls)
{
  auto st = m_db.prepare("UPDATE jobs SET polls = polls + ? WHERE id = ?");
  st.bind(1, polls).bind(2, id);
  st.run();
}

int JobStore::begin_attempt(std::string_view job_id, std::string_view client_request_id)
{
  auto up = m_db.prepare("UPDATE jobs SET attempts = attempts + 1 WHERE id = ? AND state = 'submitting' RETURNING attempts");
  up.bind(1, job_id);
  if (!up.step()) {
    throw std::logic_error(fmt::format("begin_attempt: job {} is not submitting", job_id));
  }
  const int n = static_cast<int>(up.int64(0));
  up.run();
  auto ins = m_db.prepare(
    "INSERT INTO create_attempts (job_id, attempt, client_request_id, started_at) VALUES (?, ?, ?, ?)");
  ins.bind(1, job_id).bind(2, static_cast<std::int64_t>(n)).bind(3, client_request_id).bind(4, format_rfc3339(now_utc()));
  ins.run();
  return n;
}

namespace {
// The SET columns of an attempt's outcome, then job_id and attempt for the WHERE clause.
void bind_outcome(Query& st, const Attempt& a)
{
  st.bind(1, a.outcome);
  if (a.http_status) {
    st.bind(2, static_cast<std::int64_t>(*a.http_status));
  } else {
    st.bind_null(2);
  }
  st.bind(3, a.generation_id).bind(4, a.inference_id).bind(5, a.credits).bind(6, a.usd);
  st.bind(7, format_rfc3339(now_utc())).bind(8, a.job_id).bind(9, static_cast<std::int64_t>(a.attempt));
}
constexpr const char* k_set_outcome =
  "UPDATE create_attempts SET outcome = ?, http_status = ?, generation_id = ?, inference_id = ?, credits = ?, "
  "usd = ?, finished_at = ? WHERE job_id = ? AND attempt = ?";
} // namespace

void JobStore::finish_attempt(const Attempt& a)
{
  auto st = m_db.prepare(k_set_outcome);
  bind_outcome(st, a);
  st.run();
}

bool JobStore::settle_attempt(const Attempt& a)
{
  auto st = m_db.prepare(fmt::format("{} AND outcome IN ('pending','ambiguous') "
                                      "AND attempt = (SELECT attempts FROM jobs WHERE id = create_attempts.job_id)",
                                      k_set_outcome));
  bind_outcome(st, a);
  st.run();
  return m_db.changes() > 0;
}

std::vector<Job> JobStore::canceled_with_unsettled_attempt()
{
  auto st = m_db.prepare(fmt::format(
    "SELECT {} FROM jobs WHERE state = 'canceled' AND EXISTS (SELECT 1 FROM create_attempts a WHERE a.job_id = jobs.id "
    "AND a.attempt = jobs.attempts AND a.outcome IN ('pending','ambiguous')) ORDER BY id",
    k_job_columns));
  std::vector<Job> out;
  while (st.step()) {
    out.push_back(read_job(st));
  }
  return out;
}

namespace {
Attempt read_attempt(Query& st)
{
  Attempt a;
  a.job_id = st.text(0);
  a.attempt = static_cast<int>(st.int64(1));
  a.client_request_id = st.text(2);
  a.started_at = st.text(3);
  a.outcome = st.text(4);
  if (auto h = st.opt_int64(5)) {
    a.http_status = static_cast<int>(*h);
  }
  a.generation_id = st.opt_text(6);
  a.inference_id = st.opt_text(7);
  a.credits = st.opt_int64(8);
  a.usd = st.opt_real(9);
  return a;
}
constexpr const char* k_attempt_columns =
  "job_id, attempt, client_request_id, started_at, outcome, http_status, generation_id, inference_id, credits, usd";
} // namespace

std::vector<Attempt> JobStore::attempts(std::string_view job_id)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM create_attempts WHERE job_id = ? ORDER BY attempt", k_attempt_columns));
  st.bind(1, job_id);
  std::vector<Attempt> out;
  while (st.step()) {
    out.push_back(read_attempt(st));
  }
  return out;
}

std::optional<Attempt> JobStore::last_attempt(std::string_view job_id)
{
  auto st = m_db.prepare(
    fmt::format("SELECT {} FROM create_attempts WHERE job_id = ? ORDER BY attempt DESC LIMIT 1", k_attempt_columns));
  st.bind(1, job_id);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_attempt(st); // the Query resets its statement when it goes out of scope

}

std::vector<Attempt> JobStore::attempts_with_outcome(std::string_view outcome)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM create_attempts WHERE outcome = ? ORDER BY job_id, attempt", k_attempt_columns));
  st.bind(1, outcome);
  std::vector<Attempt> out;
  while (st.step()) {
    out.push_back(read_attempt(st));
  }
  return out;
}

CostSummary JobStore::cost_summary()
{
  CostSummary out;
  auto rows = [&](std::string_view sql) {
    std::vector<CostRow> v;
    auto st = m_db.prepare(sql);
    while (st.step()) {
      v.push_back(CostRow{st.text(0), st.real(1), st.int64(2), st.int64(3)});
    }
    return v;
  };
  auto total = rows("SELECT 'total', coalesce(sum(cost_usd - coalesce(refund_usd, 0)), 0), coalesce(sum(cost_credits), 0), count(*) "
                    "FROM jobs WHERE cost_usd IS NOT NULL");
  if (!total.empty()) {
    out.total = total.front();
  }
  out.by_day = rows("SELECT substr(coalesce(accepted_at, created_at), 1, 10) AS d, sum(cost_usd - coalesce(refund_usd, 0)), "
                    "coalesce(sum(cost_credits), 0), count(*) FROM jobs WHERE cost_usd IS NOT NULL GROUP BY d ORDER BY d");
  out.by_model = rows("SELECT model, sum(cost_usd - coalesce(refund_usd, 0)), coalesce(sum(cost_credits), 0), count(*) FROM jobs "
                      "WHERE cost_usd IS NOT NULL GROUP BY model ORDER BY model");
  out.by_batch = rows("SELECT batch, sum(cost_usd - coalesce(refund_usd, 0)), coalesce(sum(cost_credits), 0), count(*) FROM jobs "
                      "WHERE cost_usd IS NOT NULL GROUP BY batch ORDER BY batch");
  out.by_label = rows("SELECT l.name || '=' || l.value AS k, sum(j.cost_usd - coalesce(j.refund_usd, 0)), coalesce(sum(j.cost_credits), 0), count(*) "
                      "FROM job_labels l JOIN jobs j ON j.id = l.job_id WHERE j.cost_usd IS NOT NULL GROUP BY k ORDER BY k");
  return out;
}

double JobStore::spend_since(std::string_view since)
{
  auto st = m_db.prepare("SELECT coalesce(sum(coalesce(cost_usd - coalesce(refund_usd, 0), cost_estimate_usd, 0)), 0) "
                          "FROM jobs WHERE accepted_at >= ? OR state = 'submitting'");
  st.bind(1, since);
  st.step();
  return st.real(0);
}

double JobStore::batch_spend(std::string_view batch)
{
  auto st = m_db.prepare("SELECT coalesce(sum(coalesce(cost_usd - coalesce(refund_usd, 0), cost_estimate_usd, 0)), 0) "
                          "FROM jobs WHERE batch = ? AND (accepted_at IS NOT NULL OR state = 'submitting')");
  st.bind(1, batch);
  st.step();
  return st.real(0);
}

std::optional<double> JobStore::batch_budget(std::string_view batch)
{
  auto st = m_db.prepare("SELECT max_usd FROM batches WHERE id = ?");
  st.bind(1, batch);
  if (!st.step()) {
    return std::nullopt;
  }
  return st.opt_real(0);
}

std::vector<double> JobStore::recent_costs(std::string_view model, std::string_view duration, int limit)
{
  auto st = m_db.prepare("SELECT cost_usd FROM jobs WHERE model = ? AND cost_usd IS NOT NULL "
                          "AND coalesce(json_extract(request, '$.duration'), '') = json_extract(?, '$') "
                          "ORDER BY id DESC LIMIT ?");
  st.bind(1, model).bind(2, duration.empty() ? std::string_view("\"\"") : duration);
  st.bind(3, static_cast<std::int64_t>(limit));
  std::vector<double> out;
  while (st.step()) {
    out.push_back(st.real(0));
  }
  return out;
}

std::vector<Job> JobStore::completed_without_cost(std::string_view since)
{
  auto st = m_db.prepare(fmt::format("SELECT {} FROM jobs WHERE state = 'completed' AND cost_usd IS NULL "
                                      "AND generation_id IS NOT NULL AND finished_at >= ? ORDER BY id",
                                      k_job_columns));
  st.bind(1, since);
  std::vector<Job> out;
  while (st.step()) {
    out.push_back(read_job(st));
  }
  return out;
}

std::vector<std::pair<JobState, std::int64_t>> JobStore::counts_by_state()
{
  auto st = m_db.prepare("SELECT state, count(*) FROM jobs GROUP BY state");
  std::vector<std::pair<JobState, std::int64_t>> out;
  while (st.step()) {
    out.emplace_back(state_from_text(st.text(0)), st.int64(1));
  }
  return out;
}

std::vector<std::pair<JobState, std::int64_t>> JobStore::batch_counts(std::string_view batch)
{
  auto st = m_db.prepare("SELECT state, count(*) FROM jobs WHERE batch = ? GROUP BY state");
  st.bind(1, batch);
  std::vector<std::pair<JobState, std::int64_t>> out;
  while (st.step()) {
    out.emplace_back(state_from_text(st.text(0)), st.int64(1));
  }
  return out;
}

bool JobStore::batch_exists(std::string_view batch)
{
  auto st = m_db.prepare("SELECT 1 FROM batches WHERE id = ?");
  st.bind(1, batch);
  return st.step();
}

std::vector<BatchSummary> JobStore::recent_batches(std::size_t limit)
{
  // Uses the jobs_batch index, one group per (batch, state).
  auto st = m_db.prepare(
    "SELECT b.id, b.created_at, j.state, count(j.id) FROM "
    "(SELECT id, created_at FROM batches ORDER BY created_at DESC, id DESC LIMIT ?) b "
    "LEFT JOIN jobs j ON j.batch = b.id GROUP BY b.id, j.state ORDER BY b.created_at DESC, b.id DESC");
  st.bind(1, static_cast<std::int64_t>(limit));
  std::vector<BatchSummary> out;
  while (st.step()) {
    auto id = st.text(0);
    if (out.empty() || out.back().id != id) {
      out.push_back(BatchSummary{id, st.text(1), {}});
    }
    if (!st.is_null(2)) {
      out.back().counts.emplace_back(state_from_text(st.text(2)), st.int64(3));
    }
  }
  return out;
}

Db::FileSizes JobStore::file_sizes() const
{
  return m_db.file_sizes();
}

std::vector<Event> JobStore::history(std::string_view job_id)
{
  auto st = m_db.prepare(
    "SELECT seq, job_id, batch, state, step, at, error_code, error_message, error_http_status FROM job_events "
    "WHERE job_id = ? ORDER BY seq");
  st.bind(1, job_id);
  std::vector<Event> out;
  while (st.step()) {
    out.push_back(read_event(st));
  }
  return out;
}

std::vector<Event> JobStore::events_since(std::int64_t seq, std::size_t limit)
{
  auto st = m_db.prepare(
    "SELECT seq, job_id, batch, state, step, at, error_code, error_message, error_http_status FROM job_events "
    "WHERE seq > ? ORDER BY seq LIMIT ?");
  st.bind(1, seq).bind(2, static_cast<std::int64_t>(limit));
  std::vector<Event> out;
  while (st.step()) {
    out.push_back(read_event(st));
  }
  return out;
}

std::int64_t JobStore::last_event_seq()
{
  auto st = m_db.prepare("SELECT coalesce(max(seq), 0) FROM job_events");
  st.step();
  return st.int64(0);
}

std::optional<KeyTombstone> JobStore::key_tombstone(std::string_view key)
{
  auto st = m_db.prepare("SELECT key, job_id, batch, state, finished_at, pruned_at FROM key_tombstones WHERE key = ?");
  st.bind(1, key);
  if (!st.step()) {
    return std::nullopt;
  }
  return KeyTombstone{st.text(0), st.text(1), st.text(2), state_from_text(st.text(3)), st.opt_text(4), st.text(5)};
}

PruneStats JobStore::prune(const PruneCutoffs& cutoffs, std::size_t limit, const std::optional<std::string>& after,
                           bool dry_run)
{
  struct Candidate
  {
    std::string id;
    std::optional<std::string> key;
    std::string batch;
    std::string state;
    std::optional<std::string> finished_at;
    std::optional<std::string> video_path;
    bool trimmed; // events already pruned
  };
  std::vector<Candidate> found;
  {
    auto st = m_db.prepare(
      "SELECT id, key, batch, state, finished_at, video_path, pruned_at IS NOT NULL FROM jobs j "
      "WHERE ((state = 'completed' AND finished_at < ?1) OR (state = 'failed' AND finished_at < ?2) "
      "OR (state = 'canceled' AND finished_at < ?3)) AND id > ?4 "
      "AND NOT EXISTS (SELECT 1 FROM jobs a WHERE a.batch = j.batch "
      "AND a.state IN ('queued','submitting','generating','downloading')) "
      "ORDER BY id LIMIT ?5");
    st.bind(1, cutoffs.completed).bind(2, cutoffs.failed).bind(3, cutoffs.canceled);
    st.bind(4, after ? *after : std::string());
    st.bind(5, static_cast<std::int64_t>(limit));
    while (st.step()) {
      found.push_back({st.text(0), st.opt_text(1), st.text(2), st.text(3), st.opt_text(4), st.opt_text(5),
                       st.int64(6) != 0});
    }
  }
  PruneStats out;
  if (found.size() == limit && limit > 0) {
    out.next = found.back().id;
  }
  const std::string now = format_rfc3339(now_utc());
  for (const auto& c : found) {
    std::int64_t events = 0;
    {
      auto n = m_db.prepare("SELECT count(*) FROM job_events WHERE job_id = ?");
      n.bind(1, c.id);
      n.step();
      events = n.int64(0);
    }
    std::error_code ec;
    const bool video_on_disk = c.video_path && std::filesystem::exists(*c.video_path, ec);
    if (video_on_disk) {
      // The row is what points at the MP4: keep it, drop only the history.
      if (c.trimmed && events == 0) {
        continue;
      }
      ++out.jobs_trimmed;
      out.events_deleted += events;
      if (!dry_run) {
        auto del = m_db.prepare("DELETE FROM job_events WHERE job_id = ?");
        del.bind(1, c.id);
        del.run();
        auto mark = m_db.prepare("UPDATE jobs SET pruned_at = ? WHERE id = ?");
        mark.bind(1, now).bind(2, c.id);
        mark.run();
      }
      continue;
    }
    ++out.jobs_deleted;
    out.events_deleted += events;
    out.tombstones += c.key ? 1 : 0;
    if (dry_run) {
      continue;
    }
    if (c.key) {
      auto t = m_db.prepare("INSERT OR REPLACE INTO key_tombstones (key, job_id, batch, state, finished_at, pruned_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)");
      t.bind(1, *c.key).bind(2, c.id).bind(3, c.batch).bind(4, c.state).bind(5, c.finished_at).bind(6, now);
      t.run();
    }
    for (const char* sql : {"DELETE FROM job_events WHERE job_id = ?", "DELETE FROM job_labels WHERE job_id = ?",
                            "DELETE FROM create_attempts WHERE job_id = ?", "DELETE FROM hook_outbox WHERE job_id = ?",
                            "DELETE FROM jobs WHERE id = ?"}) {
      auto del = m_db.prepare(sql);
      del.bind(1, c.id);
      del.run();
    }
    auto b = m_db.prepare("DELETE FROM batches WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch = ?1)");
    b.bind(1, c.batch);
    b.run();
  }
  return out;
}

std::vector<Event> JobStore::take_pending_events()
{
  std::vector<Event> out;
  out.swap(m_pending);
  return out;
}

void JobStore::append_event(const Job& job, JobState state, const std::optional<std::string>& step,
                            const std::optional<JobError>& error, const std::string& at)
{
  auto st = m_db.prepare(
    "INSERT INTO job_events (job_id, batch, state, step, at, error_code, error_message, error_http_status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq");
  st.bind(1, job.id).bind(2, job.batch).bind(3, common::to_string(state)).bind(4, step).bind(5, at);
  if (error) {
    st.bind(6, error->code).bind(7, error->message);
    if (error->http_status) {
      st.bind(8, static_cast<std::int64_t>(*error->http_status));
    } else {
      st.bind_null(8);
    }
  } else {
    st.bind_null(6).bind_null(7).bind_null(8);
  }
  if (!st.step()) {
    throw std::runtime_error("store: event insert returned no seq");
  }
  m_pending.push_back(Event{st.int64(0), job.id, job.batch, state, step, at, error});
  st.run();
}

} // namespace klingd::store
