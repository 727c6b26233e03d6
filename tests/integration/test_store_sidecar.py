#!/usr/bin/env python3
"""Metadata sidecars (issue 18 point 3, docs/contract.md §4.6): with store.sidecar on, each MP4
has `<name>.json` beside it, written (temp file, fsync, rename) before the MP4 is renamed into
place: the request with inline images replaced by their length and sha256, the model, route,
generation, cost, the MP4's sha256 and size, timings, labels and ids. Off (the default): none.
A link planted at the sidecar's name (or its temp name) is replaced, never followed."""

import base64
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402
from test_engine import FAST_FAKE  # noqa: E402

I2V_MODEL = "klingai/video-v3-pro-image-to-video"
# A PNG padded to a few KiB so its base64 is long, sent as a data: URI.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_sidecar_beside_each_mp4_with_redacted_request_and_the_video_facts():
    with Klingd(fake_args=FAST_FAKE, config_overrides={"store": {"sidecar": True}}) as d:
        image = "data:image/png;base64," + base64.b64encode(PNG).decode()
        outside = os.path.join(d.workdir, "outside.txt")
        with open(outside, "w") as f:
            f.write("untouched\n")
        os.makedirs(os.path.join(d.videos_dir, "planted"), exist_ok=True)
        os.symlink(outside, os.path.join(d.videos_dir, "planted", "clip.json"))
        os.symlink(outside, os.path.join(d.videos_dir, "planted", "clip.json.tmp"))
        r = d.submit([
            {"key": "sc-i2v", "output": "sub/dir/cat.mp4", "labels": {"team": "a"},
             "request": {"model": I2V_MODEL, "prompt": "move", "image_url": image}},
            {"key": "sc-planted", "output": "planted/clip.mp4", "request": klingtest.text_request("planted")},
        ])
        ids = [j["id"] for j in r["jobs"]]
        jobs = d.wait_terminal(ids)
        assert all(j["state"] == "completed" for j in jobs.values()), jobs
        j = jobs[ids[0]]
        mp4 = j["video"]["path"]
        side = os.path.join(d.videos_dir, "sub", "dir", "cat.json")
        with open(side) as f:
            doc = json.load(f)
        assert doc["format"] == "klingd.sidecar/1"
        assert doc["job_id"] == ids[0] and doc["batch_id"] == r["batch"] and doc["key"] == "sc-i2v"
        assert doc["state"] == "completed" and doc["model"] == I2V_MODEL and doc["labels"] == {"team": "a"}
        assert doc["video"] == {"path": mp4, "bytes": os.path.getsize(mp4), "sha256": sha256_file(mp4)}
        assert doc["video"]["sha256"] == j["video"]["sha256"]
        assert doc["generation_id"] == j["generation_id"]
        want = f"[redacted data-uri: {len(image)} chars, sha256 {hashlib.sha256(image.encode()).hexdigest()}]"
        assert doc["request"]["image_url"] == want and doc["request"]["prompt"] == "move", doc["request"]
        assert base64.b64encode(PNG).decode() not in open(side).read()
        assert set(doc["cost"]) == {"usd", "credits", "refund_usd"} and set(doc["route"]) == {"asked", "served"}
        # Known by the time the MP4 was ready (the create's headers or the status's meta.usage).
        assert doc["cost"]["usd"] == j["cost"]["usd"] and doc["cost"]["credits"] == j["cost"]["credits"], (doc, j)
        assert doc["route"] == j["route"], (doc["route"], j["route"])
        t = doc["timings"]
        assert t["created_at"] == j["created_at"] and t["accepted_at"] and t["completed_at"] and t["attempts"] == 1
        # No temp file is left behind.
        for root, _dirs, files in os.walk(d.videos_dir):
            assert not [f for f in files if f.endswith(".tmp") and not os.path.islink(os.path.join(root, f))], files
        # The planted links were replaced, never written through.
        planted = os.path.join(d.videos_dir, "planted", "clip.json")
        assert not os.path.islink(planted) and json.load(open(planted))["job_id"] == ids[1]
        assert open(outside).read() == "untouched\n"


def test_no_sidecar_by_default():
    with Klingd(fake_args=FAST_FAKE) as d:
        jid = d.submit([{"key": "ns", "output": "n.mp4", "request": klingtest.text_request("n")}])["jobs"][0]["id"]
        assert d.wait_terminal([jid])[jid]["state"] == "completed"
        assert sorted(os.listdir(d.videos_dir)) == ["n.mp4"]


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
