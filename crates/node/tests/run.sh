#!/usr/bin/env bash
# persist-store's tests, against the package as a user installs it: the addon ADDON (a library
# cargo built from crates/node) packed with the package's JavaScript into npm tarballs
# (../npm/pack.mjs), installed here from those files, its declarations checked by tsc
# (typecheck.ts), then node:test under Node 22 (*.test.mjs).
#
#   bash crates/node/tests/run.sh [ADDON]    (default: target/debug/libpersist_node.so)
#
# PERSIST_STORE_TESTS_POSTGRES (a postgres:// URL) runs the PostgreSQL halves too; with CI set
# they are required. PERSIST_STORE_OUT: where the tarballs are packed (default target/npm-store).
# Installs the pinned packages (npm ci) when node_modules is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
addon="$(realpath "${1:-$root/target/debug/libpersist_node.so}")"
[ -f "$addon" ] || { echo "run.sh: no addon at $addon (cargo build -p persist-node)" >&2; exit 2; }
out="${PERSIST_STORE_OUT:-$root/target/npm-store}"
host="$(rustc -vV | sed -n 's/^host: //p')"

node "$root/crates/node/npm/pack.mjs" --out "$out" --addon "$host=$addon"
cd "$here"
[ -x node_modules/node/bin/node ] || npm ci --no-audit --no-fund
# --no-save: the lockfile keeps the registry's packages only.
npm install --no-save --offline --no-audit --no-fund --loglevel=error "$out"/persist-store-*.tgz "$out"/platforms/*.tgz
node_modules/.bin/tsc -p tsconfig.json
PERSIST_STORE_TARBALLS="$out" npm test
