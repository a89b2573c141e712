"""The stores every test of persist.langgraph runs on: a SQLite file, and PostgreSQL in a schema
of its own (PERSIST_LANGGRAPH_POSTGRES, the tests' server by default), dropped afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from persist import Store

POSTGRES = os.environ.get("PERSIST_LANGGRAPH_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield Store.open(f"sqlite:{tmp_path}/store.db")
        return
    schema = f"lg_test_{uuid.uuid4().hex[:12]}"
    yield Store.open(f"{POSTGRES}?schema={schema}")
    subprocess.run(["psql", POSTGRES, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], capture_output=True)
