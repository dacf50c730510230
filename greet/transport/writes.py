"""Write batching: one socket write per event-loop round, whatever the calls sent in it.

A unary reply is three HTTP/2 steps (HEADERS, DATA, trailers) and a server stream one per
message; each `transport.write` is a send() system call, which was the largest single cost in a
profile of a unary call. Calls hand their frames to the connection's engine and ask for a flush;
`WriteBatcher` runs the flush once, at the end of the current round of callbacks, after every
call that ran in that round has queued what it had. The order of bytes is the engine's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["WriteBatcher"]


class WriteBatcher:
    """Schedules `flush` to run once per event-loop round (`request()`), or now (`now()`)."""

    __slots__ = ("_flush", "_loop", "_scheduled", "holding")

    def __init__(self, loop: asyncio.AbstractEventLoop, flush: Callable[[], None]) -> None:
        self._loop = loop
        self._flush = flush
        self._scheduled = False
        self.holding = False  # the caller flushes itself when it is done (input processing)

    def request(self) -> None:
        if not self._scheduled and not self.holding:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def now(self) -> None:
        """Flush at once (the connection is about to close, or is processing input)."""
        self._scheduled = False
        self._flush()

    def _run(self) -> None:
        if self._scheduled:
            self._scheduled = False
            self._flush()
