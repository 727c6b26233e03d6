"""fake-aimlapi: signed expiring video URLs, Range, per-generation bytes and SHA-256,
--video-bytes padding, and the whole flow over HTTPS with certificate verification."""

import hashlib
import os
import ssl
import struct
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from fakeprov import FakeProvider, make_tls, run_tests

FAKE = None
T2V = "kling-video/v1/pro/text-to-video"


def finished_video(fake, prompt="x", **create):
    gid = fake.create({"model": T2V, "prompt": prompt}, **create).json()["id"]
    doc = fake.wait_completed(gid)
    assert doc["status"] == "completed", doc
    return gid, doc["video"]


def boxes(data):
    """Top-level MP4 boxes as (type, size) pairs; fails on a malformed layout."""
    out, off = [], 0
    while off < len(data):
        size, kind = struct.unpack(">I4s", data[off:off + 8])
        if size == 1:
            size = struct.unpack(">Q", data[off + 8:off + 16])[0]
        assert size >= 8 and off + size <= len(data), (kind, size, off)
        out.append((kind.decode(), size))
        off += size
    return out


def stats_generation(fake, gid):
    return next(g for g in fake.stats()["generations"] if g["id"] == gid)


def test_url_looks_like_a_signed_cdn_url():
    gid, video = finished_video(FAKE)
    parts = urllib.parse.urlsplit(video["url"])
    q = urllib.parse.parse_qs(parts.query)
    assert parts.path.startswith("/cdn/kangaroo/") and parts.path.endswith(".mp4"), parts.path
    assert set(q) >= {"cacheKey", "ksSecret", "ksTime"} and len(parts.query) > 200, parts.query
    assert gid not in video["url"]


def test_distinct_bytes_per_generation_and_sha_matches_stats():
    FAKE.config({"id_shape": "uuid_model"})
    (a, va), (b, vb) = finished_video(FAKE, "a"), finished_video(FAKE, "b")
    FAKE.config({"id_shape": "rotate"})
    da, db = FAKE.download(va["url"]), FAKE.download(vb["url"])
    assert da.status == 200 and db.status == 200
    assert da.body != db.body
    for gid, video, r in ((a, va, da), (b, vb, db)):
        assert r.headers["content-type"] == "video/mp4" and int(r.headers["content-length"]) == len(r.body)
        assert len(r.body) == video["file_size"]
        assert r.body[4:8] == b"ftyp"
        kinds = boxes(r.body)
        assert kinds[-1][0] == "free" and r.body.endswith(gid.encode() + b"\n"), kinds
        g = stats_generation(FAKE, gid)
        assert g["sha256"] == hashlib.sha256(r.body).hexdigest() and g["file_size"] == len(r.body)
    base = open(os.path.join(os.environ.get("KLINGD_SOURCE_DIR", "../.."), "tests/fixtures/base.mp4"), "rb").read()
    assert da.body.startswith(base)


