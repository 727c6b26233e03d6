#!/usr/bin/env python3
"""Runs klingd end to end on a temporary state directory (see scripts/demo.sh)."""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fake_provider"))


def say(text):
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("jobs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    args = ap.parse_args()
    build = os.path.join(ROOT, args.build)
    klingd = os.path.join(build, "daemon", "klingd")
    klingctl = os.path.join(build, "cli", "klingctl")
    work = tempfile.mkdtemp(prefix="klingd-demo-")
    sock = os.path.join(work, "run", "klingd.sock")
    state = os.path.join(work, "state")
    fake = None
    config = {
        "store": {"state_dir": state},
        "socket": {"path": sock},
        "shutdown": {"grace_s": 5},
    }
    real = bool(os.environ.get("AIMLAPI_KEY"))
    try:
        if real:
            say("AIMLAPI_KEY is set: using the real AI/ML API (this spends money)")
        else:
            from fakeprov import FakeProvider, make_tls
            os.environ.setdefault("FAKE_AIMLAPI_BIN", os.path.join(build, "tests", "fake_provider", "fake-aimlapi"))
            tls = make_tls(os.path.join(work, "tls"))
            fake = FakeProvider(tls=tls, api_key="demo-key", args=["--queued-s", "1", "--generating-s", "3"])
            with open(os.path.join(work, "key"), "w") as f:
                f.write("demo-key\n")
            config["provider"] = {"base_url": fake.base_url, "ca_file": tls.ca,
                                  "api_key_file": os.path.join(work, "key"),
                                  "creates_per_minute": 120}
            config["poll"] = {"initial_s": 1, "factor": 1.5, "max_s": 3}
            say(f"no AIMLAPI_KEY: started the bundled fake provider at {fake.base_url} (HTTPS, throwaway CA)")
        cfg_path = os.path.join(work, "klingd.jsonc")
        with open(cfg_path, "w") as f:
            json.dump(config, f, indent=2)

        say(f"starting klingd (state in {state})")
        log_path = os.path.join(work, "klingd.log")
        log = open(log_path, "wb")
        env = dict(os.environ, KLINGD_SOCKET=sock)
        daemon = subprocess.Popen([klingd, "--config", cfg_path], stderr=log, env=env)
        deadline = time.monotonic() + 15
        while subprocess.run([klingctl, "status"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.stdout.write(open(log_path).read())
                raise SystemExit("klingd did not start")
            time.sleep(0.1)
        subprocess.run([klingctl, "status"], env=env, check=True)

        say(f"submitting {args.jobs}")
        out = subprocess.run([klingctl, "--json", "submit", "-f", args.jobs], env=env, check=True,
                             capture_output=True, text=True).stdout
        batch = json.loads(out)["batch"]
        print(f"batch {batch}: {len(json.loads(out)['jobs'])} jobs")

        say("waiting for the batch (create → poll → download)")
        waited = subprocess.run([klingctl, "wait", "--batch", batch], env=env)

        say("finished videos")
        jobs = json.loads(subprocess.run([klingctl, "--json", "ls", "--batch", batch], env=env, check=True,
                                         capture_output=True, text=True).stdout)["jobs"]
        ok = True
        for job in jobs:
            video = job.get("video")
            if not video:
                print(f"  {job['id']}  {job['state']:<10} {job.get('error')}")
                ok = False
                continue
            data = open(video["path"], "rb").read()
            digest = hashlib.sha256(data).hexdigest()
            match = "sha256 verified" if digest == video["sha256"] else "SHA-256 MISMATCH"
            ok = ok and digest == video["sha256"] and data[4:8] == b"ftyp"
            print(f"  {video['path']}  {len(data):>8} bytes  {digest[:16]}…  {match}")
        if shutil.which("ffprobe") and jobs and jobs[0].get("video"):
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration",
                                    "-of", "compact", jobs[0]["video"]["path"]], capture_output=True, text=True)
            print(f"  ffprobe: {probe.stdout.strip()}")

        say("stopping klingd (SIGTERM)")
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=30)
        print(f"klingd exited with {rc}; its log is {log_path}")
        if rc != 0 or waited.returncode != 0 or not ok:
            raise SystemExit(1)
        say("done")
    finally:
        if fake:
            fake.stop()
        if not args.keep and not os.environ.get("KLINGD_DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
