#!/usr/bin/env bash
# The AI SDK live-reply checks (live.test.mjs) against two `persist serve` instances on one
# fresh PostgreSQL schema; the schema is dropped and the servers stopped however the run ends.
#
#   bash crates/serve/clients/ai-sdk/run.sh [PERSIST_BINARY]   (default: target/debug/persist)
#
# Needs PostgreSQL at $PGHOST:$PGPORT (127.0.0.1:5432, user postgres, database test, trust) and
# npm; installs the pinned packages (npm ci) when node_modules is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(realpath "${1:-target/debug/persist}")"
[ -x "$bin" ] || { echo "run.sh: no persist binary at $bin" >&2; exit 2; }

pg_host="${PGHOST:-127.0.0.1}"
pg_port="${PGPORT:-5432}"
pg_db="${PGDATABASE:-test}"
pg_user="${PGUSER:-postgres}"
port_a="${PERSIST_AISDK_PORT_A:-3211}"
port_b="${PERSIST_AISDK_PORT_B:-3212}"
schema="aisdk_live_$$_$(date +%s)"
store="postgres://${pg_user}@${pg_host}:${pg_port}/${pg_db}?schema=${schema}"
logs="$(mktemp -d)"
max_body=$((4 * 1024 * 1024))

psql_() { psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$pg_db" -v ON_ERROR_STOP=1 -qtA "$@"; }

pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql_ -c "DROP SCHEMA IF EXISTS \"${schema}\" CASCADE" >/dev/null 2>&1 || true
    if [ "$status" -ne 0 ]; then
        for log in "$logs"/*.log; do echo "--- $log" >&2; tail -n 40 "$log" >&2; done
    fi
    rm -rf "$logs"
    exit "$status"
}
trap cleanup EXIT INT TERM

export PERSIST_SERVE_KEYS="acme:sk-acme-ci-0123456789abcdef,globex:sk-globex-ci-0123456789abcdef"
for port in "$port_a" "$port_b"; do
    PERSIST_LOG_LEVEL="${PERSIST_LOG_LEVEL:-warn}" \
        "$bin" --url "$store" serve --addr "127.0.0.1:${port}" --max-body-bytes "$max_body" >"$logs/serve-${port}.log" 2>&1 &
    pids+=($!)
done
for port in "$port_a" "$port_b"; do
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && continue 2
        sleep 0.1
    done
    echo "run.sh: persist serve on port ${port} did not come up" >&2
    exit 1
done

cd "$here"
[ -x node_modules/node/bin/node ] || npm ci --no-audit --no-fund

PERSIST_SERVE_A="http://127.0.0.1:${port_a}" \
PERSIST_SERVE_B="http://127.0.0.1:${port_b}" \
PERSIST_SERVE_KEY="sk-acme-ci-0123456789abcdef" \
PERSIST_SERVE_OTHER_KEY="sk-globex-ci-0123456789abcdef" \
PERSIST_SERVE_TENANT="acme" \
PERSIST_SERVE_MAX_BODY_BYTES="$max_body" \
PERSIST_BIN="$bin" \
PERSIST_STORE_URL="$store" \
PERSIST_SERVE_KEYS= \
    npm test