def test_range_requests():
    gid, video = finished_video(FAKE)
    full = FAKE.download(video["url"]).body
    size = len(full)
    r = FAKE.download(video["url"], {"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == full[:100] and r.headers["content-range"] == f"bytes 0-99/{size}"
    r = FAKE.download(video["url"], {"Range": "bytes=100-"})
    assert r.status == 206 and r.body == full[100:] and r.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    r = FAKE.download(video["url"], {"Range": "bytes=-10"})
    assert r.status == 206 and r.body == full[-10:]
    r = FAKE.download(video["url"], {"Range": f"bytes={size}-"})
    assert r.status == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = FAKE.download(video["url"], {"Range": f"bytes=10-{size + 50}"})
    assert r.status == 206 and r.body == full[10:]
    head = FAKE.request("HEAD", video["url"], auth=False)
    assert head.status == 200 and int(head.headers["content-length"]) == size and head.body == b""


def test_expired_url_then_fresh_url_works():
    FAKE.config({"url_ttl_s": 0.3})
    gid, video = finished_video(FAKE)
    assert FAKE.download(video["url"]).status == 200
    time.sleep(0.4)
    r = FAKE.download(video["url"])
    assert r.status == 403, r
    fresh = FAKE.poll(gid).json()["video"]["url"]
    assert fresh != video["url"] and FAKE.download(fresh).status == 200
    FAKE.config({"expired_url_status": 410})
    time.sleep(0.4)
    assert FAKE.download(fresh).status == 410
    FAKE.config({"url_ttl_s": 3600, "expired_url_status": 403})


def test_bad_signature_and_unknown_paths():
    gid, video = finished_video(FAKE)
    tampered = video["url"].replace("ksSecret=", "ksSecret=0")
    assert FAKE.download(tampered).status == 403
    FAKE.config({"bad_signature_status": 404})
    assert FAKE.download(tampered).status == 404
    FAKE.config({"bad_signature_status": 403})
    parts = urllib.parse.urlsplit(video["url"])
    assert FAKE.download(parts.path).status == 403  # no signature at all
    assert FAKE.download("/cdn/kangaroo/muse/999999/VIDEO/x.mp4").status == 404


def test_video_bytes_padding_and_large_sha():
    size = 12 * 1024 * 1024 + 7  # above the inline-hash limit: hashed on the worker thread
    FAKE.config({"video_bytes": size})
    (a, va), (b, vb) = finished_video(FAKE, "big1"), finished_video(FAKE, "big2")
    FAKE.config({"video_bytes": 0})
    assert va["file_size"] == size and vb["file_size"] == size
    da = FAKE.download(va["url"]).body
    assert len(da) == size and boxes(da)[-2][0] == "free" and da.endswith(a.encode() + b"\n")
    assert stats_generation(FAKE, a)["sha256"] == hashlib.sha256(da).hexdigest()
    db = FAKE.download(vb["url"]).body
    assert stats_generation(FAKE, b)["sha256"] == hashlib.sha256(db).hexdigest()
    # Deterministic: the same generation id always gives the same bytes.
    assert hashlib.sha256(db).hexdigest() != hashlib.sha256(da).hexdigest()


def test_download_counters():
    FAKE.reset(keep_config=True)
    gid, video = finished_video(FAKE)
    body = FAKE.download(video["url"]).body
    FAKE.download(video["url"], {"Range": "bytes=0-9"})
    FAKE.download(video["url"].replace("ksSecret=", "ksSecret=0"))
    s = FAKE.stats()
    assert s["downloads"] == 3 and s["downloads_completed"] == 2 and s["downloads_rejected"] == 1, s
    assert s["bytes_served"] == len(body) + 10, s
    assert s["generations"][0]["downloads"] == 2


def test_https_with_generated_ca():
    with tempfile.TemporaryDirectory() as tmp:
        tls = make_tls(os.path.join(tmp, "tls"))
        with FakeProvider(tls=tls, args=["--queued-s", "0", "--generating-s", "0.1"]) as fake:
            assert fake.base_url.startswith("https://127.0.0.1:")
            gid, video = finished_video(fake)
            assert video["url"].startswith("https://")
            # urllib with the test CA: certificate and host name verified.
            ctx = ssl.create_default_context(cafile=tls.ca)
            with urllib.request.urlopen(video["url"], context=ctx, timeout=10) as r:
                data = r.read()
            assert data.endswith(gid.encode() + b"\n")
            assert fake.stats()["generations"][0]["sha256"] == hashlib.sha256(data).hexdigest()
            # Without the CA the same URL must fail verification.
            try:
                urllib.request.urlopen(video["url"], context=ssl.create_default_context(), timeout=10)
                raise AssertionError("verification should have failed")
            except urllib.error.URLError as e:
                assert isinstance(e.reason, ssl.SSLCertVerificationError), e
            # localhost is in the certificate too.
            loc = urllib.request.Request(f"https://localhost:{fake.port}/__admin/stats")
            with urllib.request.urlopen(loc, context=ctx, timeout=10) as r:
                assert r.status == 200


def main():
    global FAKE
    FAKE = FakeProvider(args=["--queued-s", "0", "--generating-s", "0.1"])
    try:
        return run_tests(globals())
    finally:
        FAKE.stop()


if __name__ == "__main__":
    sys.exit(main())
