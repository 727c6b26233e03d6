"""klingctl models: the price per second column, `models --check` against a saved
GET /v1/models?include=pricing answer (never the internet: without a key or a file it refuses),
and the demo batch (examples/jobs.jsonl, with its v3 turbo storyboard job) run end to end
against the fake provider, part of it served by the fal mirror from its other CDN."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402

TURBO = "klingai/video-v3-turbo-pro-text-to-video"
NO_KEY_ENV = {"AIMLAPI_KEY": "", "CREDENTIALS_DIRECTORY": "", "AIMLAPI_BASE_URL": "https://127.0.0.1:9"}


def pricing_answer(models, change=None):
    """The provider's model list as klingd's catalog prices it; `change(item)` edits items."""
    data = []
    for m in models:
        item = {"id": m["id"], "aliases": [], "type": "internal/video-generations/submit",
                "pricing": {"kind": "fixed", "currency": "USD",
                            "units": [{"name": "second", "price": m["price_usd"], "per": 1}]}}
        if change:
            item = change(item)
        if item:
            data.append(item)
    return {"object": "list", "data": data}


def test_models_price_column_and_check_against_a_saved_answer():
    with Klingd() as d:
        models = d.get_json("/v1/models")["models"]
        turbo = next(m for m in models if m["id"] == TURBO)
        p = d.ctl("models", check=0)
        header = p.stdout.splitlines()[0]
        assert "USD/S" in header, header
        row = next(line for line in p.stdout.splitlines() if line.startswith(TURBO + " "))
        assert f"{turbo['price_usd']:.3f}" in row, row

        path = os.path.join(d.workdir, "pricing.json")
        with open(path, "w") as f:
            json.dump(pricing_answer(models), f)
        p = d.ctl("models", "--check", "--pricing-file", path, check=0, env=NO_KEY_ENV)
        assert "no drift" in p.stdout, p.stdout

        def drift(item):
            if item["id"] == TURBO:
                item["pricing"]["units"][0]["price"] = 0.5
            if item["id"] == "klingai/avatar-pro":
                return None
            return item
        answer = pricing_answer(models, drift)
        answer["data"].append({"id": "klingai/video-v4-text-to-video", "aliases": []})
        with open(path, "w") as f:
            json.dump(answer, f)
        p = d.ctl("models", "--check", "--pricing-file", path, check=1, env=NO_KEY_ENV)
        lines = {line.split()[0]: line for line in p.stdout.splitlines()[1:]}
        assert set(lines) == {TURBO, "klingai/avatar-pro", "klingai/video-v4-text-to-video"}, p.stdout
        assert "price" in lines[TURBO] and "$0.5/s" in lines[TURBO], lines[TURBO]
        assert "missing" in lines["klingai/avatar-pro"]
        out = d.ctl_json("models", "--check", "--pricing-file", path, check=1, env=NO_KEY_ENV)
        assert sorted(x["kind"] for x in out["drift"]) == ["missing", "not_in_catalog", "price"], out

        # Without a saved answer it needs a key, and never goes looking on its own.
        p = d.ctl("models", "--check", check=2, env=NO_KEY_ENV)
        assert "needs the API key" in p.stderr, p.stderr
        with open(path, "w") as f:
            f.write("<html>")
        p = d.ctl("models", "--check", "--pricing-file", path, check=1, env=NO_KEY_ENV)
        assert "model list" in p.stderr, p.stderr


def test_the_demo_batch_runs_against_the_fake():
    src = os.environ.get("KLINGD_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    path = os.path.join(src, "examples", "jobs.jsonl")
    with open(path) as f:
        assert TURBO in f.read()
    with Klingd() as d:
        # Kling "down": models with the provider field fall back to the fal mirror and its CDN.
        d.fake.config({"auto_route": "fal"})
        batch = d.ctl_json("submit", "-f", path)["batch"]  # as scripts/demo.py submits it
        b = d.wait_batch(batch)
        assert b["counts"].get("completed") == b["total"] and b["total"] >= 7, b
        turbo = d.job("key:demo-fox-turbo")
        assert turbo["request"]["multi_prompt"][1] == {"prompt": "The fox trots along a frozen stream, breath steaming.",
                                                        "duration": 4}, turbo["request"]
        generations = d.fake.stats(sha256=False)["generations"]
        sent = [g for g in generations if g["model"] == TURBO]
        assert len(sent) == 1 and sent[0]["status"] == "completed" and sent[0]["provider_served"] == "kling", sent
        assert {g["provider_served"] for g in generations} == {"kling", "fal"}, generations
        assert all(g["downloads"] >= 1 for g in generations), generations


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
