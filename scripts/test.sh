#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as errors,
# and runs every test (unit, fake provider, integration) through CTest; then, in their own build
# directories, the sanitizer stage (scripts/sanitize.sh) and the fuzzing stage (scripts/fuzz.sh).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit (CTest only, no stages)
#        KLINGD_STAGES=none scripts/test.sh  (CTest only)
#
# The tests mostly wait (on the fake provider's generation times, timeouts, restarts), so the
# sanitizer and fuzzer trees are built beside them at the lowest CPU priority (nice 19): the
# builds take the cores the tests leave idle and yield them at once when a test wants them.
# Each stage prints how long it took (docs/reliability.md, "CI time").
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
stage() { echo "test.sh: $1 took $((SECONDS - $2)) s (total $((SECONDS - t0)) s)"; }
jobs=$(nproc 2>/dev/null || echo 2)
full=0
if (($# == 0)) && [[ "${KLINGD_STAGES:-all}" != none ]]; then
  full=1
fi

t=$SECONDS
scripts/install-deps.sh --test
stage "install-deps" "$t"
t=$SECONDS
scripts/build.sh build -DKLINGD_WERROR=ON
stage "release build" "$t"

# Background builds: the sanitizer tree (it marks when it is done), then the fuzzers', which
# goes on beside the tests under ASan. Their output goes to a log shown only when they fail.
bg=""
bg_log="build/stage-builds.log"
asan_done="build/stage-asan-built"
rm -f "$asan_done"
if ((full)); then
  # setsid: its own process group, so an early exit stops the whole build (trap below).
  setsid bash -c 'nice -n 19 scripts/sanitize.sh --build-only; s=$?; echo $s >"$1"; ((s == 0)) || exit $s
                  exec nice -n 19 scripts/fuzz.sh --build-only' _ "$asan_done" >"$bg_log" 2>&1 &
  bg=$!
fi
trap '[[ -n "$bg" ]] && kill -- "-$bg" 2>/dev/null; true' EXIT
build_failed() {
  echo "test.sh: the $1 build failed:" >&2
  tail -n 80 "$bg_log" >&2
  exit 1
}

t=$SECONDS
status=0
(cd build && ctest --output-on-failure --timeout 900 -j "$jobs" "$@") || status=$?
stage "CTest" "$t"
if ((status != 0)); then
  exit "$status"
fi
# Extra stages only for the full run: with ctest arguments the caller asked for a subset.
if ((full)); then
  t=$SECONDS
  while [[ ! -s "$asan_done" ]]; do
    kill -0 "$bg" 2>/dev/null || [[ -s "$asan_done" ]] || build_failed sanitizer
    sleep 1
  done
  [[ "$(cat "$asan_done")" == 0 ]] || build_failed sanitizer
  stage "waiting for the sanitizer build" "$t"
  t=$SECONDS
  scripts/sanitize.sh
  stage "sanitizer stage" "$t"
  t=$SECONDS
  wait "$bg" || build_failed fuzzer
  bg=""
  stage "waiting for the fuzzer build" "$t"
  t=$SECONDS
  scripts/fuzz.sh
  stage "fuzz stage" "$t"
fi
