#!/usr/bin/env bash
# The persist-store bench (bench.mjs) against the addon as it ships: a release build of
# crates/node packed into its tarballs and installed here, beside the docs' pattern's packages
# (npm ci: resumable-stream, redis, pg, better-sqlite3).
#
#   bash crates/node/bench/run.sh [--quick] [--write]
#
# Needs PostgreSQL ($PERSIST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test) and
# Redis ($REDIS_URL, default redis://127.0.0.1:6379).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
host="$(rustc -vV | sed -n 's/^host: //p')"
(cd "$root" && cargo build --locked --release -p persist-node)
node "$root/crates/node/npm/pack.mjs" --out "$root/target/npm-store-release" \
    --addon "$host=$root/target/release/libpersist_node.so" >/dev/null
cd "$here"
[ -d node_modules/resumable-stream ] || npm ci --no-audit --no-fund
npm install --no-save --offline --no-audit --no-fund --loglevel=error \
    "$root"/target/npm-store-release/persist-store-*.tgz "$root"/target/npm-store-release/platforms/*.tgz
node bench.mjs "$@"
