#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as errors,
# and runs every test (unit, fake provider, integration) through CTest; then, in their own build
# directories, the sanitizer stage (scripts/sanitize.sh) and the fuzzing stage (scripts/fuzz.sh).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit (CTest only, no stages)
#        KLINGD_STAGES=none scripts/test.sh  (CTest only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh build -DKLINGD_WERROR=ON
jobs=$(nproc 2>/dev/null || echo 2)
(cd build && ctest --output-on-failure --timeout 900 -j "$jobs" "$@")
# Extra stages only for the full run: with ctest arguments the caller asked for a subset.
if (($# == 0)) && [[ "${KLINGD_STAGES:-all}" != none ]]; then
  scripts/sanitize.sh
  scripts/fuzz.sh
fi
