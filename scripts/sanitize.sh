#!/usr/bin/env bash
# The sanitizer stage: klingd, klingctl and the unit tests built with ASan+UBSan (GCC,
# -DKLINGD_SANITIZE=ON) in their own build directory; then the unit tests and every integration
# test run against those binaries (the fake provider comes from the normal
# build: it is test equipment, not the code under test). Any sanitizer report fails the stage.
# Usage: scripts/sanitize.sh [integration test names...]   (default: all of tests/integration)
#        scripts/sanitize.sh --build-only   (only the build; scripts/test.sh runs it beside CTest)
#        SANITIZE_BUILD=build-asan  MAIN_BUILD=build (where fake-aimlapi is)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SANITIZE_BUILD:-build-asan}"
main="${MAIN_BUILD:-build}"
# Every integration test (issue 8: "the unit and integration suites also pass under ASan+UBSan");
# about 4 min of tests on 2 cores after an 8-11 min build.
build_only=0
if [[ "${1:-}" == "--build-only" ]]; then
  build_only=1
  shift
fi
subset=()
for f in tests/integration/test_*.py; do subset+=("$(basename "$f" .py)"); done
(($# > 0)) && subset=("$@")

if [[ ! -f "$build/build.ninja" ]]; then
  # -O1 -g1: line tables are all a report needs, and the heaviest files compile in about half
  # the time of -O2 -g (this stage's build was 15 of the CI run's 34 minutes).
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKLINGD_SANITIZE=ON -DKLINGD_WERROR=ON \
    -DKLINGD_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
ninja -C "$build" -j "$jobs" unittest klingd klingctl
((build_only)) && exit 0
[[ -x "$main/tests/fake_provider/fake-aimlapi" ]] || ninja -C "$main" -j "$jobs" fake-aimlapi

build="$(realpath "$build")" main="$(realpath "$main")"
reports="$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
# log_path: reports of the daemons the tests start land here, whatever the test prints.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export KLINGD_BIN="$build/daemon/klingd" KLINGCTL_BIN="$build/cli/klingctl"
export FAKE_AIMLAPI_BIN="$main/tests/fake_provider/fake-aimlapi" KLINGD_SOURCE_DIR="$PWD"
# For the few checks that are about the release build (the Docker image's libraries) or that
# ASan itself would distort (peak memory).
export KLINGD_RELEASE_BUILD="$main" KLINGD_SANITIZED=1

status=0
echo "sanitize: unit tests"
(cd tests && "$build/tests/unittest" --no-version) || status=1
pids=()
for t in "${subset[@]}"; do
  # Two at a time, like ctest -j2; each test's output goes to a file shown on failure.
  ( python3 "tests/integration/$t.py" >"$reports/$t.out" 2>&1 && echo "sanitize: ok   $t" ||
    { echo "sanitize: FAIL $t"; tail -n 60 "$reports/$t.out"; exit 1; } ) &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
if compgen -G "$reports/[au][sb]san.*" >/dev/null; then
  echo "sanitize: sanitizer reports:"
  cat "$reports"/[au][sb]san.*
  status=1
fi
exit "$status"
