"""fake-aimlapi: both endpoint families, auth, create-body validation (every seed example
accepted, each documented rejection produced), status progression, id shapes."""

import re
import sys
import time

from fakeprov import FakeProvider, run_tests

FAKE = None

# Every example request body in the five seed pages, with the endpoint it was sent to.
SEED_EXAMPLES = [
    (False, {"model": "klingai/video-v3-pro-text-to-video",
             "prompt": "A menacing evil dragon appears in a distance above the tallest mountain, then rushes "
                       "toward the camera with its jaws open, revealing massive fangs. We see it's coming."}),
    (False, {"model": "klingai/video-v3-pro-text-to-video",
             "multi_prompt": ["A cheerful white raccoon runs through a giant sequoia forest. 3 seconds.",
                              "Close-up of the raccoon's face. 2 seconds.",
                              "First-person view from the raccoon's perspective. 3 seconds."],
             "aspect_ratio": "16:9", "duration": 8}),
    (False, {"model": "klingai/video-v3-standard-image-to-video",
             "prompt": "The camera glides smoothly over a calm lake surface, then dives underwater.",
             "image_url": "https://raw.githubusercontent.com/aimlapi/api-docs/main/reference-files/landscape.jpg",
             "last_image_url": "https://cdn.aimlapi.com/flamingo/files/b/monkey/8QpmaTniTlydTzWQcnugy_3ad2bc325cb04e11a11d27034afb554f.png",
             "duration": 10}),
    (False, {"model": "kling-video/v1.6/standard/multi-image-to-video",
             "prompt": "A graceful ballerina dancing outside a circus tent on green grass.",
             "image_list": ["https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
                            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
                            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png"],
             "duration": "5"}),
    (False, {"model": "kling-video/v1.6/standard/multi-image-to-video",
             "prompt": "A graceful ballerina dancing outside a circus tent on green grass.",
             "image_urls": ["https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
                            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
                            "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png"],
             "duration": "5"}),
    (False, {"model": "klingai/v2-master-text-to-video",
             "prompt": "A menacing evil dragon appears in a distance above the tallest mountain."}),
    (True, {"model": "kling-video/v1/pro/text-to-video", "aspect_ratio": "16:9", "prompt": "text",
            "duration": 5, "negative_prompt": "text", "cfg_scale": 1}),
    (True, {"model": "klingai/v2-master-text-to-video",
            "prompt": "A cheerful white raccoon running through a sequoia forest",
            "aspect_ratio": "16:9", "duration": "5", "cfg_scale": 0.9}),
]

T2V = "kling-video/v1/pro/text-to-video"
V3 = "klingai/video-v3-pro-text-to-video"
I2V = "kling-video/v1.6/pro/image-to-video"
MULTI = "kling-video/v1.6/standard/multi-image-to-video"
IMG = "https://example.com/a.png"

# (body, legacy, field the 400 must name)
REJECTIONS = [
    ({"model": "kling-video/v9/ultra/text-to-video", "prompt": "x"}, False, "model"),
    ({"prompt": "x"}, False, "model"),
    ({"model": T2V}, False, "prompt"),
    ({"model": T2V, "prompt": ""}, False, "prompt"),
    ({"model": V3, "prompt": "x", "multi_prompt": ["a", "b"]}, False, "prompt"),
    ({"model": V3}, False, "prompt"),
    ({"model": I2V, "prompt": "x"}, False, "image_url"),
    ({"model": I2V, "image_url": 5}, False, "image_url"),
    ({"model": MULTI, "prompt": "x"}, False, "image_list"),
    ({"model": MULTI, "image_list": [IMG]}, False, "image_list"),
    ({"model": MULTI, "image_list": [IMG] * 5}, False, "image_list"),
    ({"model": MULTI, "image_urls": [IMG]}, False, "image_urls"),
    ({"model": T2V, "prompt": "x", "duration": 7}, False, "duration"),
    ({"model": T2V, "prompt": "x", "duration": "7"}, False, "duration"),
    ({"model": T2V, "prompt": "x", "duration": "five"}, False, "duration"),
    ({"model": T2V, "prompt": "x", "duration": 5.5}, False, "duration"),
    ({"model": V3, "prompt": "x", "duration": 16}, False, "duration"),
    ({"model": V3, "prompt": "x", "duration": 2}, False, "duration"),
    ({"model": T2V, "prompt": "x", "aspect_ratio": "4:3"}, False, "aspect_ratio"),
    ({"model": T2V, "prompt": "x", "cfg_scale": 1.5}, False, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "cfg_scale": -0.1}, False, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "cfg_scale": "0.5"}, False, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "camera_control": "spin"}, False, "camera_control"),
    ({"model": T2V, "prompt": "x", "advanced_camera_control": {"movement_type": "zoom", "movement_value": 11}},
     False, "advanced_camera_control"),
    ({"model": "klingai/video-v2-6-pro-text-to-video", "prompt": "x" * 2501}, False, "prompt"),
    ({"model": "klingai/video-v3-pro-image-to-video", "prompt": "x"}, False, "image_url"),
    ({"model": "klingai/avatar-pro", "image_url": IMG}, False, "audio_url"),
    ({"model": "klingai/video-v3-motion-control", "image_url": IMG, "video_url": IMG, "mode": "max"}, False, "mode"),
    ({"model": T2V, "prompt": "x", "ratio": "4:3"}, True, "ratio"),
    ({"model": V3, "prompt": "x", "provider": "openai"}, False, "provider"),
]


