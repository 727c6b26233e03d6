"""A tiny HTTPS provider stand-in for the download benchmark (bench/run.py, issue 9 §3).

fake-aimlapi serves its videos itself; to make klingd fetch a file from nginx instead, this
stub answers the universal family's create and poll with a generation that is completed at
once and whose `video.url` is the nginx URL given at start. Nothing else is modelled: it
exists so the download path runs against a real, independent web server.

    stub = StubProvider(video_url, video_bytes, tls)   # tls: fakeprov.TlsFiles
    stub.base_url ... stub.stop()
"""

import http.server
import json
import ssl
import threading
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so klingd keeps its connection alive as with the real provider.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _generation(self, gid, completed):
        s = self.server.stub
        video = None
        if completed:
            video = {"url": s.video_url, "file_size": s.video_bytes, "content_type": "video/mp4",
                     "file_name": "bench.mp4", "duration": 1}
        return {"id": gid, "status": "completed" if completed else "queued", "video": video, "error": None}

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        s = self.server.stub
        with s.lock:
            s.creates += 1
            gid = f"bench-{s.creates}:klingai/video-v3-pro-text-to-video"
        self._send(200, self._generation(gid, completed=False))

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        gid = (q.get("generation_id") or [""])[0]
        if not gid:
            self._send(400, {"message": "generation_id: Required", "statusCode": 400})
            return
        with self.server.stub.lock:
            self.server.stub.polls += 1
        self._send(200, self._generation(gid, completed=True))


class StubProvider:
    def __init__(self, video_url, video_bytes, tls):
        self.video_url = video_url
        self.video_bytes = video_bytes
        self.tls = tls  # klingtest.Klingd reads .tls.ca and .base_url
        self.creates = 0
        self.polls = 0
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.stub = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
