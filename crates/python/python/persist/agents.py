"""The OpenAI Agents SDK's session on persist: ``Runner.run(agent, input, session=PersistSession(...))``.

:class:`PersistSession` implements ``agents.memory.SessionABC`` exactly (``get_items``,
``add_items``, ``pop_item``, ``clear_session``), so it replaces ``SQLiteSession`` where one is
used, and adds what persist has beside the protocol: retried ``add_items`` written once (an
idempotency key), branches as ``AdvancedSQLiteSession`` offers them, the compacted view and
search. Many processes may share one SQLite file (one writer per process, busy waits across
them, atomic turns): no "database is locked".
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit

from ._persist import Store

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["PersistSession"]

# The stores sessions opened from a URL, one per URL in a process: a session made per request
# shares the store (one writer per SQLite file per process) instead of opening it again.
_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def _store_for(url: str) -> Store:
    with _stores_lock:
        store = _stores.get(url)
        # A store closed meanwhile (by one session's `store.close()`) is opened again.
        if store is None or store.closed:
            store = _stores[url] = Store.open(url)
        return store


class PersistSession(SessionABC):
    """A session of the OpenAI Agents SDK kept in a persist store.

    ``store`` is a :class:`persist.Store` or a store URL (``"sqlite:agents.db"``,
    ``"postgres://..."``: sessions given the same URL share one store per process); with
    ``tenant``, the session belongs to that tenant and no other tenant's calls find it.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: Store | str = "sqlite:persist.db",
        *,
        tenant: str | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        if isinstance(store, str):
            store = _store_for(store)
        if tenant is not None:
            store = store.with_tenant(tenant)
        self.session_id = session_id
        self.session_settings = session_settings
        self.store = store

    # The session protocol.

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items in chronological order (all of them when ``limit`` and
        the settings' limit are None)."""
        limit = resolve_session_limit(limit, self.session_settings)
        return await self.store.get_items(self.session_id, limit)  # type: ignore[return-value]

    async def add_items(
        self, items: list[TResponseInputItem], *, idempotency_key: str | None = None
    ) -> None:
        """Appends ``items`` as one atomic turn. With ``idempotency_key``, a retry of the same
        call (after a timeout, say) is written once."""
        if not items:
            return
        await self.store.add_items(self.session_id, list(items), idempotency_key=idempotency_key)  # type: ignore[arg-type]

    async def pop_item(self) -> TResponseInputItem | None:
        """Removes and returns the latest item (None when the session is empty); two callers,
        in any processes, never get the same item."""
        return await self.store.pop_item(self.session_id)  # type: ignore[return-value]

    async def clear_session(self) -> None:
        """Removes every item of the session."""
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
