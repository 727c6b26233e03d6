"""The process and its units (issue 17, item 4; docs/security.md): klingd is not dumpable
(no core file, no ptrace, /proc/<pid>/mem and environ root-owned) unless started with
--allow-core-dumps; both units set LimitCORE=0 and raise LimitNOFILE; the system unit's
exposure (`systemd-analyze security --offline=true`) stays at or below 1.2."""

import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import configure_unit, run_tool, systemd_analyze, unit_settings  # noqa: E402
from klingtest import Klingd  # noqa: E402
from securitytest import wrapped_klingd  # noqa: E402

MAX_EXPOSURE = 1.2


def dumpable_logged(d):
    m = re.search(r"klingd\.process\b.*\bdumpable=(\d)", d.log())
    assert m, f"no klingd.process line in the log:\n{d.log()[-2000:]}"
    return int(m.group(1))


def test_not_dumpable_unless_asked():
    with Klingd() as d:
        # What the kernel says (PR_GET_DUMPABLE after the change), as klingd logs it.
        assert dumpable_logged(d) == 0
        if os.getuid() != 0:
            # Visible from outside, too: a non-dumpable process's /proc files belong to root.
            assert os.stat(f"/proc/{d.proc.pid}/environ").st_uid == 0
        assert d.api_key not in d.log()
    with wrapped_klingd(args=["--allow-core-dumps"]), Klingd() as d:
        assert dumpable_logged(d) == 1


def test_units_set_limits_and_keep_exposure():
    with tempfile.TemporaryDirectory() as tmp:
        for template in ("klingd.service.in", "klingd-user.service.in"):
            s = unit_settings(configure_unit(template, os.path.join(tmp, template), "klingd.service"))
            assert s.get("LimitCORE") == ["0"], (template, s.get("LimitCORE"))
            nofile = s.get("LimitNOFILE", ["0"])[-1]
            assert nofile.isdigit() and int(nofile) >= 4096, (template, nofile)
        unit = configure_unit("klingd.service.in", tmp, "klingd.service")
        p = run_tool([systemd_analyze(), "security", "--offline=true", "--no-pager", unit])
        m = re.search(r"Overall exposure level for klingd\.service:\s*([0-9.]+)", p.stdout)
        assert m, f"no exposure level in the output (exit {p.returncode}):\n{p.stdout}{p.stderr}"
        exposure = float(m.group(1))
        print(f"exposure {exposure}")
        assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{p.stdout}"


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
