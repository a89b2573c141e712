"""The native half of persist (Rust, through PyO3): the store and its errors.

Every method that reaches the store is a coroutine run on persist's own threads: the event loop
and the GIL stay free while it works. Items and documents are plain JSON values (dicts, lists,
strings, numbers, booleans, None).
"""

import os
from collections.abc import AsyncIterator
from typing import Any, Literal, final

__version__: str

# The errors it raises are persist.errors' classes.

def sqlite_open_in_process(path: str | os.PathLike[str]) -> bool:
    """Whether a store of this process has the SQLite file at ``path`` open (by the file,
    however it is named)."""

@final
class Store:
    """A persist store: a SQLite file (the default), a PostgreSQL database or process memory.

    One ``Store`` serves every task and thread of a process; open it once. After ``os.fork``
    (multiprocessing, gunicorn, uvicorn workers) the child reopens the store from its URL on
    first use: nothing made before the fork is used after it.
    """

    @staticmethod
    def open(
        url: str = "sqlite:persist.db",
        *,
        tenant: str | None = None,
        busy_timeout: float | None = None,
        durability: Literal["normal", "full"] | None = None,
    ) -> Store:
        """Opens (and migrates) the store at ``url``: ``sqlite:PATH`` or a path ending in
        ``.db``, ``postgres://...`` (``?schema=NAME`` picks a schema), or ``memory:``. Blocks
        while it opens (the GIL released).

        For a SQLite file: ``busy_timeout``, the seconds a write waits for another process's
        before ``Unavailable`` ("database is locked"; 5 by default); ``durability``,
        ``"normal"`` (the default: WAL with ``synchronous=NORMAL``, a commit survives a crash
        of the process, and the last ones may be lost if the machine loses power) or ``"full"``
        (``synchronous=FULL``, as Python's ``sqlite3`` commits: each commit waits for the
        disk). The file's folder must exist (``InvalidInput``), and the file must not be open
        in this process through another SQLite library, such as Python's ``sqlite3``
        (``Unsupported``: two libraries in one process corrupt a file they share)."""

    def graph_store(self) -> GraphStore:
        """Records and message paths of this store and tenant: what ``persist.langgraph`` keeps
        LangGraph's checkpoints and long-term memory in."""

    def with_tenant(self, tenant: str) -> Store:
        """The same store, every call confined to ``tenant``: another tenant's sessions are not
        found, and searches and listings see this tenant's only."""

    @property
    def url(self) -> str:
        """The store's URL, without its password."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (on this store or any handle of it)."""

    @property
    def tenant(self) -> str | None:
        """The tenant calls are confined to, if any."""

    def close_blocking(self) -> None:
        """Closes the store as :meth:`close` does, blocking until it is closed (the GIL
        released): for code that cannot await."""

    async def close(self) -> None:
        """Closes the store, for every handle and tenant of it: SQLite's writer finishes what
        was queued and stops, PostgreSQL's connections close. Later calls raise."""

    async def __aenter__(self) -> Store: ...
    async def __aexit__(self, kind: object, error: object, traceback: object) -> None:
        """Closes the store (``async with Store.open(url) as store:``)."""

    # A session: one thread of items in Responses format, as the OpenAI Agents SDK writes them.

    async def add_items(
        self,
        session_id: str,
        items: list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        parent: str | None = None,
    ) -> None:
        """Appends ``items`` as one atomic turn (all or none). With ``idempotency_key``, a retry
        of the same items is written once; the key with other items is a ``Conflict``. With
        ``parent`` (a message id, such as a live reply's ``parent_id``), the items follow that
        message on a branch of their own, which becomes the active one."""

    async def get_items(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The items of the session's active branch, oldest first: all of them (``limit`` None
        or negative), or the latest ``limit``. A session never written has none."""

    async def pop_item(self, session_id: str) -> dict[str, Any] | None:
        """Removes and returns the latest item, or None when there is none. Atomic across
        processes: two callers never get the same item. A reply still being written is the
        latest item too; one written to while the pop removes it is kept, and the pop raises
        ``Conflict`` (pop again)."""

    async def clear_session(self, session_id: str) -> None:
        """Removes every item of the session (every branch); the session can be written again."""

    async def branches(self, session_id: str) -> list[dict[str, Any]]:
        """The session's branches: ``{"branch_id", "active", "items", "last_item"}`` each,
        oldest first (``items`` counts the branch's items from its root)."""

    async def switch_branch(self, session_id: str, branch_id: str) -> None:
        """Makes the branch ``branch_id`` (from :meth:`branches`) the active one."""

    async def branch_from_turn(self, session_id: str, turn: int) -> None:
        """Starts a new branch before user turn ``turn`` (1-based: the session's ``turn``-th user
        message): the next items follow what came before that turn; the branch they leave stays
        and can be switched back to."""

    async def compacted(self, session_id: str) -> dict[str, Any]:
        """The compacted view: ``{"summary": str | None, "items": [...]}``, the latest summary of
        the active branch and the items it does not cover."""

    async def sessions(self, *, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """The tenant's sessions, most recently written first: ``{"sessions": [{"session_id",
        "title", "metadata", "created_at", "updated_at"}], "next_cursor": str | None}``."""

    async def search(
        self, text: str, *, session_id: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Items whose text matches ``text`` (words, ``"a phrase"``, ``-not``, ``prefix*``), in
        one session or across the tenant's sessions, best first: ``{"session_id", "role",
        "seq", "snippet", "created_at"}`` each (the snippet's matched words between ``**``)."""

    # Working memory: one JSON document per resource (a user, say), versioned.

    async def read_memory(self, resource: str) -> dict[str, Any] | None:
        """``{"document": {...}, "version": int}``, or None when nothing was written."""

    async def write_memory(
        self,
        resource: str,
        *,
        patch: dict[str, Any] | None = None,
        document: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Applies a JSON merge ``patch`` (keys set to None removed) or replaces the whole
        ``document``; with ``expected_version``, a ``Conflict`` unless the stored version is that
        one. Answers the document and its new version."""

    # Live replies: a reply written as a model streams it, followed from any offset by any
    # process, and stopped from anywhere. An offset is a place in a reply's parts as text:
    # ``"3"`` (before part 3) or ``"3.17"`` (17 characters into part 3). Parts are content
    # blocks: ``{"type": "text", "text"}``, ``{"type": "reasoning", "text"}`` (each joins the
    # part before it when that is of its kind), ``{"type": "tool_call", "id", "name",
    # "arguments"}``, ``{"type": "tool_result", "call_id", "output", "is_error"}``,
    # ``{"type": "file", "media_type", "uri"}`` (``"name"`` and ``"size"`` when known).
    # A writer's call answers where the reply stands: ``{"id", "status": "in_progress" |
    # "completed" | "incomplete", "end": None | "complete" | "interrupted" | "stopped" |
    # "deleted", "offset", "written", "lease", "expires_at"}``.

    async def start_reply(
        self,
        session_id: str,
        items: list[dict[str, Any]] | None = None,
        *,
        reply_id: str | None = None,
        idempotency_key: str | None = None,
        lease: float = 30.0,
    ) -> dict[str, Any]:
        """Starts a live reply (a reserved assistant message) after ``items`` (written in the
        same turn; may be None): the state, with ``"parent_id"``, the message the reply follows
        (None in an empty session). One reply per session runs at a time, across processes:
        ``ReplyRunning`` (its ``reply_id``) while another one's writer is alive. ``lease``
        (1 to 3600 seconds): a writer silent that long has its reply settled interrupted. With
        ``idempotency_key``, a start sent again answers the reply the first one started."""

    async def append_reply(
        self, session_id: str, reply_id: str, offset: str, parts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Appends ``parts`` at ``offset`` (the offset the writer's previous call answered,
        ``"0"`` first) and renews the lease: the state, its ``offset`` where the next append
        goes. The same append sent again is written once (``"written": False``).
        ``OffsetConflict`` (its ``offset``, the reply's end) when ``offset`` is not the end and
        the reply does not hold these parts there; ``ReplyStopped`` when a client stopped the
        reply (it ended with what was written: stop generating); ``Conflict`` (code
        ``"message_complete"``) when it ended otherwise (finished, or settled after its lease)."""

    async def renew_reply(self, session_id: str, reply_id: str) -> dict[str, Any]:
        """Renews the writer's lease without writing: the state. Raises as ``append_reply``."""

    async def finish_reply(
        self,
        session_id: str,
        reply_id: str,
        *,
        status: Literal["completed", "incomplete"] = "completed",
        reason: str | None = None,
        offset: str | None = None,
        parts: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Ends the reply, ``"completed"`` or ``"incomplete"`` (interrupted, ``reason`` kept,
        at most 4096 bytes), after appending ``parts`` at ``offset`` (both or neither): the
        state. A finish sent again answers the reply's end (``"written": False``), but for an
        ``"incomplete"`` one with ``parts``, which raises ``Conflict`` (``"message_complete"``).
        Raises as ``append_reply``."""

    async def stop_reply(self, session_id: str, reply_id: str | None = None) -> dict[str, Any]:
        """Asks the generation of ``reply_id`` (None: the session's running reply) to stop; a
        reply whose writer holds a lease ends at once, with what was written. Answers
        ``{"stopped": True, "reply_id"}``, or ``{"stopped": False, "reply_id", "status"}`` for
        a reply that had ended (``status`` its end), or ``{"stopped": False, "reply_id": None}``
        when no reply runs."""

    async def watch_stop(
        self, session_id: str, reply_id: str
    ) -> Literal["stopped", "complete", "interrupted", "deleted"]:
        """Resolves when the reply was stopped (``"stopped"``) or ended otherwise (how): for
        its writer, beside the model call."""

    def follow_reply(self, session_id: str, reply_id: str, *, offset: str = "0") -> ReplyFollower:
        """Follows a reply (running or ended) from ``offset``, what the client already has: an
        async iterator of chunks (the first read opens it). A writer silent past its lease has
        its reply settled interrupted by its followers."""

    def feed(self, *, session_id: str | None = None, after: int = 0) -> Feed:
        """The change feed (of one session, or of the tenant) after position ``after``, as an
        async iterator that waits for new changes (the first read opens it)."""

@final
class Feed:
    """The change feed, in commit order: ``{"position", "at", "op", "session_id", "message_id",
    "seq", "version", "status", "removed", "tenant"}`` each (``resource`` instead of
    ``session_id`` for working memory). Iteration never ends: it waits for the next change."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...
    async def __anext__(self) -> dict[str, Any]: ...
    @property
    def position(self) -> int:
        """The position of the last change given (``after`` before the first)."""

@final
class ReplyFollower:
    """A reply followed from an offset: ``{"type": "part", "index", "part", "offset"}`` (a part
    begins: a text or reasoning part with its text so far), ``{"type": "delta", "index",
    "part", "offset"}`` (more text for the part at ``index``: ``part`` holds what was added),
    ``{"type": "replaced", "parts", "offset"}`` (the reply was rewritten: ``parts`` is all of
    it), then ``{"type": "end", "status": "complete" | "interrupted" | "stopped" | "deleted",
    "offset"}``, after which iteration ends. Each chunk's ``offset`` is where a client that
    has it resumes."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...
    async def __anext__(self) -> dict[str, Any]: ...
    @property
    def offset(self) -> str:
        """Where a client that has every chunk given so far resumes (``offset=`` of a new
        follower); the offset asked before the first."""

# A change of GraphStore.write_records: ("put" | "insert", space, key, value, expires_at),
# ("touch", space, key, expires_at), ("delete", space, key), ("delete_spaces", prefix) or
# ("sweep",); expiry in seconds since the epoch, None for never.
RecordChange = tuple[Any, ...]
# A record as read: (space, key, value, expires_at).
Record = tuple[str, str, bytes, float | None]

@final
class GraphStore:
    """Records (opaque values per space and key, in the store's tenant, with an expiry) and a
    thread's messages as paths of its tree: what ``persist.langgraph`` builds on. Every method
    answers a coroutine, or with ``blocking=True`` its value (the GIL released meanwhile)."""

    def write_records(self, writes: list[RecordChange], *, blocking: bool = False) -> Any:
        """Applies ``writes`` in order, in one transaction; answers how many records changed. An
        ``insert`` keeps a live record; an expired record is answered by no read."""

    def read_records(
        self,
        space: str,
        *,
        prefix: bool = False,
        keys: list[str] | None = None,
        before: str | None = None,
        newest_first: bool = False,
        limit: int = 100,
        cursor: tuple[str, str] | None = None,
        blocking: bool = False,
    ) -> Any:
        """A page of ``(records, cursor)``: the records of ``space`` (of every space starting
        with it, when ``prefix``), by key then space, bytewise; ``keys`` only these keys,
        ``before`` only keys below it; ``cursor`` (``None`` on the last page) goes on."""

    def read_many(self, queries: list[tuple[str, dict[str, Any] | None]], *, blocking: bool = False) -> Any:
        """Several reads at once, ``[(space, {keyword: value})]`` with the keywords of
        :meth:`read_records`: their pages, in order (on PostgreSQL the reads wait together)."""

    def append_path(
        self,
        thread_id: str,
        parent: str | None,
        messages: list[tuple[str, str, dict[str, Any]]],
        *,
        blocking: bool = False,
    ) -> Any:
        """Appends ``(role, text, metadata)`` messages after message ``parent`` (``None``: as a
        root of their own), in one turn; answers their ids."""

    def read_path(self, thread_id: str, head: str, *, blocking: bool = False) -> Any:
        """The messages of the path ending at ``head``, oldest first: ``(id, role, text,
        metadata)`` each."""

    def delete_thread(self, thread_id: str, *, blocking: bool = False) -> Any:
        """Erases the thread and its messages for good (its id free again); nothing when there
        is none."""
