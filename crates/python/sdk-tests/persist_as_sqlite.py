"""A pytest plugin (``-p persist_as_sqlite``): the Agents SDK's ``SQLiteSession`` is persist.

The SDK's own session tests build ``SQLiteSession(session_id, db_path, session_settings=...)``;
with this plugin loaded they get :class:`SQLiteSession` below, a ``PersistSession`` opened on the
same path (``":memory:"``: a fresh in-memory store of its own), and run unmodified.

It is patched where the tests import it from (``agents``, ``agents.memory``,
``agents.memory.sqlite_session``) in ``pytest_configure``, before any test module is imported, so
their ``from agents import SQLiteSession`` (and the classes they derive from it at import time)
get persist's. The SDK's own modules that bound the real class at import
(``agents.extensions.memory.encrypt_session``'s ``isinstance(underlying, SQLiteSession)`` fast
path, ``advanced_sqlite_session``) are imported first and keep it: they treat persist as any other
backend, as they would a user's ``PersistSession``.
"""

from __future__ import annotations

import os
from typing import Any

import agents
import agents.memory
import agents.memory.sqlite_session
from persist.agents import PersistSession

# SDK modules that hold the real class under their own name: imported before the patch so they
# keep it (what a user passing a PersistSession gets). Missing optional dependencies are fine.
for _module in ("agents.extensions.memory.encrypt_session", "agents.extensions.memory"):
    try:
        __import__(_module)
    except ImportError:
        pass

RealSQLiteSession = agents.memory.sqlite_session.SQLiteSession


class SQLiteSession(PersistSession):
    """``SQLiteSession``'s constructor, persist's store on ``db_path``."""

    def __init__(
        self,
        session_id: str,
        db_path: str | os.PathLike[str] = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        # persist has its own schema: table names other than the defaults would be ignored.
        if (sessions_table, messages_table) != ("agent_sessions", "agent_messages"):
            raise NotImplementedError("persist does not take SQLiteSession's table names")
        super().__init__(session_id, store=db_path, session_settings=session_settings)


def pytest_configure(config: Any) -> None:
    for module in (agents, agents.memory, agents.memory.sqlite_session):
        # Sets the module global: the packages' lazy ``__getattr__`` is not consulted again.
        setattr(module, "SQLiteSession", SQLiteSession)


def pytest_report_header(config: Any) -> str:
    import persist

    return (
        f"persist_as_sqlite: SQLiteSession is persist.agents.PersistSession "
        f"(persist {getattr(persist, '__version__', '?')}, {persist.__file__})"
    )
