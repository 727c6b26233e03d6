#!/usr/bin/env python3
"""scripts/check-includes.py against temporary trees that use the real rules
(docs/include-layers.txt): it passes a tree that obeys them and fails, naming the file
and the include, on an upward include, on a forbidden system include and on rules with
a cycle."""
import pathlib
import shutil
import subprocess
import sys
import tempfile

SOURCE = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = SOURCE / "scripts" / "check-includes.py"
RULES = SOURCE / "docs" / "include-layers.txt"


def tree(files, rules=None):
    root = pathlib.Path(tempfile.mkdtemp(prefix="check-includes-"))
    (root / "docs").mkdir()
    if rules is None:
        shutil.copy(RULES, root / "docs" / "include-layers.txt")
    else:
        (root / "docs" / "include-layers.txt").write_text(rules)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def run(root):
    p = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True)
    shutil.rmtree(root)
    return p.returncode, p.stdout + p.stderr


GOOD = {
    "common/job.hpp": "#pragma once\n#include <string>\n",
    "daemon/api/router.hpp": '#include "daemon/api/http.hpp"\n#include "daemon/engine/engine.hpp"\n',
    "daemon/dashboard/routes.cpp": '#include "daemon/api/router.hpp"\n#include "common/job.hpp"\n',
    "daemon/engine/core.hpp": '#include "daemon/metrics/metrics.hpp"\n#include "daemon/store/job_store.hpp"\n',
    "daemon/daemon.cpp": '#include "daemon/dashboard/routes.hpp"\n#include "daemon/engine/core.hpp"\n',
}

failures = []


def expect(name, files, rc, needles=(), rules=None):
    got, out = run(tree(files, rules))
    if got != rc or any(n not in out for n in needles):
        failures.append(f"{name}: exit {got} (want {rc}), output:\n{out}")


expect("a tree that obeys the table", GOOD, 0)
expect("the api including the dashboard", {**GOOD, "daemon/api/api_server.cpp": '#include "daemon/dashboard/routes.hpp"\n'},
       1, ['daemon/api/api_server.cpp:1: includes "daemon/dashboard/routes.hpp"'])
expect("the engine including daemon/ above it", {**GOOD, "daemon/engine/x.cpp": '\n#include "daemon/event_loop.hpp"\n'},
       1, ['daemon/engine/x.cpp:2: includes "daemon/event_loop.hpp"'])
expect("the api including an engine header other than engine.hpp",
       {**GOOD, "daemon/api/h.cpp": '#include "daemon/engine/core.hpp"\n'}, 1, ['daemon/api/h.cpp:1'])
expect("common including Asio", {**GOOD, "common/t.cpp": "#include <boost/asio/post.hpp>\n"}, 1,
       ["common/t.cpp:1: includes <boost/asio/post.hpp>"])
expect("rules with a cycle", {"a/x.cpp": "", "b/y.cpp": ""}, 1, ["cycle: a -> b -> a"], rules="a: b\nb: a\n")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("check-includes: passes the good tree, fails each bad one")
