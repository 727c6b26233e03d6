#!/usr/bin/env bash
# Installs the Debian (bookworm) packages klingd needs to build and test, if
# any are missing. Idempotent: does nothing (and needs no network) when all are there.
# Usage: scripts/install-deps.sh [--test]   (--test adds what the test suite uses)
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsqlite3-dev libfmt-dev libcli11-dev prometheus-cpp-dev doctest-dev
  openssl ca-certificates python3 sqlite3 curl)
if [[ "${1:-}" == "--test" ]]; then
  # clang + its compiler-rt: the libFuzzer targets (scripts/fuzz.sh).
  packages+=(prometheus ffmpeg systemd clang libclang-rt-14-dev chromium)
  # The dashboard's browser test needs node and npm. Machines that already have them
  # from elsewhere (not dpkg) keep them: Debian's npm package conflicts with those.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
