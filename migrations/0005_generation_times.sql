-- 0005: how long each model took to generate, per requested video length (seconds of video; 0 when
-- the request names none), so the poller can look near the expected end instead of on a fixed
-- schedule (docs/contract.md §3.3). `seconds`: from acceptance to the midpoint between the last poll
-- that saw it working and the one that saw it completed. Trimmed to the newest 64 per key.
CREATE TABLE generation_times (
  id INTEGER PRIMARY KEY,
  model TEXT NOT NULL,
  video_s INTEGER NOT NULL,
  seconds REAL NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX generation_times_key ON generation_times(model, video_s, id);
