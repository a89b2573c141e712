"""Live replies: a reply written as a model streams it, followed from any offset by any process,
and stopped from anywhere.

>>> reply = await LiveReply.start(store, "session-1", [{"role": "user", "content": "hi"}])  # doctest: +SKIP
>>> async with reply:                                          # doctest: +SKIP
...     async for delta in model_stream:
...         if reply.stopped.is_set():
...             break
...         reply.text(delta)

:class:`LiveReply` is the writer: its methods queue parts and return at once; one background
task writes them, one append at a time, the deltas queued meanwhile joined into the next. A
client in any process follows the reply with :func:`follow` (``Store.follow_reply``) from the
offset it has, and stops it with ``Store.stop_reply``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ._persist import ReplyFollower, Store
from .errors import Conflict, PersistError, ReplyStopped, Unavailable

__all__ = ["LiveReply", "follow", "apply_chunk"]

# How long a failed call waits before it is sent again, doubling up to the last.
_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)

# The part kinds whose text grows, and which join the part before them when it is of their kind.
_STREAMED = ("text", "reasoning")


def _arguments(arguments: Any) -> Any:
    """A tool call's arguments as JSON: a string that is JSON text is read (as the store reads a
    ``function_call``'s), anything else kept as it is."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _join(parts: list[dict[str, Any]], part: dict[str, Any]) -> None:
    """Adds ``part`` to ``parts`` as the store does: a text or reasoning part joins the last part
    when that is of its kind."""
    last = parts[-1] if parts else None
    if part["type"] in _STREAMED and last is not None and last["type"] == part["type"]:
        parts[-1] = {"type": part["type"], "text": last["text"] + part["text"]}
    else:
        parts.append(dict(part))


