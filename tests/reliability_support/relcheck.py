"""Checks shared by the reliability suite (tests/integration/test_reliability_*.py, issue 8):
the job state table, history paths, store invariants and the API-key canary scan.
Standard library only."""

import glob
import hashlib
import os
import secrets
import sqlite3

TERMINAL = ("completed", "failed", "canceled")

# common/job.cpp is_legal_transition, written again here on purpose: a test that imported the
# daemon's table would accept whatever the daemon does.
LEGAL = {
    "queued": {"submitting", "canceled"},
    "submitting": {"generating", "queued", "failed", "canceled"},
    "generating": {"downloading", "failed", "canceled"},
    "downloading": {"completed", "failed", "canceled"},
    "completed": set(),
    "failed": {"queued", "generating"},
    "canceled": {"queued", "generating", "submitting"},
}


def canary_key():
    """A distinctive API key: if any byte of it shows up in a log, a database page or an
    answer, grep finds it."""
    return "sk-SECRET-canary-" + secrets.token_hex(12)


def history_problems(events):
    """`events`: one job's history, oldest first, as (state, step) pairs. Returns what is
    illegal about the path (empty when it is a legal walk through LEGAL starting at queued).
    A same-state row with a step is a sub-step note (e.g. url_refresh), not a transition."""
    problems = []
    if not events:
        return ["no history"]
    if events[0][0] != "queued":
        problems.append(f"starts at {events[0][0]}")
    for (a, _), (b, step) in zip(events, events[1:]):
        if a == b:
            if step is None:
                problems.append(f"{a} -> {b} without a step")
        elif b not in LEGAL.get(a, ()):
            problems.append(f"{a} -> {b}")
    return problems


def db_histories(db_path):
    """{job_id: [(state, step), …]} from job_events, oldest first (read-only)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        out = {}
        for job, state, step in con.execute("SELECT job_id, state, step FROM job_events ORDER BY seq"):
            out.setdefault(job, []).append((state, step))
        return out
    finally:
        con.close()


def integrity_ok(db_path):
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def part_files(videos_dir):
    return glob.glob(os.path.join(videos_dir, "**", "*.part"), recursive=True)


def file_matches(video):
    """True when the stored file is exactly what the job's `video` object claims."""
    try:
        with open(video["path"], "rb") as f:
            data = f.read()
    except OSError:
        return False
    return (len(data) == video["bytes"] and hashlib.sha256(data).hexdigest() == video["sha256"]
            and data[4:8] == b"ftyp")


def find_secret(secret, paths=(), blobs=()):
    """Where `secret` occurs: every file under `paths` (recursively, binary: the DB, its -wal
    and -shm, logs) and each (name, bytes) in `blobs`. Returns the list of places."""
    needle = secret.encode()
    hits = []
    for root in paths:
        files = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        for path in files:
            if os.path.basename(path) == "api_key":  # the key file we wrote ourselves
                continue
            try:
                with open(path, "rb") as f:
                    if needle in f.read():
                        hits.append(path)
            except OSError:
                pass
    for name, data in blobs:
        if needle in (data if isinstance(data, bytes) else str(data).encode()):
            hits.append(name)
    return hits