def test_every_seed_example_is_accepted():
    for legacy, body in SEED_EXAMPLES:
        r = FAKE.create(body, legacy=legacy)
        assert r.status == (201 if legacy else 200), (body["model"], r)
        doc = r.json()
        assert doc["status"] == "queued" and doc["id"], doc


def test_each_documented_rejection_names_the_field():
    before = FAKE.stats(sha256=False)["creates_recorded"]
    for body, legacy, field in REJECTIONS:
        r = FAKE.create(body, legacy=legacy)
        assert r.status == 400, (body, r)
        doc = r.json()
        assert set(doc) == {"message", "path", "requestId", "statusCode", "timestamp"}, doc
        assert doc["statusCode"] == 400 and doc["path"] == (FAKE.LEGACY if legacy else FAKE.UNIVERSAL), doc
        assert re.match(rf"{field}\b", doc["message"]), (field, doc["message"])
    stats = FAKE.stats(sha256=False)
    assert stats["creates_recorded"] == before, "a rejected create must not be recorded"
    r = FAKE.create("{not json")
    assert r.status == 400 and "body" in r.json()["message"]


def test_unknown_fields_ignored_unless_strict():
    body = {"model": T2V, "prompt": "x", "seed": 42}
    assert FAKE.create(body).status == 200
    FAKE.config({"strict_fields": True})
    try:
        r = FAKE.create(body)
        assert r.status == 400 and r.json()["message"].startswith("seed"), r
        for legacy, seed_body in SEED_EXAMPLES:
            assert FAKE.create(seed_body, legacy=legacy).status == (201 if legacy else 200), seed_body
    finally:
        FAKE.config({"strict_fields": False})


def test_auth():
    body = {"model": T2V, "prompt": "x"}
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdC1rZXk="},
                    {"Authorization": "test-key"}):
        r = FAKE.request("POST", FAKE.UNIVERSAL, body, headers)
        assert r.status == 401 and r.json()["statusCode"] == 401, r
    r = FAKE.request("POST", FAKE.UNIVERSAL, body, auth=False)
    assert r.status == 401
    r = FAKE.request("GET", FAKE.UNIVERSAL + "?generation_id=x", auth=False)
    assert r.status == 401
    r = FAKE.request("GET", "/v2/logs", auth=False)
    assert r.status == 401


