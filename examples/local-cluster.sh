#!/usr/bin/env bash
# One manager and two workers on loopback, each with its own data dir; checks
# that all three certificates verify against the root, then tears down.
#
#   examples/local-cluster.sh            (after npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/lib.sh local

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
