"""A hostile AI/ML API + CDN stand-in for the reliability suite (issue 8, item 3): creates and
polls look normal, but each job's prompt names a scenario ("scenario:<name>") that decides how
its status and its video URL misbehave. Python standard library; HTTPS on 127.0.0.1 with a
certificate from fakeprov.make_tls (valid for 127.0.0.1 and localhost).

    with HostileProvider(tls_files, api_key) as h:
        h.base_url         # provider.base_url for klingd
        h.stats()          # {scenario: {"creates", "polls", "downloads", "bytes"}}
        h.expected[gen_id] # sha256 of the bytes a well-behaved download of gen_id must yield

fake-aimlapi is the faithful provider; this one is deliberately not, and shares nothing with it.
"""

import hashlib
import http.server
import json
import os
import ssl
import struct
import threading
import time
import urllib.parse

_HERE = os.path.dirname(os.path.abspath(__file__))
BASE_MP4 = os.path.join(_HERE, "..", "fixtures", "base.mp4")

# What each scenario does. "status": the poll answer's status value (default "completed");
# the video is served by /cdn/<scenario>/<gen>.mp4.
SCENARIOS = {
    "ok": "a well-behaved control job",
    "redirect_other_host": "302 to https://localhost:<port> (another host name) that serves the real video",
    "redirect_http": "302 to an http:// URL",
    "redirect_loop": "302 to itself, forever",
    "redirect_no_location": "302 without a Location header",
    "endless": "200, chunked, a valid MP4 head and then bytes without end",
    "length_short": "Content-Length twice the body, then the connection closes (no file_size)",
    "length_long": "Content-Length smaller than the bytes written (the rest is garbage on the connection)",
    "not_mp4": "200 with an HTML page",
    "huge": "Content-Length and file_size of 10 GB (nothing much is sent)",
    "size_mismatch": "file_size in the status differs from the real length",
    "drip": "a valid Content-Length (1 MiB), then 8 bytes every 0.3 s (would take 11 hours)",
    "url_file_scheme": "video.url is file:///etc/passwd",
    "url_closed_port": "video.url points to a port nobody listens on",
    "status_garbage": "status values: a number, null, an object, a long emoji string",
    "huge_json": "a 40 MB status document",
    "deep_json": "a status document nested 100000 levels deep",
    "echo_key": "create refused with 400 whose message echoes the Authorization header",
}


def mp4_for(gen_id):
    """The base MP4 plus a `free` box naming the generation: a valid, unique file."""
    with open(BASE_MP4, "rb") as f:
        base = f.read()
    payload = f"hostile generation {gen_id}\n".encode()
    return base + struct.pack(">I", 8 + len(payload)) + b"free" + payload


