"""Write batching: one socket write per event-loop round, whatever the calls sent in it.

A unary reply is three HTTP/2 steps (HEADERS, DATA, trailers) and a server stream one per
message; each `transport.write` is a send() system call, which was the largest single cost in a
profile of a unary call. Calls hand their frames to the connection's engine and ask for a flush;
`WriteBatcher` runs the flush once, at the end of the current round of callbacks, after every
call that ran in that round has queued what it had. The order of bytes is the engine's order.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

__all__ = ["WRITE_BUFFER_HIGH", "WriteBatcher", "batching_transport"]

WRITE_BUFFER_HIGH = 256 * 1024
"""Bytes queued in the transport above which it tells the connection to pause writing."""


def batching_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """A new connection's transport, set up for batched writes: TCP_NODELAY (greet batches its
    own writes, so Nagle would only delay them) and the WRITE_BUFFER_HIGH pause mark."""
    stream = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses
    sock = stream.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
    return stream


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
