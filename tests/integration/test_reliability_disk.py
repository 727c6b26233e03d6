#!/usr/bin/env python3
"""Reliability (issue 8, item 5): the store runs out of space during downloads. The job retries
later or fails with a clear error, the database stays consistent, no half-written file is left
as a video, and the other jobs continue once space returns. Two ways to fill it: a small tmpfs
(ENOSPC; needs mount rights, skipped without) and RLIMIT_FSIZE (EFBIG, and SIGXFSZ, whose
default action would kill klingd)."""

import os
import resource
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, "..", "hostile"))
import klingtest  # noqa: E402
import relcheck  # noqa: E402
from klingtest import Klingd, text_request  # noqa: E402

VIDEO = 1_500_000
CFG = {
    "retry": {"max_attempts": 60, "base_s": 0.2, "max_s": 0.5},
    "download": {"max_concurrent": 2},
}
FAKE = ("--queued-s", "0.05", "--generating-s", "0.1", "--video-bytes", str(VIDEO))


def specs(n, prefix):
    return [{"key": f"{prefix}-{i}", "request": text_request(f"{prefix} {i}")} for i in range(n)]


def check_after(d, ids, st):
    jobs = d.wait_terminal(ids, timeout=60)
    for j in jobs.values():
        if j["state"] == "completed":
            assert relcheck.file_matches(j["video"]), j
            g = {g["id"]: g for g in st()["generations"]}[j["generation_id"]]
            assert g["sha256"] == j["video"]["sha256"]
        else:
            # A clear error, not a silent loss.
            assert j["error"]["code"] in ("download_failed", "retries_exhausted"), j
            assert "space" in j["error"]["message"].lower() or "large" in j["error"]["message"].lower(), j
    assert not relcheck.part_files(d.videos_dir), relcheck.part_files(d.videos_dir)
    assert relcheck.integrity_ok(d.db_path)
    return jobs


def test_tmpfs_fills_during_download():
    workdir = klingtest.tempfile.mkdtemp(prefix="klingd-disk-")
    mnt = os.path.join(workdir, "small")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0750", "tmpfs", mnt], capture_output=True)
    if p.returncode != 0:
        print(f"skipped: cannot mount a tmpfs here ({p.stderr.decode().strip()}); RLIMIT_FSIZE covers EFBIG")
        os.rmdir(mnt)
        return
    try:
        cfg = dict(CFG, store={"videos_dir": os.path.join(mnt, "videos")})
        with Klingd(config_overrides=cfg, fake_args=FAKE, workdir=workdir) as d:
            ballast = os.path.join(mnt, "ballast")
            with open(ballast, "wb") as f:  # leaves about 1 MB: less than one video
                f.write(b"\0" * (7 << 20))
            ids = [j["id"] for j in d.submit(specs(4, "full"))["jobs"]]
            d.wait_for(lambda: "No space left on device" in d.log(), 30, 0.1,
                       "a download to hit ENOSPC")
            assert d.running(), "klingd died on ENOSPC:\n" + d.log()[-3000:]
            # Nothing half-written pretends to be a video meanwhile.
            for j in (d.job(i) for i in ids):
                assert j["state"] != "completed" or relcheck.file_matches(j["video"]), j
            time.sleep(1)
            os.unlink(ballast)  # space returns
            jobs = check_after(d, ids, d.fake.stats)
            states = [j["state"] for j in jobs.values()]
            print(f"tmpfs: states after space returned {states}")
            assert states.count("completed") == 4, [(j["state"], j["error"]) for j in jobs.values()]
            # And new work goes through.
            more = [j["id"] for j in d.submit(specs(1, "after"))["jobs"]]
            assert d.wait_terminal(more, timeout=30)[more[0]]["state"] == "completed"
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def test_rlimit_fsize_efbig_does_not_kill():
    with Klingd(config_overrides=CFG, fake_args=FAKE) as d:
        # Over the limit a write() fails with EFBIG and the kernel sends SIGXFSZ; the database
        # and its WAL stay far below 1 MB here, the videos are 1.5 MB.
        limit = 1 << 20
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        ids = [j["id"] for j in d.submit(specs(3, "fsize"))["jobs"]]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and d.running() and "too large" not in d.log().lower():
            time.sleep(0.1)
        rc = d.proc.poll()
        assert "File too large" in d.log(), "no write ever hit the limit"
        assert rc is None, f"klingd died with {rc} (SIGXFSZ is {int(__import__('signal').SIGXFSZ)}) on EFBIG"
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        jobs = check_after(d, ids, d.fake.stats)
        states = [j["state"] for j in jobs.values()]
        print(f"RLIMIT_FSIZE: states after the limit was lifted {states}")
        assert states.count("completed") == 3, [(j["state"], j["error"]) for j in jobs.values()]


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
