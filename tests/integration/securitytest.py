"""Helpers for tests/integration/test_security_*.py (issue 17)."""

import contextlib
import os
import shutil
import stat
import tempfile

import klingtest


@contextlib.contextmanager
def wrapped_klingd(prelude="", args=()):
    """Makes klingtest.Klingd start klingd through a shell wrapper: `prelude` runs first
    (e.g. `ulimit -n 1024`), `args` go before the fixture's own."""
    workdir = tempfile.mkdtemp(prefix="klingd-it-wrap-")
    path = os.path.join(workdir, "klingd")
    quoted = " ".join(f"'{a}'" for a in args)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{prelude}\nexec '{klingtest.klingd_bin()}' {quoted} \"$@\"\n")
    os.chmod(path, stat.S_IRWXU)
    old = os.environ.get("KLINGD_BIN")
    os.environ["KLINGD_BIN"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("KLINGD_BIN", None)
        else:
            os.environ["KLINGD_BIN"] = old
        shutil.rmtree(workdir, ignore_errors=True)
