-- 0001: jobs, their labels, their history (events), batches and create attempts.
-- Timestamps are RFC 3339 UTC text with milliseconds (fixed width: text order = time order).

CREATE TABLE batches (
  id         TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  job_count  INTEGER NOT NULL DEFAULT 0,
  max_usd    REAL                      -- per-batch budget; NULL: none
) STRICT;

CREATE TABLE jobs (
  id                TEXT PRIMARY KEY,  -- ULID: sortable by creation time
  key               TEXT UNIQUE,       -- idempotency key; NULLs do not collide
  batch             TEXT NOT NULL REFERENCES batches(id),
  state             TEXT NOT NULL CHECK (state IN
                      ('queued','submitting','generating','downloading','completed','failed','canceled')),
  step              TEXT,              -- sub-step shown in status, e.g. 'reconciling'
  model             TEXT NOT NULL,
  request           TEXT NOT NULL,     -- the normalised provider body, sent verbatim
  output            TEXT NOT NULL UNIQUE, -- relative to the videos directory
  priority          INTEGER NOT NULL DEFAULT 0,
  timeout_s         REAL NOT NULL,
  labels            TEXT NOT NULL DEFAULT '{}',
  generation_id     TEXT,
  provider_status   TEXT,
  provider_failed   INTEGER NOT NULL DEFAULT 0, -- the provider said the generation failed
  attempts          INTEGER NOT NULL DEFAULT 0, -- create attempts
  step_failures     INTEGER NOT NULL DEFAULT 0, -- transient failures of the current step
  polls             INTEGER NOT NULL DEFAULT 0,
  error_code        TEXT,
  error_message     TEXT,
  error_http_status INTEGER,
  video_url         TEXT,              -- latest URL the provider gave
  video_file_size   INTEGER,           -- size the provider announced
  video_path        TEXT,              -- absolute, once completed
  video_bytes       INTEGER,
  video_sha256      TEXT,
  cost_usd          REAL,
  cost_credits      INTEGER,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL,
  accepted_at       TEXT,              -- when the provider accepted the create (timeout_s counts from here)
  finished_at       TEXT
) STRICT;

-- Dispatch order (queued, priority desc, oldest first) and counts by state.
CREATE INDEX jobs_state_priority ON jobs(state, priority DESC, id);
-- GET /v1/jobs?state=... ordered by id.
CREATE INDEX jobs_state_id ON jobs(state, id);
CREATE INDEX jobs_batch ON jobs(batch, id);

CREATE TABLE job_labels (
  name   TEXT NOT NULL,
  value  TEXT NOT NULL,
  job_id TEXT NOT NULL REFERENCES jobs(id),
  PRIMARY KEY (name, value, job_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE job_events (
  seq               INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id            TEXT NOT NULL REFERENCES jobs(id),
  batch             TEXT NOT NULL,
  state             TEXT NOT NULL,
  step              TEXT,
  at                TEXT NOT NULL,
  error_code        TEXT,
  error_message     TEXT,
  error_http_status INTEGER
) STRICT;
CREATE INDEX job_events_job ON job_events(job_id, seq);

-- One row per create call (SPEC §3.2): written as 'pending' and committed before
-- the request's first byte is sent, so a crash leaves evidence of what may have been paid.
CREATE TABLE create_attempts (
  job_id            TEXT NOT NULL REFERENCES jobs(id),
  attempt           INTEGER NOT NULL,
  client_request_id TEXT NOT NULL,
  started_at        TEXT NOT NULL,
  outcome           TEXT NOT NULL DEFAULT 'pending', -- pending|accepted|not_sent|rejected|transient|ambiguous|reconciled_succeeded|reconciled_failed
  http_status       INTEGER,
  generation_id     TEXT,
  inference_id      TEXT,
  credits           INTEGER,
  usd               REAL,
  finished_at       TEXT,
  PRIMARY KEY (job_id, attempt)
) STRICT;
CREATE INDEX create_attempts_outcome ON create_attempts(outcome);
