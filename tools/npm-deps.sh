#!/bin/sh
# tools/npm-deps.sh - install the Node packages of the interop tests and the
# benchmarks into test/node/node_modules, only when they are missing or
# test/node/package.json changed since the last install.
set -u
cd "$(dirname "$0")/../test/node" || exit 1

if ! command -v npm >/dev/null 2>&1; then
    echo "npm-deps: npm not found (run tools/deps.sh)" >&2
    exit 1
fi

stamp=node_modules/.bayeux-installed
if [ -d node_modules ] && [ -f "$stamp" ] && [ -z "$(find package.json -newer "$stamp")" ]; then
    exit 0
fi

echo "npm-deps: npm install in test/node"
npm install --no-audit --no-fund || exit 1
touch "$stamp"