def test_status_progression_modern():
    FAKE.config({"queued_s": 0.4, "generating_s": 0.4})
    gid = FAKE.create({"model": T2V, "prompt": "x"}).json()["id"]
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        doc = FAKE.poll(gid).json()
        if not seen or seen[-1] != doc["status"]:
            seen.append(doc["status"])
        if doc["status"] == "completed":
            v = doc["video"]
            assert v["url"] and v["content_type"] == "video/mp4" and v["file_size"] > 0, v
            assert v["file_name"] and v["duration"] == 5, v
            break
        assert doc["video"] is None and doc["error"] is None
        time.sleep(0.05)
    assert seen == ["queued", "generating", "completed"], seen


def test_status_progression_legacy_words():
    FAKE.config({"queued_s": 0.3, "generating_s": 0.6, "status_style": "legacy"})
    try:
        gid = FAKE.create({"model": T2V, "prompt": "x"}, legacy=True).json()["id"]
        seen = []
        while True:
            doc = FAKE.poll(gid, legacy=True).json()
            if not seen or seen[-1] != doc["status"]:
                seen.append(doc["status"])
            if doc["status"] == "completed":
                break
            time.sleep(0.04)
        assert seen == ["waiting", "active", "processing", "completed"], seen
    finally:
        FAKE.config({"status_style": "modern"})


def test_failures_in_both_error_shapes():
    FAKE.config({"queued_s": 0, "generating_s": 0.05, "failure_rate": 1.0, "failure_style": "error"})
    doc = FAKE.wait_completed(FAKE.create({"model": T2V, "prompt": "x"}).json()["id"])
    assert doc["status"] == "error" and set(doc["error"]) == {"name", "message"} and doc["video"] is None, doc
    FAKE.config({"failure_style": "detail", "failure_status": "failed"})
    doc = FAKE.wait_completed(FAKE.create({"model": T2V, "prompt": "x"}).json()["id"])
    assert doc["status"] == "failed", doc
    detail = doc["error"]["detail"]
    assert set(detail[0]) == {"loc", "msg", "type"}, doc
    FAKE.config({"failure_rate": 0.0, "failure_status": "error", "failure_style": "error"})


def test_failure_share_is_roughly_the_configured_rate():
    FAKE.config({"queued_s": 0, "generating_s": 0, "failure_rate": 0.3})
    ids = [FAKE.create({"model": T2V, "prompt": f"p{i}"}).json()["id"] for i in range(100)]
    failed = sum(FAKE.poll(g).json()["status"] == "error" for g in ids)
    FAKE.config({"failure_rate": 0.0})
    assert 15 <= failed <= 45, failed


def test_completed_without_url_at_first():
    FAKE.config({"queued_s": 0, "generating_s": 0, "completed_without_url_polls": 2})
    gid = FAKE.create({"model": T2V, "prompt": "x"}).json()["id"]
    docs = [FAKE.poll(gid).json() for _ in range(3)]
    FAKE.config({"completed_without_url_polls": 0})
    assert [d["status"] for d in docs] == ["completed"] * 3
    assert docs[0]["video"] is None and docs[1]["video"] is None and docs[2]["video"]["url"], docs


ID_SHAPES = {
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
    "nanoid": r"[A-Za-z0-9_-]{21}",
    "uuid_model": r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}:kling-video/v1/pro/text-to-video",
    "numeric": r"[0-9]{19}",
}


def test_id_shapes_and_url_encoded_ids():
    FAKE.config({"queued_s": 0, "generating_s": 0})
    for shape, pattern in ID_SHAPES.items():
        FAKE.config({"id_shape": shape})
        for legacy in (False, True):
            r = FAKE.create({"model": T2V, "prompt": "x"}, legacy=legacy)
            gid = r.json()["id"]
            assert re.fullmatch(pattern, gid), (shape, gid)
            assert r.headers["x-inference-id"] == gid
            doc = FAKE.poll(gid, legacy=legacy).json()  # urlencode turns ':' '/' into %3A %2F
            assert doc["id"] == gid and doc["status"] == "completed", doc
    FAKE.config({"id_shape": "rotate"})
    shapes = set()
    for _ in range(4):
        gid = FAKE.create({"model": T2V, "prompt": "x"}).json()["id"]
        shapes.add(next(s for s, p in ID_SHAPES.items() if re.fullmatch(p, gid)))
    assert shapes == set(ID_SHAPES), shapes


