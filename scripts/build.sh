#!/usr/bin/env bash
# Configures (once) and builds klingd, klingctl, fake-aimlapi and the tests with Ninja.
# Usage: scripts/build.sh [build-dir] [extra cmake args...]
#        KLINGD_TARGETS="klingd klingctl" scripts/build.sh   (only those targets; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
shift || true
if [[ ! -f "$build/build.ninja" ]]; then
  # -g1 (line tables and function names: backtraces, perf, gdb's `bt`) rather than CMake's -g:
  # the heaviest Beast/Asio files compile in about two thirds of the time. For a tree with
  # full debug info configure a tree of your own (docs/reliability.md, "CI time").
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
    "$@" >/dev/null
elif (($# > 0)); then
  cmake "$build" "$@" >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086 # a list of target names
ninja -C "$build" -j "$jobs" ${KLINGD_TARGETS:-}
