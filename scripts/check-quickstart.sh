#!/usr/bin/env bash
# The README's quick start as a newcomer runs it, after `npm ci`: `npm start`
# founds a cluster and prints the join command; a second `npm start` restarts
# the same cluster. A random loopback port and a scratch data dir keep it
# from touching the machine. Then the examples CI promises to run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/muster-quickstart-XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill -- "-$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export MUSTER_DATA_DIR="$work/data" MUSTER_LISTEN_ADDR=127.0.0.1:0

# Ctrl-C signals the whole foreground process group; do the same (npm, sh, node).
stop_and_check() {
  kill -INT -- "-$pid"
  wait "$pid" || true
  pid=""
  for _ in $(seq 1 50); do grep -q 'shutting down' "$work/start.log" && return 0; sleep 0.1; done
  echo "muster did not shut down cleanly:" >&2; cat "$work/start.log" >&2; return 1
}

start_and_wait() {
  setsid npm start --silent >"$work/start.out" 2>"$work/start.log" &
  pid=$!
  for _ in $(seq 1 200); do
    if grep -q 'muster join --token SWMTKN-1-' "$work/start.out"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "npm start did not print the join command:" >&2
  cat "$work/start.out" "$work/start.log" >&2
  return 1
}

echo "== npm start (first run: founds a cluster)"
start_and_wait
cat "$work/start.out"
grep -q '^Cluster initialized: current node' "$work/start.out"
stop_and_check
echo "== npm start (second run: restarts it)"
start_and_wait
grep -q '^Cluster restarted: current node' "$work/start.out"
stop_and_check
echo "quick start OK"

echo "== examples/local-cluster.sh"
bash examples/local-cluster.sh
echo "== examples/walkthrough.sh"
bash examples/walkthrough.sh
