#!/usr/bin/env bash
# One manager and two workers on loopback, each with its own data dir; checks
# that all three certificates verify against the root, then tears down.
#
#   examples/local-cluster.sh            (after npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
# An array, not a function: a backgrounded function would give $! of a subshell.
muster=(node dist/cli/main.js)

work=$(mktemp -d "${TMPDIR:-/tmp}/muster-local-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE PATTERN: until the pattern shows up in a log (20 s at most)
wait_for() {
  for _ in $(seq 1 200); do
    if grep -qE "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

echo "== founding a cluster in $work/manager"
"${muster[@]}" init --data-dir "$work/manager" --listen-addr 127.0.0.1:0 >"$work/manager.log" 2>&1 &
pids+=($!)
wait_for "$work/manager.log" 'muster join --token'
join_line=$(grep -m1 'muster join --token' "$work/manager.log")
token=$(awk '{print $4}' <<<"$join_line")
addr=$(awk '{print $5}' <<<"$join_line")
echo "manager at $addr"

for n in 1 2; do
  echo "== joining worker $n"
  "${muster[@]}" join --token "$token" "$addr" --data-dir "$work/worker$n" >"$work/worker$n.log" 2>&1 &
  pids+=($!)
  wait_for "$work/worker$n.log" 'This node joined cluster'
done

echo "== nodes"
"${muster[@]}" node ls --data-dir "$work/manager"

echo "== verifying certificates with openssl"
for d in manager worker1 worker2; do
  openssl verify -CAfile "$work/$d/certificates/root-ca.crt" "$work/$d/certificates/node.crt"
  openssl x509 -in "$work/$d/certificates/node.crt" -noout -subject
done
echo "== all three certificates verify; tearing down"
