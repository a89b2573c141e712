"""The errors persist raises: one class per kind, each a :class:`PersistError` with a stable
``code`` (the Rust error's name: ``"not_found"``, ``"version_conflict"``, ...)."""

from __future__ import annotations

__all__ = [
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


class PersistError(Exception):
    """Any error persist answers; ``code`` is its stable name."""

    code: str

    def __init__(self, message: str, code: str = "backend") -> None:
        super().__init__(message)
        self.code = code


class InvalidInput(PersistError, ValueError):
    """The request is malformed (a bad item, an empty id, a limit out of range): nothing was
    written."""


class NotFound(PersistError, LookupError):
    """What the request names does not exist (for this tenant)."""


class Conflict(PersistError):
    """A write lost a race: a version that moved, an id taken, an idempotency key reused for
    other items."""


class ReplyRunning(Conflict):
    """Another reply of the session is being generated (one at a time, across processes):
    ``reply_id`` is it. Stop it, or wait for its end."""

    reply_id: str
    offset: str | None


class ReplyStopped(Conflict):
    """A client stopped the reply ``reply_id``: it ended with what was written; stop generating."""

    reply_id: str
    offset: str | None


class OffsetConflict(Conflict):
    """An append's offset is not the reply's end (``offset``): appends before it are missing,
    or the reply holds other parts there."""

    reply_id: str
    offset: str | None


class Gone(PersistError):
    """The session was deleted, or the feed position was trimmed: read again from the start."""


class Unavailable(PersistError):
    """The store is busy or unreachable, or the call timed out: retrying may succeed."""


class Unsupported(PersistError):
    """The store cannot do this (a feature it lacks, a ``memory:`` store after a fork)."""


class Rejected(PersistError):
    """A layer or policy refused the request (one reaching across tenants, say)."""
