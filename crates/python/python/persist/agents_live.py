"""An Agents SDK run written live: ``run_streamed_live(agent, input, session=PersistSession(...))``.

It runs ``Runner.run_streamed`` with the session and writes the run's stream into a live reply
of the session as it comes, so a client in any process follows it (``Store.follow_reply``, from
the offset it has) and stops it (``Store.stop_reply``):

>>> run = run_streamed_live(agent, "Weather in Paris?", session=session)   # doctest: +SKIP
>>> reply = await run.started()                  # its id: what clients follow  # doctest: +SKIP
>>> async for event in run.stream_events(): ...  # the SDK's events, as Runner gives them  # doctest: +SKIP

The reply's parts, as the stream gives them: the text deltas (``response.output_text.delta``,
``response.refusal.delta``) as text, the reasoning deltas (summary and content) as reasoning,
each tool call (``tool_called``, ``handoff_requested``) as a ``tool_call`` with its final
arguments, each tool's output (``tool_output``, ``handoff_occured``) as a ``tool_result``
(``is_error`` for a call the SDK's ``tool_error_formatter`` was called for). A message or
reasoning item whose deltas fell short of its final text gets the rest when it is done; two
streamed parts of a kind in a row are parted by a blank line (the store joins them).

The session stays what the SDK saved. The reply starts at the run's first model event, after the
SDK saved the user's input, so it follows the input. The SDK's first save of generated items
follows the reply's parent on a branch of its own, which becomes the session's active branch;
later saves follow it. So after a completed run ``get_items()`` answers what the SDK saved, and
the reply, complete, stays on its own branch for its followers.

When a client stops the reply, the run is cancelled at once (``RunResultStreaming.cancel()``);
a run that fails, or is cancelled, ends the reply interrupted (its reason the error). What the
model streamed of a turn the SDK did not save stays in the session as the user saw it: before
the first save, the reply itself is on the active branch (``get_items()`` gives its text as an
``incomplete`` assistant message, its tool calls as items); after one, that turn's text, and
its tool calls that have their outputs, are added as items (an ``incomplete`` message). Reasoning
is left out, as the session's export leaves it out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agents import RunConfig, Runner
from agents.lifecycle import RunHooksBase
from agents.result import RunResultStreaming
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent, StreamEvent

from .errors import PersistError
from .live import LiveReply, _join

if TYPE_CHECKING:
    from .agents import PersistSession

__all__ = ["LiveRun", "run_streamed_live"]

_END = object()
_log = logging.getLogger("persist")


def _field(raw: Any, name: str) -> Any:
    """A field of an item, a dict or a model."""
    return raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)


def _json(value: Any) -> Any:
    """``value`` as JSON values (a model dumped, anything else unknown as its text)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_none=True)
    return json.loads(json.dumps(value, default=str))


class _Hooks(RunHooksBase[Any, Any]):
    """The run's hooks: the caller's, and the run's own note of each model answer."""

    def __init__(self, inner: RunHooksBase[Any, Any] | None) -> None:
        self._inner = inner
        self.run: LiveRun | None = None

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        # Called before the SDK saves the turn: every save after it is of generated items.
        if self.run is not None:
            self.run._answered = True
        if self._inner is not None:
            await self._inner.on_llm_end(context, agent, response)


def _delegate(name: str) -> Any:
    async def hook(self: _Hooks, *args: Any, **kwargs: Any) -> None:
        if self._inner is not None:
            await getattr(self._inner, name)(*args, **kwargs)

    hook.__name__ = name
    return hook


for _name in [name for name in vars(RunHooksBase) if name.startswith("on_") and name != "on_llm_end"]:
    setattr(_Hooks, _name, _delegate(_name))


