#!/usr/bin/env python3
"""The Docker image, checked without a Docker engine: scripts/docker-build-steps.sh (the
Dockerfile's build stage runs exactly it) installs from the test build tree into a DESTDIR,
and the tree it leaves is what the runtime stage copies: binaries, units, config, catalog.
The Dockerfile is linted for the structure issue 7 asks for, and its runtime package list
is checked against what the installed binaries actually link.

A fresh configure + build as in `docker build` takes too long on two cores for every run:
set KLINGD_DOCKER_FRESH_BUILD=1 to do that as well."""

import filecmp
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402

SRC = os.path.abspath(os.environ.get("KLINGD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))
SCRIPT = os.path.join(SRC, "scripts", "docker-build-steps.sh")
# In debian:bookworm-slim already (apt itself needs them).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def build_dir():
    # The image is built without sanitizers: under scripts/sanitize.sh, whose KLINGD_BIN is an
    # ASan build (linking libasan), the release tree is named by KLINGD_RELEASE_BUILD.
    d = os.environ.get("KLINGD_RELEASE_BUILD") or \
        os.path.dirname(os.path.dirname(os.path.abspath(klingtest.klingd_bin())))
    assert os.path.exists(os.path.join(d, "CMakeCache.txt")), f"{d} is not a CMake build tree"
    return d


def run_steps(dest, reuse=True, build=None, timeout=120):
    cmd = [SCRIPT] + (["--reuse-build"] if reuse else []) + [SRC, build or build_dir(), dest]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, JOBS="2"))
    assert p.returncode == 0, f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def dockerfile():
    """Instructions as (stage index, KEYWORD, arguments), continuation lines joined."""
    with open(os.path.join(SRC, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    stage = -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, " ".join(rest.split())))
    return out


def check_tree(dest, check_units=True):
    def p(*parts):
        return os.path.join(dest, *parts)

    for b in ("klingd", "klingctl"):
        assert os.access(p("usr", "bin", b), os.X_OK), f"/usr/bin/{b} missing or not executable"
    assert filecmp.cmp(p("etc", "klingd", "klingd.jsonc"), os.path.join(SRC, "config", "klingd.jsonc"), shallow=False)
    assert filecmp.cmp(p("usr", "share", "doc", "klingd", "klingd.jsonc"), os.path.join(SRC, "config", "klingd.jsonc"),
                       shallow=False)
    assert filecmp.cmp(p("usr", "share", "klingd", "models.json"), os.path.join(SRC, "config", "models.json"),
                       shallow=False)
    assert os.path.isfile(p("usr", "lib", "sysusers.d", "klingd.conf"))
    with open(p("usr", "lib", "tmpfiles.d", "klingd.conf")) as f:
        assert "d /etc/klingd " in f.read()
    for d in (("var", "lib", "klingd"), ("run", "klingd")):
        assert os.path.isdir(p(*d)), "/" + "/".join(d)
    if check_units:
        unit = p("usr", "lib", "systemd", "system", "klingd.service")
        with open(unit) as f:
            text = f.read()
        assert "\nExecStart=/usr/bin/klingd --config /etc/klingd/klingd.jsonc\n" in text, text
        assert "\nLoadCredential=aimlapi_key:/etc/klingd/aimlapi_key\n" in text
        assert not re.search(r"@[A-Z_]+@", text), "unconfigured placeholder"
        with open(p("usr", "lib", "systemd", "user", "klingd.service")) as f:
            assert "\nExecStart=/usr/bin/klingd --config %E/klingd/klingd.jsonc\n" in f.read()
        assert shutil.which("systemd-analyze"), "systemd-analyze is missing (scripts/install-deps.sh --test installs systemd)"
        s = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for klingd\.service:\s*([0-9.]+)", s.stdout)
        assert m and float(m.group(1)) <= 1.5, s.stdout + s.stderr


