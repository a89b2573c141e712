"""LangGraph's own conformance suite for checkpointers (`langgraph-checkpoint-conformance`),
unmodified, against `persist.langgraph.PersistSaver` on a SQLite file and on PostgreSQL.

    python conformance.py [sqlite|postgres ...]

Prints the suite's report for each store and exits 1 when a capability the saver implements
fails (or when one it should implement is not detected).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from persist import Store
from persist.langgraph import PersistSaver

POSTGRES = os.environ.get("PERSIST_LANGGRAPH_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
# Every capability the suite knows: the base five and the three optional ones, all implemented.
EXPECTED = {"put", "put_writes", "get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread", "prune"}


SCHEMAS: list[str] = []


def store_url(kind: str, folder: str) -> str:
    if kind == "sqlite":
        return f"sqlite:{folder}/graph-{uuid.uuid4().hex}.db"
    # A schema of its own per suite: each starts from an empty store, as the suite expects.
    SCHEMAS.append(f"lg_conformance_{uuid.uuid4().hex[:12]}")
    return f"{POSTGRES}?schema={SCHEMAS[-1]}"


async def run(kind: str) -> bool:
    with tempfile.TemporaryDirectory() as folder:

        @checkpointer_test(name=f"PersistSaver ({kind})")
        async def saver():
            store = Store.open(store_url(kind, folder))
            yield PersistSaver(store)
            await store.close()

        report = await validate(saver, progress=ProgressCallbacks.verbose())
    report.print_report()
    detected = {name for name, result in report.results.items() if result.detected}
    passed = all(result.passed for result in report.results.values() if result.detected)
    if detected != EXPECTED:
        print(f"capabilities detected: {sorted(detected)}, expected {sorted(EXPECTED)}")
    return passed and detected == EXPECTED


async def main(kinds: list[str]) -> int:
    ok = True
    try:
        for kind in kinds:
            ok = await run(kind) and ok
    finally:
        for schema in SCHEMAS:
            drop = f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'
            subprocess.run(["psql", POSTGRES, "-qc", drop], capture_output=True, check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:] or ["sqlite", "postgres"])))