class LiveRun:
    """A streamed run of the Agents SDK written live into a reply of its session: made by
    :func:`run_streamed_live`.

    ``result`` is the SDK's ``RunResultStreaming``; ``reply`` the :class:`persist.live.LiveReply`
    once started (None before the first model event). The run goes on whether or not
    :meth:`stream_events` is read.
    """

    result: RunResultStreaming
    reply: LiveReply | None
    stopped: bool
    """Whether a client stopped the reply (the run was cancelled)."""

    def __init__(self, session: PersistSession, result: RunResultStreaming, lease: float, errors: set[str]) -> None:
        """Use :func:`run_streamed_live`."""
        self.session = session
        self.result = result
        self.reply = None
        self.stopped = False
        self._lease = lease
        self._errors = errors  # the calls the tool error formatter was called for
        self._answered = False
        self._started: asyncio.Future[LiveReply | None] = asyncio.get_running_loop().create_future()
        self._placed = False
        self._saved_turns = 0
        self._turn = 0
        self._sent: list[dict[str, Any]] = []  # the parts given to the reply, joined
        self._marks: dict[int, tuple[int, int | None]] = {}  # where each turn starts in them
        self._streamed: dict[tuple[Any, ...], str] = {}  # each streamed part's text, by its place
        self._last: tuple[Any, ...] | None = None  # the place of the last part streamed
        self._calls: set[str] = set()
        self._cancelled = False
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        session._live = self
        self._task = asyncio.create_task(self._pump(), name="persist live run")

    # What the caller uses.

    async def started(self) -> LiveReply | None:
        """The reply, once started (None when the run ended before its first model event)."""
        return await asyncio.shield(self._started)

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        """The run's events, as ``RunResultStreaming.stream_events()`` gives them (read once);
        the run's error is raised at the end, as the SDK raises it. Unlike the SDK's, a reader
        that goes away (its task cancelled) leaves the run going: :meth:`stop` or
        :meth:`cancel` ends it."""
        while True:
            event = await self._events.get()
            if event is _END:
                break
            yield event
        await self.wait()

    async def wait(self) -> RunResultStreaming:
        """Waits for the run's end (the reply ended, the session written): the result. Raises
        the run's error."""
        await asyncio.shield(self._task)
        return self.result

    async def stop(self) -> None:
        """Stops the run as a client does: the reply is stopped, the run cancelled."""
        reply = self.reply
        if reply is not None:
            await reply.store.stop_reply(reply.session_id, reply.id)
        else:
            self.cancel()

    def cancel(self) -> None:
        """Cancels the run at once (``RunResultStreaming.cancel()``): the reply ends interrupted."""
        self._cancelled = True
        self.result.cancel()

    # The session's hook: where the SDK's saves go.

    async def _parent_of_save(self) -> str | None:
        """The message a save of the SDK follows: the reply's parent for the first save of
        generated items, else None (the active branch's end)."""
        if not self._answered:
            return None  # the run's input
        reply = await asyncio.shield(self._started)
        self._saved_turns += 1
        if reply is None or self._placed:
            return None
        self._placed = True
        return reply.parent_id

    # The run, written.

    async def _pump(self) -> None:
        session = self.session
        watch: asyncio.Task[None] | None = None
        failure: BaseException | None = None
        events = self.result.stream_events()
        try:
            async for event in events:
                if self.reply is None and isinstance(event, (RawResponsesStreamEvent, RunItemStreamEvent)):
                    self.reply = await LiveReply.start(session.store, session.session_id, lease=self._lease)
                    self._started.set_result(self.reply)
                    watch = asyncio.create_task(self._cancel_on_stop(self.reply))
                if self.reply is not None:
                    try:
                        self._write(event)
                    except Exception:  # the reply misses it; the run goes on
                        _log.exception("persist: a stream event was not written to live reply %s", self.reply.id)
                self._events.put_nowait(event)
        except BaseException as error:  # the run's error, or the start's (ReplyRunning)
            failure = error
            if not self.result.is_complete:
                self.result.cancel()
            close = getattr(events, "aclose", None)  # an async generator's
            if close is not None:
                await close()
        finally:
            if not self._started.done():
                self._started.set_result(None)
            if watch is not None:
                watch.cancel()
            try:
                await self._end(failure)
            finally:
                session._live = None
                self._events.put_nowait(_END)
        if failure is not None:
            raise failure

    async def _cancel_on_stop(self, reply: LiveReply) -> None:
        await reply.stopped.wait()
        self.stopped = True
        self.result.cancel()

    async def _end(self, failure: BaseException | None) -> None:
        """Ends the reply as the run ended, and keeps in the session what the SDK did not save."""
        reply = self.reply
        if reply is None:
            return
        cancelled = self._cancelled or getattr(self.result, "_cancel_mode", "none") != "none"
        if failure is None and not cancelled and not reply.stopped.is_set():
            try:
                await reply.finish()
            except Exception:  # kept in reply.error: the reply is not whole, the session is
                _log.warning("persist: live reply %s was not written whole", reply.id, exc_info=True)
            return
        if failure is None:
            reason = "stopped" if reply.stopped.is_set() else "cancelled"
        elif isinstance(failure, asyncio.CancelledError):
            reason = "cancelled"
        else:
            reason = f"{type(failure).__name__}: {failure}"
        await reply.interrupt(reason)
        tail = self._unsaved_items() if self._saved_turns > 0 else []
        if tail:
            try:
                await self.session.store.add_items(self.session.session_id, tail)
            except PersistError as error:
                _log.warning("persist: the unsaved end of live reply %s was not added to the session: %s", reply.id, error)

    def _unsaved_items(self) -> list[dict[str, Any]]:
        """What the reply holds (as written) of the turns the SDK did not save, as items: its
        text as an ``incomplete`` assistant message, its tool calls that have outputs."""
        assert self.reply is not None
        mark = self._marks.get(self._saved_turns + 1)
        if mark is None:
            return []
        index, chars = mark
        parts = [dict(part) for part in self.reply.parts[index:]]
        if chars is not None and parts:
            parts[0]["text"] = parts[0]["text"][chars:]
        answered = {part["call_id"] for part in parts if part["type"] == "tool_result"}
        called = {part["id"] for part in parts if part["type"] == "tool_call"}
        items: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []
        for part in parts:
            if part["type"] == "text" and part["text"]:
                texts.append({"type": "output_text", "text": part["text"], "annotations": []})
                continue
            if part["type"] not in ("tool_call", "tool_result"):
                continue
            if part["type"] == "tool_call" and part["id"] not in answered:
                continue
            if part["type"] == "tool_result" and part["call_id"] not in called:
                continue
            if texts:
                items.append(_message(texts))
                texts = []
            if part["type"] == "tool_call":
                arguments = part["arguments"]
                arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
                items.append({"type": "function_call", "call_id": part["id"], "name": part["name"], "arguments": arguments})
            else:
                output = part["output"]
                output = output if isinstance(output, (str, list)) else json.dumps(output)
                items.append({"type": "function_call_output", "call_id": part["call_id"], "output": output})
        if texts:
            items.append(_message(texts))
        return items

    def _write(self, event: StreamEvent) -> None:
        """Writes what ``event`` adds to the reply."""
        if isinstance(event, RawResponsesStreamEvent):
            data: Any = event.data
            kind = getattr(data, "type", None)
            if kind == "response.created":
                self._turn += 1
                self._marks[self._turn] = self._end_of_parts()
                self._last = None
            elif kind in ("response.output_text.delta", "response.refusal.delta"):
                self._stream("text", ("content", data.output_index, data.content_index), data.delta)
            elif kind == "response.reasoning_summary_text.delta":
                self._stream("reasoning", ("summary", data.output_index, data.summary_index), data.delta)
            elif kind == "response.reasoning_text.delta":
                self._stream("reasoning", ("content", data.output_index, data.content_index), data.delta)
            elif kind == "response.output_item.done":
                self._complete(data.output_index, data.item)
        elif isinstance(event, RunItemStreamEvent):
            if event.name in ("tool_called", "handoff_requested"):
                self._tool_call(event.item.raw_item)
            elif event.name in ("tool_output", "handoff_occured"):
                self._tool_result(event.item.raw_item)

    def _send(self, part: dict[str, Any]) -> None:
        """Gives ``part`` to the reply (queued, written in the background)."""
        assert self.reply is not None
        _join(self._sent, part)
        kind, reply = part["type"], self.reply
        if kind == "text":
            reply.text(part["text"])
        elif kind == "reasoning":
            reply.reasoning(part["text"])
        elif kind == "tool_call":
            reply.tool_call(part["id"], part["name"], part["arguments"])
        else:
            reply.tool_result(part["call_id"], part["output"], part["is_error"])

    def _end_of_parts(self) -> tuple[int, int | None]:
        """Where the parts given so far end: the next part's index, or the last part's and its
        length when it is text or reasoning (which the next delta of its kind joins)."""
        parts = self._sent
        if parts and parts[-1]["type"] in ("text", "reasoning"):
            return len(parts) - 1, len(parts[-1]["text"])
        return len(parts), None

    def _stream(self, kind: str, place: tuple[Any, ...], delta: str) -> None:
        """More text of the streamed part at ``place`` (in this turn)."""
        assert self.reply is not None
        if not delta:
            return
        place = (self._turn, *place)
        written = self._streamed.get(place)
        if written is None:
            written = ""
            last = self._last
            if last is not None and last[0] == kind and last[1] != place:
                delta = "\n\n" + delta
                written = "\n\n"
        self._streamed[place] = written + delta
        self._last = (kind, place)
        self._send({"type": kind, "text": delta})

    def _complete(self, output_index: int, item: Any) -> None:
        """An item done: what its deltas did not bring of its texts is written."""
        kind = _field(item, "type")
        places: list[tuple[str, tuple[Any, ...], str | None]] = []
        if kind == "message":
            for index, block in enumerate(_field(item, "content") or []):
                text = _field(block, "text") if _field(block, "type") == "output_text" else _field(block, "refusal")
                places.append(("text", ("content", output_index, index), text))
        elif kind == "reasoning":
            for index, entry in enumerate(_field(item, "summary") or []):
                places.append(("reasoning", ("summary", output_index, index), _field(entry, "text")))
            for index, entry in enumerate(_field(item, "content") or []):
                places.append(("reasoning", ("content", output_index, index), _field(entry, "text")))
        for part_kind, place, text in places:
            if not isinstance(text, str):
                continue
            written = self._streamed.get((self._turn, *place), "").removeprefix("\n\n")
            if len(text) > len(written) and text.startswith(written):
                self._stream(part_kind, place, text[len(written) :])

    def _tool_call(self, raw: Any) -> None:
        assert self.reply is not None
        kind = _field(raw, "type")
        call_id = _field(raw, "call_id") or _field(raw, "id")
        if not isinstance(call_id, str) or call_id in self._calls:
            return
        self._calls.add(call_id)
        if kind == "function_call":
            arguments: Any = _field(raw, "arguments")
        elif kind == "custom_tool_call":
            arguments = _field(raw, "input")
        else:
            arguments = _json(raw)
        self._send({"type": "tool_call", "id": call_id, "name": _field(raw, "name") or str(kind), "arguments": arguments})
        self._last = None

    def _tool_result(self, raw: Any) -> None:
        assert self.reply is not None
        call_id = _field(raw, "call_id")
        if not isinstance(call_id, str):
            return
        output = _json(_field(raw, "output"))
        self._send({"type": "tool_result", "call_id": call_id, "output": output, "is_error": call_id in self._errors})
        self._last = None


