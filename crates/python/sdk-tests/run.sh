#!/usr/bin/env bash
# Runs the OpenAI Agents SDK's own session tests, unmodified, against persist: the SDK's
# SQLiteSession is persist's PersistSession (the pytest plugin persist_as_sqlite.py).
#
#   run.sh PYTHON [--real] [PYTEST_ARGS...]
#
# PYTHON: the interpreter of a venv with the persist wheel and ../requirements-test.txt installed
# (this installs ./requirements.txt into it). --real: the SDK's own SQLiteSession, nothing
# deselected (proves the harness). The SDK's sdist, at the version ../requirements-test.txt pins,
# is downloaded once into target/agents-sdist/ and its tests/ extracted afresh on every run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
py=${1:?usage: run.sh PYTHON [--real] [PYTEST_ARGS...]}
shift
# A relative path, as given from where it was called (the tests run from the sdist's folder).
if [[ $py == */* && $py != /* ]]; then
    py=$PWD/$py
fi
real=0
if [[ ${1:-} == --real ]]; then
    real=1
    shift
fi

files=(
    tests/memory/test_session.py
    tests/memory/test_session_limit.py
    tests/extensions/memory/test_encrypt_session.py
)

version=$(sed -n 's/^openai-agents==\([^[:space:]#;]*\).*/\1/p' "$repo/crates/python/requirements-test.txt")
if [[ -z $version ]]; then
    echo "run.sh: no openai-agents==VERSION in crates/python/requirements-test.txt" >&2
    exit 1
fi
installed=$("$py" -c 'import importlib.metadata as m; print(m.version("openai-agents"))')
if [[ $installed != "$version" ]]; then
    echo "run.sh: $py has openai-agents $installed, the tests are $version's" >&2
    exit 1
fi

sdists=$repo/target/agents-sdist
sdist=$sdists/openai_agents-$version.tar.gz
if [[ ! -f $sdist ]]; then
    mkdir -p "$sdists"
    "$py" -m pip download --no-binary :all: --no-deps "openai-agents==$version" -d "$sdists"
fi
# The sdist's top directory is openai_agents-VERSION; only tests/ and pyproject.toml (pytest's
# configuration: asyncio mode, loop scope) are extracted, not src/ (the installed agents is used).
work=$sdists/openai_agents-$version
rm -rf "$work"
tar -xzf "$sdist" -C "$sdists" "openai_agents-$version/tests" "openai_agents-$version/pyproject.toml"

"$py" -m pip install -q -r "$here/requirements.txt"

args=(-p no:cacheprovider)
if ((real)); then
    echo "run.sh: the SDK's own SQLiteSession (--real), nothing deselected"
else
    args+=(-p persist_as_sqlite)
    while read -r node; do
        if [[ -n $node ]]; then
            args+=(--deselect "$node")
        fi
    done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$here/deselected.txt")
fi

cd "$work"
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}
exec "$py" -m pytest "${args[@]}" "${files[@]}" "$@"
