-- 0006: completion hooks (hooks.on_job_done / hooks.on_batch_done). A row is owed in the same
-- transaction as the job's terminal transition (scope 'job') or the transition that ended the
-- last unfinished job of its batch (scope 'batch'), one per hook kind configured then; the
-- hook runner delivers it and marks it delivered (or failed after hooks.max_attempts) at once,
-- so after a crash an owed hook still runs, and a delivered one is not run again.
CREATE TABLE hook_outbox (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  scope       TEXT NOT NULL CHECK (scope IN ('job','batch')),
  subject     TEXT NOT NULL,            -- the job id, or the batch id
  kind        TEXT NOT NULL CHECK (kind IN ('command','webhook')),
  event_seq   INTEGER NOT NULL,         -- the job_events row of the transition that owed it
  job_id      TEXT NOT NULL,            -- the job of that transition (its history shows the outcome)
  state       TEXT NOT NULL,            -- that job's state then: completed, failed or canceled
  status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','delivered','failed')),
  attempts    INTEGER NOT NULL DEFAULT 0,
  next_at     TEXT NOT NULL,            -- a pending row is not tried before this
  created_at  TEXT NOT NULL,
  finished_at TEXT,
  last_error  TEXT,
  UNIQUE (scope, subject, kind, event_seq)
) STRICT;
CREATE INDEX hook_outbox_due ON hook_outbox(status, next_at);
CREATE INDEX hook_outbox_job ON hook_outbox(job_id);
-- "Has this batch an unfinished job?" at each terminal transition, and retention's same question.
CREATE INDEX jobs_batch_state ON jobs(batch, state);
