#!/usr/bin/env bash
# Runs schemathesis against a running `persist serve` and the OpenAPI document it serves
# (GET /v1/persist/openapi.json): every check, the examples, coverage, fuzzing and stateful
# phases, a fixed seed and a bounded budget. Exits non-zero on any failure (schemathesis' own
# exit code), so a CI step fails with it.
#
#   run.sh BASE_URL API_KEY PYTHON [PEER_API_KEY]
#
#   BASE_URL      the server, e.g. http://127.0.0.1:3301 (no /v1)
#   API_KEY       a key of $PERSIST_SERVE_KEYS (its tenant is the one tested)
#   PYTHON        the python of a venv with requirements.txt installed
#   PEER_API_KEY  optional: a key of another tenant. With it, object_level_authorization runs:
#                 what the first tenant reads is asked for again as this one, which must not
#                 get it. Without it that check has no second caller and finds nothing.
#
# The server is started by the caller, on a store of its own (the run writes hundreds of
# conversations), e.g.
#
#   PERSIST_SERVE_KEYS="acme:KEY1,globex:KEY2" persist --url sqlite:/tmp/st/serve.db \
#       serve --addr 127.0.0.1:3301 [--embeddings-url http://127.0.0.1:3399]
#
# Without --embeddings-url, POST /v1/persist/recall answers every request 400
# (recall_unavailable); fake_embedder.py beside this file is a loopback embeddings endpoint
# for a run that tests recall too (`python3 fake_embedder.py --port 3399`, no network).
#
# Reports (JUnit XML, and a HAR of every request with the keys filtered out) go to
# $ST_REPORT_DIR, default ./schemathesis-report.
set -euo pipefail

if [[ $# -lt 3 || $# -gt 4 ]]; then
    echo "usage: $0 BASE_URL API_KEY PYTHON [PEER_API_KEY]" >&2
    exit 2
fi
base_url=${1%/}
api_key=$2
python=$3
peer_key=${4:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
report_dir=${ST_REPORT_DIR:-schemathesis-report}

# The version the seed's cases were settled with (requirements.txt).
want=$(sed -n 's/^schemathesis==//p' "$here/requirements.txt")
have=$("$python" -c 'from importlib.metadata import version; print(version("schemathesis"))')
if [[ "$have" != "$want" ]]; then
    echo "$python has schemathesis $have; requirements.txt pins $want" >&2
    exit 2
fi

# The keys go in a Web Fuzzing Commons auth file, readable only by this user and removed on
# exit, not on a command line the process list shows.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
"$python" - "$work/auth.json" "$api_key" "$peer_key" <<'EOF'
import json, sys
path, key, peer = sys.argv[1:4]
users = [("owner", key)] + ([("peer", peer)] if peer else [])
auth = [{"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {k}"}]} for name, k in users]
with open(path, "w") as file:
    json.dump({"auth": auth}, file)
EOF
chmod 600 "$work/auth.json"
{
    cat "$here/schemathesis.toml"
    echo
    echo '[auth.wfc]'
    echo "path = \"$work/auth.json\""
    echo 'user = "owner"'
    if [[ -n "$peer_key" ]]; then
        echo 'peers = ["owner", "peer"]'
    fi
} >"$work/schemathesis.toml"

status=0
"$python" -c 'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis(prog_name="st"))' \
    --config-file "$work/schemathesis.toml" \
    run "$base_url/v1/persist/openapi.json" \
    --url "$base_url" \
    --wait-for-schema 30 \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples 50 \
    --seed 1 \
    --workers 1 \
    --request-timeout 10 \
    --continue-on-failure \
    --report junit,har \
    --report-dir "$report_dir" \
    --no-color || status=$?
exit "$status"
