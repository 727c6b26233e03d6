-- 0003: retention (store.retention). A pruned job's idempotency key keeps answering
-- "duplicate" through its tombstone; jobs.pruned_at marks a job whose history
-- (events) was pruned while its row stays (a completed job whose MP4 is on disk).
CREATE TABLE key_tombstones (
  key         TEXT PRIMARY KEY,
  job_id      TEXT NOT NULL,
  batch       TEXT NOT NULL,
  state       TEXT NOT NULL,
  finished_at TEXT,
  pruned_at   TEXT NOT NULL
) STRICT, WITHOUT ROWID;
ALTER TABLE jobs ADD COLUMN pruned_at TEXT;
-- Finding prunable jobs: a terminal state finished before a cutoff.
CREATE INDEX jobs_state_finished ON jobs(state, finished_at);