def test_build_steps_install_the_image_tree():
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "staging")
        p = run_steps(dest)
        assert re.search(r"^klingd \S+", p.stdout, re.M), p.stdout
        check_tree(dest)
        # The installed binaries run with the libraries of the system, not of the build tree.
        out = subprocess.run([os.path.join(dest, "usr", "bin", "klingd"), "--version"], capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and out.stdout.startswith("klingd "), out


def test_runtime_stage_has_every_linked_library():
    stages = dockerfile()
    runtime = [args for stage, word, args in stages if stage == 1 and word == "RUN" and "apt-get install" in args]
    assert runtime, "runtime stage installs no packages"
    listed = set(re.findall(r"(?<![-\w])([a-z0-9][a-z0-9.+-]+[0-9])(?![-\w])", runtime[0].split("apt-get install", 1)[1]))
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "staging")
        run_steps(dest)
        libs = set()
        for b in ("klingd", "klingctl"):
            ldd = subprocess.run(["ldd", os.path.join(dest, "usr", "bin", b)], capture_output=True, text=True, check=True)
            assert "not found" not in ldd.stdout, ldd.stdout
            libs |= {os.path.realpath(lib) for lib in re.findall(r"=> (/\S+)", ldd.stdout)}
    # One dpkg -S for all (it is slow). Merged /usr: dpkg knows a library under /lib or
    # /usr/lib depending on its package, so ask for both spellings.
    def spellings(path):
        return {path, re.sub(r"^/usr/lib/", "/lib/", path)}

    query = sorted(set().union(*(spellings(l) for l in libs)))
    owners = subprocess.run(["dpkg", "-S", *query], capture_output=True, text=True)
    found = {}
    for line in owners.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        found[path] = pkgs.split(":")[0]
    unowned = [l for l in libs if not spellings(l) & set(found)]
    assert not unowned, f"no package owns {unowned}"
    needed = set(found.values())
    missing = needed - listed - BASE_PACKAGES
    assert not missing, f"the runtime stage does not install {sorted(missing)} (it lists {sorted(listed)})"


def test_dockerfile_structure():
    ins = dockerfile()
    froms = [(s, a) for s, w, a in ins if w == "FROM"]
    assert [a.split()[0] for _, a in froms] == ["debian:bookworm-slim", "debian:bookworm-slim"], froms
    assert froms[0][1].lower().endswith(" as build"), froms[0]
    build = " ".join(a for s, w, a in ins if s == 0 and w == "RUN")
    # The image is built by the same script CI runs, with the same package list.
    assert "scripts/install-deps.sh" in build and "scripts/docker-build-steps.sh" in build, build
    final = [(w, a) for s, w, a in ins if s == 1]

    def last(word):
        values = [a for w, a in final if w == word]
        assert values, f"no {word} in the runtime stage"
        return values[-1]

    user = last("USER").split(":")[0]
    assert user not in ("root", "0"), user
    volumes = last("VOLUME")
    assert "/var/lib/klingd" in volumes and "/run/klingd" in volumes, volumes
    assert last("STOPSIGNAL") == "SIGTERM"
    health = last("HEALTHCHECK")
    assert re.search(r'CMD \["klingctl", "status"\]|CMD klingctl status', health), health
    env = " ".join(a for w, a in final if w == "ENV")
    assert "KLINGD_SOCKET=/run/klingd/klingd.sock" in env, env
    assert "STATE_DIRECTORY=/var/lib/klingd" in env, env
    assert "CREDENTIALS_DIRECTORY=/run/secrets" in env, env
    assert any(w == "COPY" and a.startswith("--from=build /staging/ /") for w, a in final)
    assert last("ENTRYPOINT").startswith('["klingd"'), last("ENTRYPOINT")
    # USER comes after everything that needs root.
    words = [w for w, _ in final]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))


def test_dockerignore_keeps_what_the_build_needs():
    with open(os.path.join(SRC, ".dockerignore")) as f:
        patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        cmake = f.read()
    needed = set(re.findall(r"add_subdirectory\((\w+)\)", cmake)) | {"CMakeLists.txt", "cmake", "config", "migrations",
                                                                   "scripts", "systemd"}
    for n in sorted(needed):
        assert os.path.exists(os.path.join(SRC, n)), n
        hit = [pat for pat in patterns if fnmatch.fnmatch(n, pat.rstrip("/"))]
        assert not hit, f".dockerignore {hit} drops {n}, which the build needs"
    assert ".git" in patterns and any(fnmatch.fnmatch("build-svc", p) for p in patterns)


def test_fresh_build_when_asked():
    if os.environ.get("KLINGD_DOCKER_FRESH_BUILD") != "1":
        print("skipped (set KLINGD_DOCKER_FRESH_BUILD=1)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "staging")
        run_steps(dest, reuse=False, build=os.path.join(tmp, "build"), timeout=3600)
        check_tree(dest)


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