def test_unknown_id_answer_is_configurable():
    r = FAKE.poll("no-such-generation")
    assert r.status == 404 and r.json()["statusCode"] == 404 and "x-inference-id" not in r.headers
    FAKE.config({"unknown_id_status": 400, "status_code_as_string": True})
    r = FAKE.poll("no-such-generation")
    FAKE.config({"unknown_id_status": 404, "status_code_as_string": False})
    assert r.status == 400 and r.json()["statusCode"] == "400", r
    r = FAKE.request("GET", FAKE.UNIVERSAL)
    assert r.status == 400 and r.json()["message"].startswith("generation_id"), r


def test_out_of_credits_and_key_rotation():
    FAKE.config({"credits_exhausted": True})
    r = FAKE.create({"model": T2V, "prompt": "x"})
    FAKE.config({"credits_exhausted": False})
    assert r.status == 403 and r.json()["statusCode"] == 403
    FAKE.config({"api_key": "rotated"})
    try:
        assert FAKE.create({"model": T2V, "prompt": "x"}).status == 401
    finally:
        FAKE.request("POST", "/__admin/config", {"api_key": "test-key"}, auth=False)


def test_generation_time_per_model_with_length_and_spread():
    from datetime import datetime

    def seconds(g):
        t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        return (t(g["finished"]) - t(g["created"])).total_seconds()

    FAKE.config({"queued_s": 0.1, "generating_s": 1, "generating_s_by_model": {T2V: 3},
                 "generating_per_video_s": 0.5, "generating_jitter": 0.2})
    try:
        ids = [FAKE.create({"model": T2V, "prompt": f"x{i}", "duration": 10}).json()["id"] for i in range(8)]
        other = FAKE.create({"model": "klingai/video-v3-standard-text-to-video", "prompt": "y", "duration": 5}).json()["id"]
        gens = {g["id"]: g for g in FAKE.stats()["generations"]}
        times = [seconds(gens[i]) for i in ids]
        # (3 + 0.5 × 10) × (1 ± 0.2), plus the queue: each within, not all alike.
        assert all(0.1 + 8 * 0.8 - 0.01 <= t <= 0.1 + 8 * 1.2 + 0.01 for t in times), times
        assert max(times) - min(times) > 0.5, times
        assert 0.1 + 3.5 * 0.8 - 0.01 <= seconds(gens[other]) <= 0.1 + 3.5 * 1.2 + 0.01, gens[other]
        r = FAKE.request("POST", "/__admin/config", {"generating_s_by_model": {T2V: -1}}, auth=False)
        assert r.status == 400 and T2V in r.json()["error"], r
    finally:
        FAKE.config({"queued_s": 0.2, "generating_s": 0.2, "generating_s_by_model": {}, "generating_per_video_s": 0,
                     "generating_jitter": 0})


def test_admin_config_rejects_bad_keys():
    for bad in ({"no_such_key": 1}, {"failure_rate": 2}, {"faults": {"create": {"truncated": 0.1}}},
                {"id_shape": "hex"}, {"script": [{"kind": "poll", "fault": "reset_after_create"}]}):
        r = FAKE.request("POST", "/__admin/config", bad, auth=False)
        assert r.status == 400 and "error" in r.json(), (bad, r)
    assert FAKE.config()["failure_rate"] == 0.0


def main():
    global FAKE
    FAKE = FakeProvider(args=["--queued-s", "0.2", "--generating-s", "0.2", "--seed", "7"])
    try:
        return run_tests(globals())
    finally:
        FAKE.stop()


if __name__ == "__main__":
    sys.exit(main())
