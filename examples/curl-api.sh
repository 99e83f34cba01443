#!/usr/bin/env bash
# Calls the manager's API with curl and an API-user certificate (the Flocker
# model: the certificate is the identity).
#
#   examples/curl-api.sh MANAGER_DATA_DIR [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${1:?usage: examples/curl-api.sh MANAGER_DATA_DIR [OUT_DIR]}
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/muster-api-user-XXXXXX")}
addr=$(node -e "console.log(JSON.parse(require('fs').readFileSync(process.argv[1],'utf8')).servingAddr)" "$data_dir/node.json")

node dist/cli/main.js ca create-api-certificate alice --out "$out" --data-dir "$data_dir"
tls=(--cacert "$out/ca.pem" --cert "$out/cert.pem" --key "$out/key.pem")

echo "== GET /v1/nodes"
curl -sS "${tls[@]}" "https://$addr/v1/nodes"; echo
echo "== GET /v1/cluster"
curl -sS "${tls[@]}" "https://$addr/v1/cluster"; echo
echo "== PATCH /v1/cluster (cert expiry 720h)"
curl -sS "${tls[@]}" -X PATCH -H 'content-type: application/json' -d '{"certExpiry":"720h"}' "https://$addr/v1/cluster"; echo
echo "== without a client certificate: 401"
curl -sS --cacert "$out/ca.pem" "https://$addr/v1/nodes"; echo
