#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan+UBSan) in their own build directory and
# runs each for a fixed number of iterations on its committed corpus (seconds: the CI stage).
# Usage: scripts/fuzz.sh [runs per target]          (default 200000; FUZZ_BUILD=build-fuzz)
#        scripts/fuzz.sh --long SECONDS [target...]  (a longer local run; see docs/reliability.md)
#        scripts/fuzz.sh --build-only                (only the build; scripts/test.sh runs it early)
# Crashes are written to $FUZZ_BUILD/artifacts; add a minimised reproducer to the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${FUZZ_BUILD:-build-fuzz}"
targets=(fuzz_submit_body fuzz_provider_response)
if [[ ! -f "$build/build.ninja" ]]; then
  # -g1: line tables are all a crash report needs (as in the sanitizer tree).
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" -DKLINGD_FUZZ=ON -DKLINGD_BUILD_TESTS=OFF -DKLINGD_BUILD_BENCH=OFF >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
ninja -C "$build" -j "$jobs" "${targets[@]}"
[[ "${1:-}" == "--build-only" ]] && exit 0

mkdir -p "$build/artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ "${1:-}" == "--long" ]]; then
  seconds="${2:?--long SECONDS}"
  shift 2
  (($# > 0)) && targets=("$@")
  for t in "${targets[@]}"; do
    # New inputs go to a scratch corpus next to the build; merge the interesting ones back
    # with: $build/tests/fuzz/$t -merge=1 tests/fuzz/corpus/${t#fuzz_} $build/corpus-$t
    mkdir -p "$build/corpus-$t"
    "$build/tests/fuzz/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/artifacts/" "$build/corpus-$t" "tests/fuzz/corpus/${t#fuzz_}"
  done
  exit 0
fi
runs="${1:-200000}"
for t in "${targets[@]}"; do
  # A fixed seed and run count: the CI stage is repeatable and takes seconds.
  "$build/tests/fuzz/$t" -runs="$runs" -seed=1 -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/artifacts/" "tests/fuzz/corpus/${t#fuzz_}" 2>&1 | tail -n 3
done
