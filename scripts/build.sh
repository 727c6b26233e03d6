#!/usr/bin/env bash
# Configures (once) and builds klingd, klingctl, fake-aimlapi and the tests with Ninja.
# Usage: scripts/build.sh [build-dir] [extra cmake args...]
#        KLINGD_TARGETS="klingd klingctl" scripts/build.sh   (only those targets; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
shift || true
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
elif (($# > 0)); then
  cmake "$build" "$@" >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086 # a list of target names
ninja -C "$build" -j "$jobs" ${KLINGD_TARGETS:-}