class LiveReply:
    """The writer of a live reply of ``session_id``: made by :meth:`start`.

    ``text``, ``reasoning``, ``tool_call``, ``tool_result`` and ``file`` queue a part and return
    at once. A background task writes what is queued, one ``append_reply`` at a time, at the
    offset the previous one answered; what is queued while an append is in flight goes in the
    next one, deltas of a kind joined. An append that fails ``Unavailable`` is sent again as it
    was (a repeat is written once) until the lease would run out. While nothing is queued, the
    lease is renewed every third of it.

    When a client stops the reply (an append answers ``ReplyStopped``, or the ``watch_stop``
    task hears it), :attr:`stopped` is set: the reply ended with what was written, and later
    writes are dropped quietly. Any other error of a write (the reply ended otherwise, an
    offset conflict) ends the writing too, kept in :attr:`error`, which :meth:`finish` raises.

    Used as an async context manager, the reply is finished on a normal exit, and interrupted
    (its reason the exception) on an error or a cancellation.
    """

    id: str
    """The reply's id (a message id): what followers and ``stop_reply`` name."""
    parent_id: str | None
    """The message the reply follows (None in an empty session)."""
    offset: str
    """Where the reply ends as written so far: the offset of the next append."""
    parts: list[dict[str, Any]]
    """The parts this writer wrote (the store answered), joined as the store joins them."""
    stopped: asyncio.Event
    """Set when a client stopped the reply: stop generating."""
    error: Exception | None
    """The error that ended the writing, other than a stop."""
    state: dict[str, Any]
    """Where the reply stood at the last call answered (``start_reply``'s shape)."""

    def __init__(self, store: Store, session_id: str, started: dict[str, Any], *, watch: bool = True) -> None:
        """Use :meth:`start`. ``started`` is what ``Store.start_reply`` answered."""
        self.store = store
        self.session_id = session_id
        self.id = started["id"]
        self.parent_id = started.get("parent_id")
        self.offset = started["offset"]
        self.state = started
        self.lease: float = started.get("lease") or 30.0
        self.parts = []
        self.stopped = asyncio.Event()
        self.error = None
        self._queued: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Nothing more is written: stopped, failed, or ended.
        self._done = started.get("end") is not None
        self._ended: dict[str, Any] | None = started if self._done else None
        self._writer = asyncio.create_task(self._write(), name=f"persist live reply {self.id}")
        self._watcher = asyncio.create_task(self._watch()) if watch and not self._done else None

    @classmethod
    async def start(
        cls,
        store: Store,
        session_id: str,
        items: list[dict[str, Any]] | None = None,
        *,
        reply_id: str | None = None,
        idempotency_key: str | None = None,
        lease: float = 30.0,
        watch: bool = True,
    ) -> LiveReply:
        """Starts a live reply of ``session_id`` after ``items`` (written in the same turn; may
        be None), as ``Store.start_reply`` does (``ReplyRunning`` while another reply of the
        session runs). With ``watch``, a task waits for a stop (``Store.watch_stop``) beside the
        writes, so a stop is heard while nothing is written."""
        started = await store.start_reply(
            session_id, items, reply_id=reply_id, idempotency_key=idempotency_key, lease=lease
        )
        return cls(store, session_id, started, watch=watch)

    # Writing.

    @property
    def writing(self) -> bool:
        """Whether parts are still written (not stopped, failed or ended)."""
        return not self._done

    def text(self, delta: str) -> None:
        """Queues ``delta``, more text of the reply (it joins the text before it)."""
        if delta:
            self._queue({"type": "text", "text": delta})

    def reasoning(self, delta: str) -> None:
        """Queues ``delta``, more of the model's reasoning (it joins the reasoning before it)."""
        if delta:
            self._queue({"type": "reasoning", "text": delta})

    def tool_call(self, id: str, name: str, arguments: Any) -> None:  # noqa: A002 (the block's field)
        """Queues a call of the tool ``name``; ``arguments`` is JSON, or its text (read as JSON
        when it is JSON, kept as a string otherwise)."""
        self._queue({"type": "tool_call", "id": id, "name": name, "arguments": _arguments(arguments)})

    def tool_result(self, call_id: str, output: Any, is_error: bool = False) -> None:
        """Queues the result of the call ``call_id``: ``output`` is JSON (a string, usually)."""
        self._queue({"type": "tool_result", "call_id": call_id, "output": output, "is_error": bool(is_error)})

    def file(self, media_type: str, uri: str, *, name: str | None = None, size: int | None = None) -> None:
        """Queues a file, by reference (``uri``: a URL, a data URL, a reference of the host's)."""
        part: dict[str, Any] = {"type": "file", "media_type": media_type, "uri": uri}
        if name is not None:
            part["name"] = name
        if size is not None:
            part["size"] = size
        self._queue(part)

    def _queue(self, part: dict[str, Any]) -> None:
        if self._done or self._closing:
            return
        _join(self._queued, part)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Waits until every part queued is written (or the writing ended)."""
        await self._idle.wait()

    # Ending.

    async def finish(self) -> dict[str, Any]:
        """Writes what is queued and ends the reply complete: the state. After a stop, the
        stopped reply's state. After another error of a write, the reply is ended interrupted
        and that error raised."""
        return await self._end("completed", None)

    async def interrupt(self, reason: str | None = None) -> dict[str, Any]:
        """Writes what is queued and ends the reply interrupted, ``reason`` kept with it (cut to
        4096 bytes): the state. After a stop, the stopped reply's state. It raises no error of
        a write: a reply it could not end is settled interrupted once its lease runs out."""
        if reason is not None and len(reason.encode()) > 4096:
            reason = reason.encode()[:4096].decode(errors="ignore")
        try:
            return await self._end("incomplete", reason)
        except Exception:
            return self._ended or self.state

    async def _end(self, status: str, reason: str | None) -> dict[str, Any]:
        if self._ended is not None:
            return self._ended
        self._closing = True
        self._wake.set()
        await asyncio.shield(self._writer)
        if self._watcher is not None:
            self._watcher.cancel()
        asked, failed = status, self.error
        if failed is not None and self._ended is None:
            # The writing failed: what was written is kept, interrupted.
            status, reason = "incomplete", reason or f"{type(failed).__name__}: {failed}"
        if self._ended is None:
            self.error = None
            await self._call(self.store.finish_reply, self.session_id, self.id, status=status, reason=reason)
        failed = failed or self.error
        if failed is not None and (asked == "completed" or self._ended is None):
            self.error = failed
            raise failed
        self.error = failed
        assert self._ended is not None
        return self._ended

    async def __aenter__(self) -> LiveReply:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Finishes the reply, or interrupts it on an error (its reason the error) or a
        cancellation; an error of the finish is raised only on a normal exit."""
        if error is None:
            await self.finish()
        elif isinstance(error, asyncio.CancelledError):
            await self.interrupt("cancelled")
        else:
            await self.interrupt(f"{type(error).__name__}: {error}")

    # The background tasks.

    async def _write(self) -> None:
        """Writes what is queued, one append at a time; renews the lease while idle."""
        renew_every = max(self.lease / 3, 0.2)
        while not self._done:
            if not self._queued:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), renew_every)
                except asyncio.TimeoutError:
                    await self._call(self.store.renew_reply, self.session_id, self.id)
                continue
            batch, self._queued = self._queued, []
            if await self._call(self.store.append_reply, self.session_id, self.id, self.offset, batch):
                for part in batch:
                    _join(self.parts, part)
        self._queued.clear()
        self._idle.set()

    async def _call(self, method: Callable[..., Awaitable[dict[str, Any]]], *args: Any, **kwargs: Any) -> bool:
        """One writer's call, sent again as it was while it fails ``Unavailable`` and the lease
        lasts: whether it was answered (its answer kept), else the writing ended by its error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease
        attempt = 0
        while True:
            try:
                state = await method(*args, **kwargs)
            except Unavailable as error:
                pause = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                if loop.time() + pause >= deadline:
                    self._stop_writing(error)
                    return False
                await asyncio.sleep(pause)
                attempt += 1
                continue
            except ReplyStopped:
                self._stop_writing(None)
                return False
            except Exception as error:  # persist's, or parts that are not JSON (TypeError)
                self._stop_writing(error)
                return False
            self.state = state
            self.offset = state["offset"]
            if state.get("end") is not None:
                self._done = True
                self._ended = state
            return True

    def _stop_writing(self, error: Exception | None) -> None:
        """Ends the writing: by a stop (``error`` None), or by ``error``."""
        if self._done and self._ended is not None:
            return
        self._done = True
        if error is None:
            self._ended = {**self.state, "status": "incomplete", "end": "stopped", "written": False, "expires_at": None}
            self.stopped.set()
        elif self.error is None:
            self.error = error
        self._queued.clear()
        self._idle.set()
        self._wake.set()

    async def _watch(self) -> None:
        """Waits for a stop beside the writes (a few tries on errors: appends hear it too)."""
        for attempt in range(len(_BACKOFF)):
            try:
                heard = await self.store.watch_stop(self.session_id, self.id)
            except PersistError:
                await asyncio.sleep(_BACKOFF[attempt])
                continue
            if heard == "stopped":
                self._stop_writing(None)
            elif heard != "complete" and not self._done:
                ended = Conflict(f"reply {self.id} ended {heard} while it was written", "message_complete")
                self._stop_writing(ended)
            return

    def __repr__(self) -> str:
        return f"LiveReply(id={self.id!r}, session_id={self.session_id!r}, offset={self.offset!r})"


def follow(store: Store, session_id: str, reply_id: str, offset: str = "0") -> ReplyFollower:
    """Follows the reply ``reply_id`` from ``offset`` (what the client already has, ``"0"`` for
    all of it): ``Store.follow_reply``, an async iterator of chunks until its end; its
    ``offset`` is where to resume."""
    return store.follow_reply(session_id, reply_id, offset=offset)


def apply_chunk(parts: list[dict[str, Any]], chunk: dict[str, Any]) -> str | None:
    """Applies a followed ``chunk`` to ``parts`` (what the client shows): a part added, a delta
    joined to its part, the whole replaced. Answers the end's status for an end, else None."""
    kind = chunk["type"]
    if kind == "part":
        index = chunk["index"]
        del parts[index:]
        parts.append(dict(chunk["part"]))
    elif kind == "delta":
        index = chunk["index"]
        if index >= len(parts):  # a client that followed from inside a part it does not hold
            parts.append(dict(chunk["part"]))
        else:
            parts[index] = {**parts[index], "text": parts[index]["text"] + chunk["part"]["text"]}
    elif kind == "replaced":
        parts[:] = [dict(part) for part in chunk["parts"]]
    elif kind == "end":
        return str(chunk["status"])
    return None

