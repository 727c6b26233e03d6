#!/usr/bin/env python3
"""sd_notify (docs/contract.md §3.7): klingd started as systemd would start a Type=notify service with
a watchdog — NOTIFY_SOCKET names a datagram socket we listen on, WATCHDOG_USEC is small —
must send READY=1 once it serves, WATCHDOG=1 from its loop about every WATCHDOG_USEC/2,
STOPPING=1 on SIGTERM, and exit 0."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402

WATCHDOG_USEC = 200_000


class NotifyListener:
    """A datagram socket bound where NOTIFY_SOCKET points (a path, or "@name" abstract)."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address if not address.startswith("@") else "\0" + address[1:])
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time, {key: value})

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append((time.monotonic(), fields))
        return self.messages

    def times(self, key, value="1"):
        return [t for t, f in self.messages if f.get(key) == value]

    def close(self):
        self.sock.close()


def test_ready_watchdog_stopping_with_a_path_socket():
    d = klingtest.Klingd(start=False)
    with d:
        addr = os.path.join(d.workdir, "notify.sock")
        n = NotifyListener(addr)
        try:
            d.env = {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
            d.start()
            pid = d.proc.pid
            n.drain(1.5)
            ready = n.times("READY")
            assert len(ready) == 1, f"READY=1 sent {len(ready)} times: {n.messages}"
            ready_fields = next(f for _, f in n.messages if f.get("READY") == "1")
            assert ready_fields.get("MAINPID") == str(pid), ready_fields
            assert "STATUS" in ready_fields, ready_fields

            pings = n.times("WATCHDOG")
            # Every 100 ms for ~1.5 s: well over 5 even on a loaded machine, and the gaps must
            # stay under WATCHDOG_USEC or systemd would kill a healthy daemon.
            assert len(pings) >= 5, f"only {len(pings)} WATCHDOG=1 in 1.5 s"
            assert all(p > ready[0] - 0.2 for p in pings)
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            assert max(gaps) < WATCHDOG_USEC / 1e6, f"watchdog gap {max(gaps):.3f}s ≥ WATCHDOG_USEC"

            # Busy with API requests, the loop still pings.
            before = len(n.times("WATCHDOG"))
            for _ in range(20):
                assert d.get("/v1/status").status == 200
            n.drain(0.5)
            assert len(n.times("WATCHDOG")) > before

            d.proc.send_signal(signal.SIGTERM)
            rc = d.proc.wait(20)
            n.drain(0.2)
            assert rc == 0, f"exit {rc}"
            stopping = n.times("STOPPING")
            assert len(stopping) == 1, n.messages
            assert stopping[0] > ready[0]
            # Nothing claims readiness again after STOPPING=1.
            assert not [t for t in n.times("READY") if t > stopping[0]]
        finally:
            n.close()


def test_abstract_socket_and_watchdog_for_another_pid():
    """"@name" is an abstract socket; WATCHDOG_PID naming another process turns pings off
    (systemd sets it for the main process only), while READY/STOPPING still go out."""
    d = klingtest.Klingd(start=False)
    with d:
        addr = f"@klingd-test-notify-{os.getpid()}"
        n = NotifyListener(addr)
        try:
            d.env = {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"}
            d.start()
            n.drain(0.8)
            assert len(n.times("READY")) == 1, n.messages
            assert not n.times("WATCHDOG"), "pinged although WATCHDOG_PID is another process"
            d.stop()  # asserts exit 0
            n.drain(0.2)
            assert len(n.times("STOPPING")) == 1, n.messages
        finally:
            n.close()


def test_no_notify_socket_no_messages_and_clean_exit():
    # Without NOTIFY_SOCKET the daemon must still run and stop normally (plain foreground use).
    with klingtest.Klingd() as d:
        assert d.get("/v1/status").status == 200
        d.stop()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
