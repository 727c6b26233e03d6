"""klingctl (docs/contract.md §4.2) through the real binaries: every command, --json printing exactly the
API's answer, local images as data URIs, -f files, wait's exit codes, and exit codes 2 and 3."""

import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402

MODEL = klingtest.DEFAULT_MODEL
I2V_MODEL = "klingai/video-v3-pro-image-to-video"
# A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_submit_flags_wait_show_ls():
    with Klingd() as d:
        p = d.ctl("submit", "--model", MODEL, "--prompt", "a red fox", "--duration", "5", "--aspect-ratio", "16:9",
                  "--negative-prompt", "blur", "--cfg-scale", "0.5", "--no-audio", "--shot-type", "customize",
                  "--key", "fox", "--output", "animals/fox.mp4", "--priority", "3", "--label", "team=zoo",
                  "--label", "run=1", "--wait", check=0)
        assert "completed" in p.stdout, p.stdout
        j = d.job("key:fox")
        assert j["state"] == "completed" and j["output"] == "animals/fox.mp4" and j["priority"] == 3
        assert j["labels"] == {"team": "zoo", "run": "1"}
        r = j["request"]
        assert r["prompt"] == "a red fox" and r["generate_audio"] is False and r["cfg_scale"] == 0.5, r
        assert r["negative_prompt"] == "blur" and r["aspect_ratio"] == "16:9" and r["shot_type"] == "customize"
        # The same key again: nothing new.
        p = d.ctl("submit", "--model", MODEL, "--prompt", "a red fox", "--key", "fox", check=0)
        assert "already exists" in p.stdout, p.stdout
        assert d.get_json("/v1/status")["total"] == 1

        # show: human and --json (exactly the API's answer).
        p = d.ctl("show", j["id"], check=0)
        assert j["id"] in p.stdout and "completed" in p.stdout and "history:" in p.stdout, p.stdout
        assert d.ctl_json("show", "key:fox") == d.job(j["id"])
        # ls: table, filters, --json, --all through pages.
        for i in range(3):
            d.ctl("submit", "--model", MODEL, "--prompt", f"cat {i}", "--label", "team=cats", "--wait", check=0)
        p = d.ctl("ls", check=0)
        assert p.stdout.splitlines()[0].startswith("ID") and len(p.stdout.splitlines()) == 5, p.stdout
        assert d.ctl_json("ls", "--label", "team=cats") == d.get_json("/v1/jobs?label=team%3Dcats")
        assert len(d.ctl_json("ls", "--label", "team=zoo", "--state", "completed")["jobs"]) == 1
        everything = d.ctl_json("ls", "--all", "--limit", "1")
        assert len(everything["jobs"]) == 4 and everything["next"] is None
        p = d.ctl("ls", "--all", "--limit", "2", check=0)
        assert len(p.stdout.splitlines()) == 5, p.stdout