def _message(texts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "status": "incomplete", "content": texts}


def run_streamed_live(
    agent: Any,
    input: Any,  # noqa: A002 (the SDK's name)
    *,
    session: PersistSession,
    lease: float = 30.0,
    run_config: RunConfig | dict[str, Any] | None = None,
    hooks: RunHooksBase[Any, Any] | None = None,
    **kwargs: Any,
) -> LiveRun:
    """Runs ``Runner.run_streamed(agent, input, session=session, ...)`` and writes its stream
    into a live reply of ``session`` as it comes (see the module). ``lease``: the seconds the
    writer may be silent before followers take the reply for dead (renewed while it waits).
    ``run_config``, ``hooks`` and ``kwargs`` are the SDK's (``context``, ``max_turns``, ...); a
    ``tool_error_formatter`` of the config is still called. Call it in the event loop that
    runs the run; one live run per session object at a time."""
    if hooks is not None and not isinstance(hooks, RunHooksBase):
        raise TypeError(f"hooks must be RunHooks, not {type(hooks).__name__}")
    if session._live is not None:
        raise RuntimeError("this PersistSession is in a live run already: one reply of a session runs at a time")
    errors: set[str] = set()
    if run_config is None:
        run_config = RunConfig()
    elif isinstance(run_config, dict):
        run_config = RunConfig(**run_config)
    formatter = run_config.tool_error_formatter

    def note_error(args: Any) -> Any:
        errors.add(args.call_id)
        return formatter(args) if formatter is not None else None

    run_config = dataclasses.replace(run_config, tool_error_formatter=note_error)
    live_hooks = _Hooks(hooks)
    # The run's task starts at the caller's next await: the hooks and the session know the run
    # before it.
    result = Runner.run_streamed(agent, input, session=session, run_config=run_config, hooks=live_hooks, **kwargs)
    live_hooks.run = LiveRun(session, result, lease, errors)
    return live_hooks.run
