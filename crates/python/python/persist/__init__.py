"""persist in process: AI-agent conversations stored on an embedded SQLite file (the default),
PostgreSQL or process memory, through the same Rust pipeline as the ``persist`` crate.

>>> store = Store.open("sqlite:chat.db")                       # doctest: +SKIP
>>> await store.add_items("session-1", [{"role": "user", "content": "hi"}])  # doctest: +SKIP

The OpenAI Agents SDK's session is :class:`persist.agents.PersistSession`.
"""

from __future__ import annotations

from ._persist import Feed, Store, __version__
from . import errors
from .errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    PersistError,
    Rejected,
    Unavailable,
    Unsupported,
)

__all__ = ["Store", "Feed", "__version__", *errors.__all__]
