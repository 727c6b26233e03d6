#!/bin/sh
# Runs every klingd benchmark (bench/run.py) and prints the table.
#   bench/run.sh [--only submit,scale,download,restart,wal] [--repeat N] [--json FILE]
# When it can (root or unprivileged user namespaces, and iproute2), it re-runs itself in a
# private network namespace with only loopback up: the TCP connect counter (/proc/net/snmp
# ActiveOpens) then counts klingd's connections alone, which is how TLS handshakes per 1,000
# polls are measured, and nothing the benchmark starts can reach or disturb other processes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "${KLINGD_BENCH_NETNS:-}" != 1 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then ns="unshare --net"; else ns="unshare --map-root-user --net"; fi
  if $ns true 2>/dev/null; then
    export KLINGD_BENCH_NETNS=1
    exec $ns sh -c 'ip link set lo up && exec "$0" "$@"' "$here/run.sh" "$@"
  fi
fi
exec python3 "$here/run.py" "$@"
