#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds, starts
# fake-aimlapi (or uses the real AI/ML API when AIMLAPI_KEY is set), starts
# klingd, submits examples/jobs.jsonl with klingctl, shows progress, lists the
# finished MP4s with sizes and checksums, and stops everything cleanly.
# Usage: scripts/demo.sh [jobs.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Only what the demo runs (the tests are built by the test command, into the same tree).
KLINGD_TARGETS="klingd klingctl fake-aimlapi" scripts/build.sh build
exec python3 scripts/demo.py --build build "${1:-examples/jobs.jsonl}"
