"""Eager calls: a handler runs in the callback that completed its request, and becomes an asyncio
Task only if it has to wait.

Most calls never wait: a unary request is complete when its handler starts, and the reply fits in
the flow-control window. Run that way, a call costs no Task, no trip through the event loop's
ready queue before it starts, and its reply leaves in the same socket write as the callback's
other output. A handler that awaits something that is not ready (a timer, a lock, more messages,
window space) continues in a Task from exactly where it stopped, in the same context.

On Python 3.12 and later this is asyncio's own eager start (`asyncio.Task(..., eager_start=True)`),
under which `asyncio.current_task()` is the call's Task from its first line. On 3.10 and 3.11,
`EagerStart` runs the coroutine's first step itself; during that first step (up to the first
await that waits) there is no current task, so a handler that calls `asyncio.current_task()` or
enters `asyncio.timeout()` before it awaits anything should run with eager calls off
(`TransportConfig.eager_calls`, `python -m greet.server --no-eager-calls`).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_call"]

NATIVE_EAGER = sys.version_info >= (3, 12)


class Resumed(Coroutine[Any, Any, None]):
    """A coroutine that already ran its first step, for an asyncio Task to carry on: the first
    `send` hands the Task the future the coroutine is waiting on."""

    __slots__ = ("_awaiting", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, None], awaiting: Any) -> None:
        self._coro = coro
        self._awaiting = awaiting

    def send(self, value: Any) -> Any:
        awaiting = self._awaiting
        if awaiting is not None:
            self._awaiting = None
            return awaiting
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._awaiting = None
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - Tasks use send
        raise TypeError("a resumed call is driven by its Task, not awaited")


def start_call(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], *, eager: bool
) -> asyncio.Task[None] | None:
    """Start `coro`; None when it finished at once (eager), else its Task."""
    if not eager:
        return loop.create_task(coro)
    if NATIVE_EAGER:  # pragma: no cover - Python 3.12+
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        return None if task.done() else task
    context = contextvars.copy_context()
    try:
        awaiting = context.run(coro.send, None)
    except StopIteration:
        return None
    return context.run(loop.create_task, Resumed(coro, awaiting))
