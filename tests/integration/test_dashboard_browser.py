"""Dashboard in a real browser (issue 11): runs klingd + fake-aimlapi, then
tests/browser/dashboard.test.mjs drives Debian's headless chromium through playwright-core
(token/401, a klingctl batch going live to completed, a video that plays, retry of a failed
job, bulk retry of a batch after its dry-run count, a screenshot in $KLINGD_TEST_OUT). `npm ci` fills tests/browser/node_modules when it
is missing; no browser is downloaded (/usr/bin/chromium, scripts/install-deps.sh --test)."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402

BROWSER_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def ensure_node_modules():
    if os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return
    # playwright-core has no install script: this fetches the library only, never a browser.
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True, env=env, timeout=300)


def test_dashboard_in_chromium():
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is missing (scripts/install-deps.sh --test)"
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/install-deps.sh --test)"
    ensure_node_modules()
    out = os.environ.get("KLINGD_TEST_OUT") or tempfile.mkdtemp(prefix="klingd-test-out-")
    os.makedirs(out, exist_ok=True)
    with Klingd(config_overrides={"dashboard": {"listen": "127.0.0.1:0"}}) as d:
        url = d.ctl("dashboard", check=0).stdout.strip()
        env = dict(os.environ, DASHBOARD_URL=url, KLINGCTL_BIN=klingtest.klingctl_bin(), KLINGD_SOCKET=d.socket_path,
                   FAKE_URL=d.fake.base_url, KLINGD_TEST_OUT=out, CHROMIUM=CHROMIUM)
        p = subprocess.run(["node", os.path.join(BROWSER_DIR, "dashboard.test.mjs")], cwd=BROWSER_DIR, env=env,
                           capture_output=True, text=True, timeout=300)
        print(p.stdout)
        # stderr (the failed check) first: CI shows only the head of a long failure.
        assert p.returncode == 0, f"dashboard.test.mjs exited {p.returncode}\n{p.stderr[-4000:]}\n{p.stdout[-4000:]}"
        assert os.path.getsize(os.path.join(out, "dashboard.png")) > 10000


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
