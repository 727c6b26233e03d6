#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as errors,
# and runs every test (unit, fake provider, integration) through CTest.
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh build -DKLINGD_WERROR=ON
cd build
jobs=$(nproc 2>/dev/null || echo 2)
ctest --output-on-failure --timeout 900 -j "$jobs" "$@"
