#!/usr/bin/env python3
"""The database files while klingd runs (issue 15): the WAL is truncated once the store is
idle, another process reading the database (the sqlite3 shell, a backup, an outside
checkpoint) never fails a commit, `klingd --backup` copies a consistent database from outside, and retention prunes
through `klingctl prune`."""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402
from klingtest import FAST_FAKE, specs  # noqa: E402


def status(d):
    return d.get_json("/v1/status")


def test_outside_readers_never_fail_a_commit_and_the_wal_is_truncated_when_idle():
    with Klingd(fake_args=FAST_FAKE) as d:
        st = status(d)
        assert st["db_bytes"] > 0 and "wal_bytes" in st, st
        # The sqlite3 shell holding a read transaction open through the whole run, and
        # another one taking .backup copies meanwhile.
        shell = subprocess.Popen(["sqlite3", d.db_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        shell.stdin.write("BEGIN; SELECT count(*) FROM jobs;\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "0"
        ids = [j["id"] for j in d.submit(specs(40, "r1"))["jobs"]]
        copies = []
        for i in range(3):
            copy = os.path.join(d.workdir, f"shell-{i}.db")
            p = subprocess.run(["sqlite3", d.db_path, f".backup {copy}"], capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, p.stderr
            copies.append(copy)
            ids += [j["id"] for j in d.submit(specs(20, f"r{i + 2}"))["jobs"]]
        jobs = d.wait_terminal(ids, timeout=120)
        assert all(j["state"] == "completed" for j in jobs.values()), [j for j in jobs.values()
                                                                        if j["state"] != "completed"][:3]
        # The pinned snapshot still sees the empty database.
        shell.stdin.write("SELECT count(*) FROM jobs;\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "0"
        assert status(d)["wal_bytes"] > 0
        shell.stdin.write("COMMIT;\n.quit\n")
        shell.stdin.flush()
        assert shell.wait(10) == 0, shell.stderr.read()
        log = d.log()
        assert "store.commit_failed" not in log and "store.transaction_lost" not in log, log[-3000:]
        # Idle, no reader in the way: the daemon truncates the WAL by itself.
        d.wait_for(lambda: status(d)["wal_bytes"] == 0, timeout=20, interval=0.2, what="the WAL to be truncated")
        assert os.path.getsize(d.db_path + "-wal") == 0
        for copy in copies:
            with sqlite3.connect(copy) as c:
                assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        out = d.ctl("status", check=0).stdout
        assert "store:    database " in out and ", WAL 0 B" in out, out
        metrics = d.get("/metrics").body.decode()
        assert "klingd_db_wal_bytes 0" in metrics, metrics[-2000:]
        assert "klingd_db_bytes " in metrics


def test_an_outside_checkpoint_never_fails_a_commit():
    """What backup scripts run before copying the files: PRAGMA wal_checkpoint(TRUNCATE) from
    the sqlite3 shell with a busy timeout. It holds the write lock while it waits for the
    daemon's readers; before issue 15 one of those never finished (a statement left stepped),
    so the checkpoint waited its whole timeout and the daemon's BEGIN IMMEDIATE failed with
    "database is locked" (commits and job actors failed)."""
    with Klingd(fake_args=FAST_FAKE) as d:
        first = d.submit(specs(20, "c1"))
        d.wait_batch(first["batch"])
        ids = [j["id"] for j in d.submit(specs(40, "c2"))["jobs"]]
        p = subprocess.run(["sqlite3", "-cmd", ".timeout 8000", d.db_path, "PRAGMA wal_checkpoint(TRUNCATE);"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        busy, _, _ = p.stdout.strip().partition("|")
        assert busy == "0", f"the checkpoint could not complete: {p.stdout!r}"
        jobs = d.wait_terminal(ids, timeout=60)
        assert all(j["state"] == "completed" for j in jobs.values())
        bad = [line for line in d.log().splitlines() if "level=error" in line]
        assert not bad, bad[:3]


def test_backup_copies_a_consistent_database_while_the_daemon_runs():
    with Klingd(fake_args=FAST_FAKE) as d:
        first = d.submit(specs(30, "b1"))
        d.wait_batch(first["batch"])
        d.submit(specs(30, "b2"))  # still running while the copy is taken
        dest = os.path.join(d.workdir, "backups", "klingd-copy.db")
        os.makedirs(os.path.dirname(dest))
        p = subprocess.run([klingtest.klingd_bin(), "--config", d.config_path, "--backup", dest],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert f"backed up {d.db_path} to {dest}" in p.stderr, p.stderr
        assert not os.path.exists(dest + ".partial") and not os.path.exists(dest + "-wal")
        with sqlite3.connect(dest) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            done = c.execute("SELECT count(*) FROM jobs WHERE key LIKE 'b1-%' AND state = 'completed'").fetchone()[0]
            assert done == 30, done
            # Consistent: every job of the copy has its first event, every event its job.
            orphans = c.execute("SELECT count(*) FROM job_events e LEFT JOIN jobs j ON j.id = e.job_id "
                                "WHERE j.id IS NULL").fetchone()[0]
            assert orphans == 0
            assert c.execute("SELECT count(*) FROM jobs j WHERE NOT EXISTS "
                             "(SELECT 1 FROM job_events e WHERE e.job_id = j.id)").fetchone()[0] == 0
        bad = subprocess.run([klingtest.klingd_bin(), "--config", d.config_path, "--backup",
                              os.path.join(d.workdir, "no", "such", "dir", "x.db")],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "no/such/dir" in bad.stderr, bad.stderr
        tmp = tempfile.mkdtemp(prefix="klingd-it-restore-")
        restored = os.path.join(tmp, "state")
        os.makedirs(restored)
        shutil.move(dest, os.path.join(restored, "klingd.db"))
    # The copy is a database klingd starts on, with every key still known.
    try:
        with Klingd(config_overrides={"store": {"db": os.path.join(restored, "klingd.db")}},
                    fake_args=FAST_FAKE) as r:
            again = r.submit([{"key": "b1-3", "request": klingtest.text_request("x")}])
            assert again["jobs"][0]["duplicate"] and again["jobs"][0]["state"] == "completed", again
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_prune_dry_run_then_prune_keeps_keys_answering_duplicate():
    with Klingd(fake_args=FAST_FAKE) as d:
        # Default: keep everything.
        out = d.ctl("prune", "--dry-run", check=0).stdout
        assert "completed_days forever" in out and "would delete 0 jobs" in out, out
        r = d.post("/v1/prune", {"dry_run": "yes"})
        assert r.status == 400 and "dry_run" in r.body.decode(), r
    cfg = {"store": {"retention": {"completed_days": 30, "canceled_days": 1}}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE) as d:
        b = d.submit(specs(4, "p"))
        d.wait_batch(b["batch"])
        ids = [j["id"] for j in b["jobs"]]
        os.remove(d.job(ids[0])["video"]["path"])  # the user deleted this MP4
        # Age them by writing to the database directly (the daemon is idle; a test-only shortcut,
        # docs/operations.md says not to write while klingd runs).
        with sqlite3.connect(d.db_path, timeout=10) as c:
            c.execute("UPDATE jobs SET finished_at = '2020-01-01T00:00:00.000Z'")
        dry = d.ctl_json("prune", "--dry-run")
        assert (dry["jobs_deleted"], dry["jobs_trimmed"], dry["tombstones"]) == (1, 3, 1), dry
        assert len(d.get_json("/v1/jobs")["jobs"]) == 4
        out = d.ctl("prune", check=0).stdout
        assert "deleted 1 jobs" in out and "pruned the history of 3 completed jobs" in out, out
        assert d.get(f"/v1/jobs/{ids[0]}").status == 404
        kept = d.job(ids[1])
        assert kept["state"] == "completed" and os.path.exists(kept["video"]["path"]), kept
        again = d.submit([{"key": "p-0", "request": klingtest.text_request("x")}])
        assert again["jobs"][0] == {"id": ids[0], "key": "p-0", "state": "completed", "duplicate": True}, again
        assert d.ctl_json("prune", "--dry-run")["jobs_deleted"] == 0


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
