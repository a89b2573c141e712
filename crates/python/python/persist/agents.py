"""The OpenAI Agents SDK's session on persist: ``Runner.run(agent, input, session=PersistSession(...))``.

:class:`PersistSession` implements ``agents.memory.SessionABC`` exactly (``get_items``,
``add_items``, ``pop_item``, ``clear_session``), so it replaces ``SQLiteSession`` where one is
used, and adds what persist has beside the protocol: retried ``add_items`` written once (an
idempotency key), branches as ``AdvancedSQLiteSession`` offers them, the compacted view and
search. Many processes may share one SQLite file (one writer per process, busy waits across
them, atomic turns): no "database is locked". :func:`run_streamed_live` runs
``Runner.run_streamed`` with the session and writes the run into a live reply as it streams,
which other processes follow and stop (:mod:`persist.agents_live`).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit

from ._persist import Store

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["PersistSession", "LiveRun", "run_streamed_live"]

# The stores sessions opened from a URL, one per URL in a process: a session made per request
# shares the store (one writer per SQLite file per process) instead of opening it again. Each
# counts the sessions using it; the last one's `close()` closes it.
_stores: dict[str, tuple[Store, int]] = {}
_stores_lock = threading.Lock()

# The URLs persist reads itself; any other string is a SQLite file's path, as SQLiteSession's
# `db_path` is.
_SCHEMES = ("sqlite:", "postgres://", "postgresql://", "memory:")


def _url_of(store: str | os.PathLike[str]) -> str | None:
    """The store URL ``store`` names; None for ``":memory:"`` (a store of the session's own)."""
    if isinstance(store, os.PathLike):
        return f"sqlite:{os.fspath(store)}"
    if store == ":memory:":
        return None
    if store.startswith(_SCHEMES):
        return store
    return f"sqlite:{store}"


def _take_store(url: str) -> Store:
    with _stores_lock:
        store, users = _stores.get(url, (None, 0))
        # A store closed meanwhile (by a `store.close()`) is opened again.
        if store is None or store.closed:
            store, users = Store.open(url), 0
        _stores[url] = (store, users + 1)
        return store


def _release_store(url: str, store: Store) -> None:
    with _stores_lock:
        held, users = _stores.get(url, (None, 0))
        if held is not store:
            return
        if users > 1:
            _stores[url] = (store, users - 1)
            return
        del _stores[url]
    store.close_blocking()


def _settings(session_settings: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    """The settings as the SDK's sessions take them: a dict is read as ``SessionSettings``
    (an unknown field is a ``TypeError``), None is ``SessionSettings()``."""
    if session_settings is None:
        return SessionSettings()
    if not isinstance(session_settings, (dict, SessionSettings)):
        raise TypeError(f"session_settings must be SessionSettings or a dict, not {type(session_settings).__name__}")
    return coerce_session_settings(session_settings)


class PersistSession(SessionABC):
    """A session of the OpenAI Agents SDK kept in a persist store.

    ``store`` is a :class:`persist.Store`, a store URL (``"sqlite:agents.db"``,
    ``"postgres://..."``: sessions given the same URL share one store per process), a SQLite
    file's path (a ``str`` or ``pathlib.Path``, as ``SQLiteSession``'s ``db_path``), or
    ``":memory:"`` (a store of this session's own, gone when the process ends, as
    ``SQLiteSession``'s default). With ``tenant``, the session belongs to that tenant and no
    other tenant's calls find it. ``session_settings`` is a ``SessionSettings`` or a dict of its
    fields (``SessionSettings()`` when None).
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: Store | str | os.PathLike[str] = "sqlite:persist.db",
        *,
        tenant: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        settings = _settings(session_settings)
        self._url: str | None = None
        if isinstance(store, (str, os.PathLike)):
            url = _url_of(store)
            if url is None:
                store = Store.open("memory:")
            else:
                store = _take_store(url)
                self._url = url
        elif not isinstance(store, Store):
            raise TypeError(f"store must be a persist Store, a URL or a path, not {type(store).__name__}")
        self._shared = store
        if tenant is not None:
            store = store.with_tenant(tenant)
        self.session_id = session_id
        self.session_settings = settings
        self.store = store
        self._closed = False
        # The live run writing into this session, if any (see persist.agents_live).
        self._live: LiveRun | None = None

    def close(self) -> None:
        """Closes the session: later calls raise ``RuntimeError``. A store the session opened
        from a URL or path is closed with the last session using it; a :class:`persist.Store`
        given is left open (its owner closes it)."""
        if self._closed:
            return
        self._closed = True
        if self._url is not None:
            _release_store(self._url, self._shared)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    # The session protocol.

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items in chronological order (all of them when ``limit`` and
        the settings' limit are None)."""
        self._check_open()
        limit = resolve_session_limit(limit, self.session_settings)
        return await self.store.get_items(self.session_id, limit)  # type: ignore[return-value]

    async def add_items(
        self, items: list[TResponseInputItem], *, idempotency_key: str | None = None
    ) -> None:
        """Appends ``items`` as one atomic turn. With ``idempotency_key``, a retry of the same
        call (after a timeout, say) is written once. While a live run uses the session
        (:func:`run_streamed_live`), its first save of generated items follows the live reply's
        parent, on a branch of its own that becomes the active one."""
        self._check_open()
        if not items:
            return
        parent = await self._live._parent_of_save() if self._live is not None else None
        await self.store.add_items(
            self.session_id,
            list(items),  # type: ignore[arg-type]
            idempotency_key=idempotency_key,
            parent=parent,
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Removes and returns the latest item (None when the session is empty); two callers,
        in any processes, never get the same item."""
        self._check_open()
        return await self.store.pop_item(self.session_id)  # type: ignore[return-value]

    async def clear_session(self) -> None:
        """Removes every item of the session."""
        self._check_open()
        await self.store.clear_session(self.session_id)

    # What persist adds.

    async def branches(self) -> list[dict[str, Any]]:
        """The session's branches: ``{"branch_id", "active", "items", "last_item"}`` each."""
        return await self.store.branches(self.session_id)

    async def switch_branch(self, branch_id: str) -> None:
        """Makes ``branch_id`` (from :meth:`branches`) the branch the session reads and extends."""
        await self.store.switch_branch(self.session_id, branch_id)

    async def branch_from_turn(self, turn: int) -> None:
        """Starts a new branch before user turn ``turn`` (1-based), as
        ``AdvancedSQLiteSession.create_branch_from_turn`` does; the branch left stays."""
        await self.store.branch_from_turn(self.session_id, turn)

    async def compacted(self) -> dict[str, Any]:
        """``{"summary": str | None, "items": [...]}``: the latest summary and the items after it."""
        return await self.store.compacted(self.session_id)

    async def search(self, text: str, *, all_sessions: bool = False, limit: int = 20) -> list[dict[str, Any]]:
        """Items matching ``text`` in this session, or in every session of the tenant."""
        session_id = None if all_sessions else self.session_id
        return await self.store.search(text, session_id=session_id, limit=limit)


# Runs written live into a session's reply (imported here, after PersistSession, which it uses).
from .agents_live import LiveRun, run_streamed_live  # noqa: E402
