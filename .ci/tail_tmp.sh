#!/usr/bin/env bash
# The project's CI: formatting, lints, then the README's test command, then the examples.
# Runs on a fresh clone with CI=true; installs or starts whatever the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

export PERSIST_POSTGRES_URL="${PERSIST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
step "benchmark smoke run (--quick, no thresholds)"
cargo run -p persist-bench -- --quick

step "examples"
# The main job, twice on one file: the second run continues the conversation.
export PERSIST_QUICKSTART_DB="$(mktemp -d)/persist-quickstart.db"
cargo run --example quickstart
cargo run --example quickstart
for example in custom_layer audit_log indexer route_by_prefix read_only agent_loop agent_turns encrypted lifecycle branches compaction; do
    cargo run --example "$example"
done

step "GenAI spans over OTLP/HTTP (examples/otel_export.rs): without a collector, then to a stand-in one"
# Without a collector the example runs to its end and says so; with one, every span arrives.
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4390 cargo run -p persist-example-otel --example otel_export | tee /tmp/otel-none.txt
grep -q "no collector took the spans" /tmp/otel-none.txt
otlp_report="$(mktemp)"
python3 examples/otel/receiver.py "$otlp_report" 4391 & otlp=$!
listening() { for _ in $(seq 1 300); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
listening 4391
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4391 cargo run -p persist-example-otel --example otel_export | tee /tmp/otel-sent.txt
kill "$otlp"; wait "$otlp" || true
grep -q "spans exported to" /tmp/otel-sent.txt
grep -q "paths=\['/v1/traces'\]" "$otlp_report"

step "the Vercel AI SDK's own client against two instances of the SSE server (examples/node)"
# Two instances of the example server sharing one PostgreSQL schema; the `ai` package from
# the npm registry follows, resumes and stops replies through them.
cargo build -p persist-example-server --example sse_server
(cd examples/node && npm ci --no-audit --no-fund)
sse_schema="persist_sse_ci_$$"
sse_url="${PERSIST_POSTGRES_URL}?schema=${sse_schema}"
PERSIST_URL="$sse_url" PERSIST_ADDR=127.0.0.1:3101 target/debug/examples/sse_server & sse_a=$!
trap 'kill "$sse_a" "${sse_b:-}" 2>/dev/null || true' EXIT
listening 3101
PERSIST_URL="$sse_url" PERSIST_ADDR=127.0.0.1:3102 target/debug/examples/sse_server & sse_b=$!
listening 3102
(cd examples/node && PERSIST_SERVER_A=http://127.0.0.1:3101 PERSIST_SERVER_B=http://127.0.0.1:3102 npm test)
kill "$sse_a" "$sse_b"
psql "$PERSIST_POSTGRES_URL" -qc "DROP SCHEMA IF EXISTS \"$sse_schema\" CASCADE"