class HostileProvider:
    def __init__(self, tls, api_key, retry_after_s=0):
        self.tls = tls
        self.api_key = api_key
        self.lock = threading.Lock()
        self.counters = {}
        self.expected = {}
        self.scenario_of = {}
        self.token_of = {}  # CDN paths carry a token, not the id (ids hold ':' and '/')
        self.gen_of = {}
        self.closed_port = self._closed_port()
        self.stop_event = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                self.request.settimeout(30)
                self.request.do_handshake()
                super().setup()

            def handle(self):
                try:
                    super().handle()
                except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
                    pass

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
                    self.close_connection = True

            def do_POST(self):
                outer._create(self)

            def do_GET(self):
                outer._get(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256  # klingd opens many connections at once; 5 drops SYNs

        self.server = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        # The handshake runs in the connection's thread: a client that connects and says
        # nothing must not stall accept() for everyone else.
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def _closed_port():
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there any more
        return port

    # --- bookkeeping -------------------------------------------------------------------------

    def _count(self, scenario, what, n=1):
        with self.lock:
            c = self.counters.setdefault(scenario, {"creates": 0, "polls": 0, "downloads": 0, "bytes": 0})
            c[what] = c.get(what, 0) + n

    def stats(self):
        with self.lock:
            return json.loads(json.dumps(self.counters))

    # --- provider API ------------------------------------------------------------------------

    def _send(self, h, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _create(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}")
        prompt = body.get("prompt", "")
        scenario = prompt.split("scenario:", 1)[1].split()[0] if "scenario:" in prompt else "ok"
        self._count(scenario, "creates")
        if scenario == "echo_key":
            # Some APIs quote the credential back; klingd stores provider messages verbatim.
            return self._send(h, 400, {"message": f"invalid request for {h.headers.get('Authorization')}",
                                       "statusCode": 400})
        with self.lock:  # creates arrive concurrently: ids are drawn under the lock
            gen = f"hostile-{len(self.scenario_of) + 1:05d}:{body.get('model', 'm')}"
            self.token_of[gen] = f"v{len(self.scenario_of) + 1}"
            self.gen_of[self.token_of[gen]] = gen
            self.scenario_of[gen] = scenario
            self.expected[gen] = hashlib.sha256(mp4_for(gen)).hexdigest()
        self._send(h, 200, {"id": gen, "status": "queued"})

    def _status_doc(self, gen, scenario, n):
        video_url = f"{self.base_url}/cdn/{scenario}/{self.token_of[gen]}.mp4"
        size = len(mp4_for(gen))
        if scenario == "url_file_scheme":
            video_url = "file:///etc/passwd"
        elif scenario == "url_closed_port":
            video_url = f"https://127.0.0.1:{self.closed_port}/v.mp4"
        elif scenario == "huge":
            size = 10 * 1000 ** 3
        elif scenario == "size_mismatch":
            size += 1000
        elif scenario in ("endless", "drip", "not_mp4", "length_short"):
            size = None
        status = "completed"
        if scenario == "status_garbage":
            status = [42, None, {"state": "completed"}, ["completed"], "\U0001F4A5" * 5000, "", "COMPLETED "][n % 7]
        video = {"url": video_url, "file_size": size, "content_type": "video/mp4", "file_name": "v.mp4"}
        return {"id": gen, "status": status, "video": video if status == "completed" else None, "error": None}

    def _get(self, h):
        url = urllib.parse.urlsplit(h.path)
        if url.path == "/v2/logs":
            return self._send(h, 200, {"data": [], "pagination": {"limit": 50, "offset": 0, "total": 0,
                                                                  "has_more": False}})
        if url.path.startswith("/cdn/"):
            return self._video(h, url)
        gen = urllib.parse.parse_qs(url.query).get("generation_id", [""])[0]
        scenario = self.scenario_of.get(gen)
        if scenario is None:
            return self._send(h, 404, {"message": "not found", "statusCode": 404})
        self._count(scenario, "polls")
        n = self.stats()[scenario]["polls"]
        if scenario == "huge_json":
            filler = "x" * (40 << 20)
            return self._send(h, 200, ('{"id": "%s", "status": "generating", "pad": "%s"}' % (gen, filler)).encode())
        if scenario == "deep_json":
            return self._send(h, 200, b'{"status": ' + b"[" * 100000 + b"]" * 100000 + b"}")
        self._send(h, 200, self._status_doc(gen, scenario, n))

    # --- CDN ---------------------------------------------------------------------------------

    def _video(self, h, url):
        parts = url.path.split("/")
        scenario = parts[2]
        gen = self.gen_of.get(parts[3][:-len(".mp4")], "") if len(parts) > 3 else ""
        self._count(scenario, "downloads")
        data = mp4_for(gen)
        here = f"{self.base_url}{url.path}"

        def head(status, length=None, extra=()):
            h.send_response(status)
            h.send_header("Content-Type", "video/mp4")
            if length is not None:
                h.send_header("Content-Length", str(length))
            for k, v in extra:
                h.send_header(k, v)
            h.end_headers()

        def write(chunk):
            h.wfile.write(chunk)
            self._count(scenario, "bytes", len(chunk))

        if scenario == "redirect_other_host" and "localhost" not in (h.headers.get("Host") or ""):
            head(302, 0, [("Location", here.replace("127.0.0.1", "localhost"))])
        elif scenario == "redirect_http":
            head(302, 0, [("Location", here.replace("https://", "http://"))])
        elif scenario == "redirect_loop":
            head(302, 0, [("Location", here)])
        elif scenario == "redirect_no_location":
            head(302, 0)
        elif scenario == "endless":
            h.send_response(200)
            h.send_header("Content-Type", "video/mp4")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            block = b"\0" * 65536
            write(b"%x\r\n%s\r\n" % (len(data), data))
            while not self.stop_event.is_set():
                write(b"%x\r\n%s\r\n" % (len(block), block))
        elif scenario == "length_short":
            head(200, len(data) * 2)
            write(data)
            h.close_connection = True
        elif scenario == "length_long":
            head(200, len(data) - 100)
            write(data + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        elif scenario == "not_mp4":
            page = b"<html><body>Access denied</body></html>\n" * 50
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(page)))
            h.end_headers()
            write(page)
        elif scenario == "huge":
            head(200, 10 * 1000 ** 3)
            write(data)
            for _ in range(200):  # a little more, then stop pretending
                if self.stop_event.is_set():
                    break
                write(b"\0" * 65536)
            h.close_connection = True
        elif scenario == "drip":
            head(200, 1 << 20)  # under download.max_bytes: only time can stop it
            write(data[:16])
            try:
                while not self.stop_event.is_set():
                    time.sleep(0.3)
                    write(b"\0" * 8)
            finally:
                self._count(scenario, "ended")  # the client went away (or the server stops)
        else:  # ok, size_mismatch, the redirect target
            head(200, len(data))
            write(data)

    def close(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
