#!/usr/bin/env python3
"""The systemd units: `systemd-analyze verify` clean, the system unit's exposure
(`systemd-analyze security --offline=true`) at most 1.5, the settings the daemon relies
on present, and the sysusers.d/tmpfiles.d snippets accepted by their tools.

The units are configured here the way cmake/install.cmake does it, but with ExecStart in
the build tree: verify insists that the binary exists. No systemd needs to be running."""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import SYSTEMD_DIR, user_env  # noqa: E402
from klingtest import configure_unit as configure, run_tool as run, systemd_analyze as analyze  # noqa: E402
from klingtest import unit_settings as settings  # noqa: E402

MAX_EXPOSURE = 1.5


def test_system_unit_verifies_clean():
    with tempfile.TemporaryDirectory() as tmp:
        unit = configure("klingd.service.in", tmp, "klingd.service")
        p = run([analyze(), "verify", unit])
        # verify reports problems on stderr and may still exit 0: clean means silent.
        assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), \
            f"systemd-analyze verify: exit {p.returncode}\n{p.stdout}{p.stderr}"


def test_user_unit_verifies_clean():
    with tempfile.TemporaryDirectory() as tmp:
        unit = configure("klingd-user.service.in", tmp, "klingd.service")
        p = run([analyze(), "--user", "verify", unit], env=user_env(tmp))
        assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), \
            f"systemd-analyze --user verify: exit {p.returncode}\n{p.stdout}{p.stderr}"


def test_system_unit_exposure_at_most_1_5():
    with tempfile.TemporaryDirectory() as tmp:
        unit = configure("klingd.service.in", tmp, "klingd.service")
        p = run([analyze(), "security", "--offline=true", "--no-pager", unit])
        m = re.search(r"Overall exposure level for klingd\.service:\s*([0-9.]+)", p.stdout)
        assert m, f"no exposure level in the output (exit {p.returncode}):\n{p.stdout}{p.stderr}"
        exposure = float(m.group(1))
        print(f"exposure {exposure}")
        assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{p.stdout}"


def test_system_unit_keeps_what_the_daemon_needs():
    """Hardening must not take away what klingd uses, and the service contract must stay."""
    with tempfile.TemporaryDirectory() as tmp:
        s = settings(configure("klingd.service.in", tmp, "klingd.service"))

    def one(key):
        assert key in s, f"{key}= missing"
        return s[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") not in ("", "0", "infinity")
    assert one("Restart") == "on-failure"
    assert one("StateDirectory") == "klingd"
    assert one("RuntimeDirectory") == "klingd"
    assert one("RuntimeDirectoryMode") == "0750"
    assert one("User") == "klingd" and one("Group") == "klingd"
    assert one("LoadCredential").startswith("aimlapi_key:/etc/klingd/")
    assert "kill -HUP $MAINPID" in one("ExecReload")
    assert " --config /etc/klingd/klingd.jsonc" in one("ExecStart")
    families = set(one("RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}, families
    # Outbound HTTPS to the provider: no IP allow-list and no private network.
    assert "IPAddressDeny" not in s and "IPAddressAllow" not in s
    assert s.get("PrivateNetwork", ["no"])[-1] in ("no", "false", "0")
    # A writable path outside the state and runtime directories would defeat ProtectSystem=strict.
    assert "ReadWritePaths" not in s
    # The system call filter is an allow-list (no "~" on the first) followed by deny-lists.
    filters = s["SystemCallFilter"]
    assert filters[0] == "@system-service" and all(f.startswith("~") for f in filters[1:]), filters


def test_sysusers_and_tmpfiles_snippets_apply():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "etc"))
        with open(os.path.join(SYSTEMD_DIR, "klingd.sysusers.conf")) as f:
            p = subprocess.run(["systemd-sysusers", f"--root={root}", "-"], input=f.read(),
                               capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        with open(os.path.join(root, "etc", "passwd")) as f:
            passwd = [l.split(":") for l in f if l.startswith("klingd:")]
        with open(os.path.join(root, "etc", "group")) as f:
            group = [l.split(":") for l in f if l.startswith("klingd:")]
        assert passwd and group, "sysusers did not create the klingd user and group"
        assert passwd[0][3] == group[0][2], "klingd's primary group is not the klingd group"
        assert passwd[0][5] == "/var/lib/klingd"
        assert passwd[0][6].strip().endswith("nologin")

        tmpfiles = configure("klingd.tmpfiles.conf.in", os.path.join(root, "conf"), "klingd.conf")
        with open(tmpfiles) as f:
            p = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "-"], input=f.read(),
                               capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        st = os.stat(os.path.join(root, "var", "lib", "klingd"))
        assert oct(st.st_mode & 0o777) == "0o750", oct(st.st_mode)
        assert str(st.st_uid) == passwd[0][2], "state dir not owned by klingd"
        assert os.path.isdir(os.path.join(root, "etc", "klingd"))


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
