"""persist in process: AI-agent conversations stored on an embedded SQLite file (the default),
PostgreSQL or process memory, through the same Rust pipeline as the ``persist`` crate.

>>> store = Store.open("sqlite:chat.db")                       # doctest: +SKIP
>>> await store.add_items("session-1", [{"role": "user", "content": "hi"}])  # doctest: +SKIP

A live reply (written as a model streams it, followed and stopped from any process) is
:class:`persist.live.LiveReply`. The OpenAI Agents SDK's session is
:class:`persist.agents.PersistSession`.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import unquote

from ._persist import Feed, ReplyFollower, Store, __version__, sqlite_open_in_process
from . import errors
from .errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    OffsetConflict,
    PersistError,
    Rejected,
    ReplyRunning,
    ReplyStopped,
    Unavailable,
    Unsupported,
)
from .live import LiveReply, apply_chunk, follow

# Listed by name (not `*errors.__all__`): type checkers take a re-export only from a literal list.
__all__ = [
    "Store",
    "Feed",
    "ReplyFollower",
    "LiveReply",
    "follow",
    "apply_chunk",
    "__version__",
    "PersistError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "ReplyRunning",
    "ReplyStopped",
    "OffsetConflict",
    "Gone",
    "Unavailable",
    "Unsupported",
    "Rejected",
]


def _sqlite_file(database: object) -> str | None:
    """The file ``sqlite3.connect(database)`` opens, as a path (None for an in-memory one)."""
    try:
        name = os.fsdecode(database)  # type: ignore[arg-type]
    except TypeError:
        return None
    if name.startswith("file:"):
        # A URI (`file:agents.db?mode=ro`, `file:///srv/agents.db`): its path.
        name = unquote(name[len("file:") :].split("?", 1)[0].split("#", 1)[0])
        if name.startswith("//"):
            name = name[2:]
            name = name[name.find("/") :] if "/" in name else ""
    if name in ("", ":memory:"):
        return None
    return name


def _refuse_a_second_sqlite(event: str, args: tuple[object, ...]) -> None:
    """An audit hook: ``sqlite3.connect`` to a file a persist store of this process has open is
    refused. Python's ``sqlite3`` links another SQLite library than persist's, and two SQLite
    libraries in one process do not see each other's locks: a close in one drops the other's,
    and the file is corrupted (sqlite.org/howtocorrupt.html, 2.2.1). Between processes the
    locks work: read the file from another process, or through persist."""
    if event != "sqlite3.connect" or not args:
        return
    path = _sqlite_file(args[0])
    if path is not None and sqlite_open_in_process(path):
        raise Unsupported(
            f"sqlite3.connect({path!r}): persist has this SQLite file open in this process, and two SQLite "
            "libraries in one process corrupt a file they both open (https://sqlite.org/howtocorrupt.html, "
            "2.2.1); read it through persist, or from another process",
            "unsupported",
        )


sys.addaudithook(_refuse_a_second_sqlite)
