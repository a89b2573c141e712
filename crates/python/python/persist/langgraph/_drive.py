"""One implementation for LangGraph's synchronous and asynchronous methods: a method's steps
are a generator that yields the native calls it needs (each a function of ``blocking``) and
returns its answer; :func:`drive_sync` answers each call at once, :func:`drive_async` awaits it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

Call = Callable[..., Any]
Steps = Generator[Call, Any, Any]


def drive_sync(steps: Steps) -> Any:
    """Runs a method's steps, each native call answered at once (the GIL released meanwhile)."""
    try:
        call = next(steps)
        while True:
            call = steps.send(call(blocking=True))
    except StopIteration as stop:
        return stop.value


async def drive_async(steps: Steps) -> Any:
    """Runs a method's steps, each native call awaited."""
    try:
        call = next(steps)
        while True:
            call = steps.send(await call(blocking=False))
    except StopIteration as stop:
        return stop.value


def sweep_steps(native: Any) -> Generator[Call, Any, int]:
    """The steps of a sweep: every expired record of the tenant deleted; how many."""
    return (yield lambda blocking: native.write_records([("sweep",)], blocking=blocking))
