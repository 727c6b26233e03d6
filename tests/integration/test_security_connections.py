"""Connection caps (issue 17, item 2; docs/security.md): 2,000 idle connections to the
socket and 2,000 to the dashboard port, made by a process that never sends a byte, must not
starve klingd of descriptors: `klingctl status` answers and a job completes while they are
open. klingd runs with RLIMIT_NOFILE 1024 (soft and hard, a common default) so that without
the caps and the descriptor reserve it runs out; the caps are lowered to fit that limit."""

import os
import resource
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402
from securitytest import wrapped_klingd  # noqa: E402

IDLE = 2000
DAEMON_NOFILE = 1024


def raise_own_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise AssertionError(f"this test needs {need} descriptors; the hard limit is {hard} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def open_idle(family, address, n):
    """n connections that never send anything (non-blocking connects; the kernel's backlog
    holds those klingd has not accepted yet)."""
    socks = []
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            # Unix socket with a full backlog: EAGAIN. Counts as an attempt all the same.
            pass
        socks.append(s)
    return socks


def test_idle_connections_do_not_starve_klingd():
    raise_own_limit(2 * IDLE + 256)
    socks = []
    try:
        with wrapped_klingd(prelude=f"ulimit -n {DAEMON_NOFILE} || exit 97"), \
                Klingd(config_overrides={"dashboard": {"listen": "127.0.0.1:0"}}) as d:
            log = d.log()
            assert f"nofile={DAEMON_NOFILE}" in log, log[-2000:]
            # The caps were lowered to leave the engine its reserve.
            assert "api.connection_caps_lowered" in log, log[-2000:]
            url = d.ctl("dashboard", check=0).stdout.strip()
            port = int(url.split(":")[2].split("/")[0])
            socks += open_idle(socket.AF_UNIX, d.socket_path, IDLE)
            socks += open_idle(socket.AF_INET, ("127.0.0.1", port), IDLE)
            # klingctl status answers, on the socket, behind 2,000 idle connections.
            st = d.ctl_json("status", timeout=30)
            assert "in_flight" in st, st
            # A job goes through create, polls and the download (HTTP connections, .part, fsync).
            r = d.submit([spec("a kite over dunes")])
            jid = r["jobs"][0]["id"]
            job = d.wait_terminal([jid], timeout=30)[jid]
            assert job["state"] == "completed", job
            # The dashboard still answers an authenticated request (it pushes an idle one out).
            token = url.split("#token=")[1]
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(f"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                      "Connection: close\r\n\r\n".encode())
            head = c.recv(64)
            c.close()
            assert head.startswith(b"HTTP/1.1 200"), head
            assert "EMFILE" not in d.log() and "Too many open files" not in d.log(), d.log()[-3000:]
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