def test_submit_file_and_local_image():
    with Klingd() as d:
        img = os.path.join(d.workdir, "first.png")
        with open(img, "wb") as f:
            f.write(PNG)
        p = d.ctl("--json", "submit", "--model", I2V_MODEL, "--prompt", "move", "--image", img, check=0)
        job = d.job(json.loads(p.stdout)["jobs"][0]["id"])
        assert job["request"]["image_url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
        # A file that is not an image is a usage error; nothing is sent.
        bogus = os.path.join(d.workdir, "notes.png")
        with open(bogus, "w") as f:
            f.write("hello")
        p = d.ctl("submit", "--model", I2V_MODEL, "--prompt", "x", "--image", bogus, check=2)
        assert "not a PNG, JPEG or WebP" in p.stderr, p.stderr

        # -f: a spec line, a bare request line, blank and comment lines; then again from stdin.
        lines = [json.dumps(spec("f1", key="file-1")),
                 "",
                 "# a comment",
                 json.dumps(klingtest.text_request("f2")),
                 json.dumps(spec("f3", key="file-3"))]
        path = os.path.join(d.workdir, "jobs.jsonl")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = d.ctl("submit", "-f", path, "--label", "src=file", "--wait", check=0)
        assert "3 jobs submitted (3 new, 0 already existed)" in p.stdout, p.stdout
        assert len(d.get_json("/v1/jobs?label=src%3Dfile")["jobs"]) == 3
        keyed = [lines[0], lines[4]]
        p = d.ctl("submit", "-f", "-", input="\n".join(keyed) + "\n", check=0)
        assert "2 jobs submitted (0 new, 2 already existed)" in p.stdout, p.stdout
        # A bad line: the daemon refuses the whole file; the message names the file's line.
        before = d.get_json("/v1/status")["total"]
        bad = [json.dumps(spec("ok")), json.dumps(spec("bad", priority=5000))]
        p = d.ctl("submit", "-f", "-", input="\n\n".join(bad) + "\n", check=1)
        assert "line 3 priority" in p.stderr, p.stderr
        assert d.get_json("/v1/status")["total"] == before
        # Not JSON at all: a usage error before anything is sent.
        p = d.ctl("submit", "-f", "-", input="{nope\n", check=2)
        assert "line 1" in p.stderr


def test_cancel_retry_pause_resume_wait_status_models_watch():
    with Klingd() as d:
        p = d.ctl("pause", "--reason", "lunch", check=0)
        assert "lunch" in p.stdout
        assert d.ctl_json("status")["paused"] == "lunch"
        p = d.ctl("status", check=0)
        assert "PAUSED: lunch" in p.stdout, p.stdout
        sub = d.ctl_json("submit", "--model", MODEL, "--prompt", "held")
        jid = sub["jobs"][0]["id"]
        p = d.ctl("cancel", jid, check=0)
        assert "canceled" in p.stdout
        p = d.ctl("cancel", jid, check=1)
        assert p.stderr.startswith("klingctl: "), p.stderr
        # wait on a canceled job: exit 1, and says why.
        p = d.ctl("wait", jid, check=1)
        assert "canceled" in p.stdout + p.stderr
        p = d.ctl("retry", jid, check=0)
        assert "queued" in p.stdout
        d.ctl("resume", check=0)
        assert d.ctl_json("status")["paused"] is None
        p = d.ctl("wait", jid, check=0)
        assert "1/1 done" in p.stdout, p.stdout  # plain lines: stdout is not a terminal
        # wait --batch.
        batch = d.submit([spec("w1"), spec("w2")])["batch"]
        p = d.ctl("wait", "--batch", batch, check=0)
        assert "2/2 done" in p.stdout, p.stdout
        assert d.ctl_json("wait", "--batch", batch) == d.get_json(f"/v1/batches/{batch}")
        # models.
        p = d.ctl("models", check=0)
        assert MODEL in p.stdout and "FAMILY" in p.stdout
        assert d.ctl_json("models") == d.get_json("/v1/models")
        # watch: replay from 0, as lines of JSON with --json, and a human line otherwise.
        proc = subprocess.Popen([klingtest.klingctl_bin(), "--socket", d.socket_path, "--json", "watch", "--since", "0"],
                                stdout=subprocess.PIPE, text=True)
        try:
            events = [json.loads(proc.stdout.readline()) for _ in range(5)]
        finally:
            proc.terminate()
            proc.wait(5)
        assert events[0]["job"] == jid and events[0]["state"] == "queued" and events[0]["seq"] == 1, events
        proc = subprocess.Popen([klingtest.klingctl_bin(), "--socket", d.socket_path, "watch", "--since", "0"],
                                stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(5)
        assert jid in line and "queued" in line, line


def test_wait_progress_on_a_terminal():
    import pty
    with Klingd(fake_args=("--queued-s", "0.3", "--generating-s", "0.5")) as d:
        batch = d.submit([spec(f"t{i}") for i in range(4)])["batch"]
        master, slave = pty.openpty()
        proc = subprocess.Popen([klingtest.klingctl_bin(), "--socket", d.socket_path, "wait", "--batch", batch],
                                stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert proc.wait(30) == 0
        text = out.decode()
        # Redrawn in place: carriage return + erase line, a bar, counts and the elapsed time.
        assert text.count("\r\x1b[K") >= 2, text
        assert "[########################] 4/4" in text and "completed 4" in text, text


def test_exit_codes_usage_and_unreachable():
    with Klingd() as d:
        d.ctl("frobnicate", check=2)
        d.ctl("submit", "--prompt", "no model", check=2)
        d.ctl("show", check=2)
        d.ctl("ls", "--limit", "0", check=2)
        d.ctl("wait", check=2)
        d.ctl("submit", "--model", MODEL, "--label", "novalue", check=2)
        # Refused by the daemon: exit 1 with its message as worded.
        p = d.ctl("show", "NOPE", check=1)
        assert p.stderr.strip() == 'klingctl: no job with id "NOPE"', p.stderr
        p = d.ctl("submit", "--model", MODEL, "--prompt", "x", "--duration", "99", check=1)
        assert "request.duration" in p.stderr, p.stderr
        p = d.ctl("--json", "show", "NOPE", check=1)
        assert json.loads(p.stdout)["error"]["code"] == "not_found"
        # KLINGD_SOCKET is honoured when --socket is absent.
        d.ctl("status", socket_arg=False, env={"KLINGD_SOCKET": d.socket_path}, check=0)
        # Unreachable: exit 3 naming every path looked at.
        missing = os.path.join(d.workdir, "missing.sock")
        p = d.ctl("status", socket_arg=False, env={"KLINGD_SOCKET": missing}, check=3)
        assert missing in p.stderr, p.stderr
        p = d.ctl("status", socket_arg=False, env={"XDG_RUNTIME_DIR": d.workdir}, check=3)
        assert os.path.join(d.workdir, "klingd.sock") in p.stderr and "/run/klingd/klingd.sock" in p.stderr, p.stderr
        # A socket file nobody listens on (the daemon was killed).
        d.kill()
        p = d.ctl("status", check=3)
        assert d.socket_path in p.stderr and "refused" in p.stderr.lower(), p.stderr


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
