#!/usr/bin/env bash
# The Dockerfile's build steps as a plain script: the Dockerfile runs exactly this, and CI
# runs it too (tests/integration/test_service_docker_steps.py), since no Docker engine runs
# there. Configures a release build for prefix /usr, builds klingd and klingctl, installs
# into DESTDIR, and smoke-tests the installed binaries.
#
# Usage: scripts/docker-build-steps.sh [--reuse-build] SRC BUILD DESTDIR
#   --reuse-build  BUILD is an existing, built tree (e.g. the test build): skip configure
#                  and build, only install from it with --prefix /usr.
# Environment: JOBS (default: nproc).
set -euo pipefail

reuse=0
if [[ "${1:-}" == "--reuse-build" ]]; then
  reuse=1
  shift
fi
if (($# != 3)); then
  echo "usage: $0 [--reuse-build] SRC BUILD DESTDIR" >&2
  exit 2
fi
src=$(realpath "$1")
build=$(realpath -m "$2")
destdir=$(realpath -m "$3")
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

if ((reuse == 0)); then
  # Tests, the fake provider and the benchmarks are not part of the image.
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
    -DKLINGD_BUILD_TESTS=OFF -DKLINGD_BUILD_BENCH=OFF
  ninja -C "$build" -j "$jobs" klingd klingctl
fi

rm -rf "$destdir"
# --prefix /usr whatever the build was configured with: the units are configured at install
# time (cmake/install_units.cmake), so they name /usr/bin/klingd and /etc/klingd.
DESTDIR="$destdir" cmake --install "$build" --prefix /usr --strip >/dev/null

# The image's own settings: where the state volume, socket and secrets are.
install -d -m 0755 "$destdir/etc/klingd"
install -d -m 0750 "$destdir/var/lib/klingd" "$destdir/run/klingd"

# Smoke test: the installed binaries run, and the installed config is valid as the
# container will see it.
"$destdir/usr/bin/klingd" --version
"$destdir/usr/bin/klingctl" --help >/dev/null
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
env -i PATH=/usr/bin:/bin HOME="$smoke" STATE_DIRECTORY="$smoke/state" \
  KLINGD_SOCKET="$smoke/klingd.sock" CREDENTIALS_DIRECTORY=/nonexistent \
  "$destdir/usr/bin/klingd" --config "$destdir/etc/klingd/klingd.jsonc" --check-config >/dev/null
echo "docker-build-steps: installed into $destdir"
