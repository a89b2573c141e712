"""Stores for the tests: a fresh SQLite file each, and a fresh PostgreSQL schema each when
PERSIST_POSTGRES_URL names a server (required under CI: unset there, those tests fail)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

# Nothing reaches the network: the scripted model needs no key, and a real one in the
# environment is replaced (child processes inherit this one); tracing is off.
os.environ["OPENAI_API_KEY"] = "test"
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

from agents import set_tracing_disabled  # noqa: E402

set_tracing_disabled(True)

POSTGRES = os.environ.get("PERSIST_POSTGRES_URL")


def postgres_url() -> str:
    if not POSTGRES:
        if os.environ.get("CI"):
            pytest.fail("PERSIST_POSTGRES_URL is not set: the PostgreSQL tests are required in CI")
        pytest.skip("PERSIST_POSTGRES_URL is not set")
    return POSTGRES


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:{tmp_path / 'store.db'}"


@pytest.fixture
def postgres_schema_url():
    server = postgres_url()
    schema = f"pytest_{uuid.uuid4().hex[:12]}"
    joint = "&" if "?" in server else "?"
    yield f"{server}{joint}schema={schema}"
    subprocess.run(["psql", server, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], check=False, capture_output=True)


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def url(request, tmp_path) -> str:
    """A fresh store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    if request.param == "memory":
        # Sessions given one URL share its store in a process: a fresh one per test.
        import persist.agents

        persist.agents._stores.pop("memory:", None)
        return "memory:"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request, tmp_path) -> str:
    """A fresh store that several processes can share."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_schema_url")
