r"""The connection core shared by both roles: reading, write batching, backpressure,
acknowledgements, keepalive, abuse limits and closing, written once.

`Connection` is an `asyncio.Protocol` around one HTTP/2 engine (greet.transport._engine). Its
life is a `ConnectionState`, which only the connection changes:

    HANDSHAKE -> OPEN -> DRAINING -> CLOSING -> CLOSED
                    \___________________^ (an error, a lost socket, a keepalive timeout)

- Writes are batched: a unary reply is three HTTP/2 steps (HEADERS, DATA, trailers) and each
  `transport.write` is a send() system call, which was the largest single cost in a profile of a
  unary call. Calls hand their frames to the engine and ask for a flush (`want_flush`); the flush
  runs once, at the end of the current round of callbacks, after every call that ran in that
  round has queued what it had; while input is processed, what calls send goes out with the
  flush that ends the processing. The order of bytes is the engine's order.
- Backpressure: a stream over `stream_send_buffer` queued bytes, or a connection whose socket
  paused writing or whose engine queue is over `connection_send_buffer`, makes its sender wait
  (`wait_writable`) until the socket and the engine drain; a peer that stops reading holds a
  bounded amount of memory.
- Keepalive (grpc-go's keepalive package; the role's `KeepaliveTimers` say when): after a quiet
  period a PING; no acknowledgement within the timeout closes the connection.
- Abuse limits the connection applies itself, the same way on both engines: `TokenBucket`
  (RST_STREAM and SETTINGS floods: GOAWAY ENHANCE_YOUR_CALM) and `PingStrikes` (grpc-go's keepalive
  enforcement: GOAWAY ENHANCE_YOUR_CALM "too_many_pings", which grpc-go and grpcio clients read to
  back off).

The server role (greet.transport._server) adds calls, limits per stream, drain and the server's
timers (handshake, idleness, age); the client role (greet.transport._client) adds streams of
calls, GOAWAY handling and the handshake wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

from greet.transport.config import TransportConfig

__all__ = [
    "WRITE_BUFFER_HIGH",
    "ConnectionLifecycle",
    "Lifecycle",
    "PingStrikes",
    "TokenBucket",
    "WriteBatcher",
    "batching_transport",
]

log = logging.getLogger("greet.transport")


# -- policy ----------


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; `take()` is False once empty."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        tokens = self._tokens
        if tokens < 1.0:
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - self._last) * self.rate)
            self._last = now
            if tokens < 1.0:
                self._tokens = tokens
                return False
        elif tokens < self.burst:
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - self._last) * self.rate)
            self._last = now
        else:
            self._last = time.monotonic()
        self._tokens = tokens - 1.0
        return True


class PingStrikes:
    """Counts pings that break the keepalive enforcement policy (see the module docstring)."""

    __slots__ = ("_last_ping", "max_strikes", "min_time", "permit_without_calls", "strikes")

    NO_CALLS_INTERVAL = 7200.0  # grpc-go: without calls, one ping per two hours is fine

    def __init__(self, min_time: float, permit_without_calls: bool, max_strikes: int) -> None:
        self.min_time = min_time
        self.permit_without_calls = permit_without_calls
        self.max_strikes = max_strikes
        self.strikes = 0
        self._last_ping: float | None = None

    def ping(self, calls_open: bool) -> bool:
        """Record a PING; False when the peer has earned a GOAWAY."""
        now = time.monotonic()
        last = self._last_ping
        self._last_ping = now
        if last is not None:
            allowed = (
                self.min_time
                if calls_open or self.permit_without_calls
                else max(self.min_time, self.NO_CALLS_INTERVAL)
            )
            if now - last < allowed:
                self.strikes += 1
        return self.strikes <= self.max_strikes

    def forgive(self) -> None:
        """The server sent HEADERS or DATA: pings so far are fine (grpc-go resets on writes)."""
        self.strikes = 0
        self._last_ping = None


# -- writes ----------

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


# -- lifecycle ----------

AGE_JITTER = 0.1


class Lifecycle(Protocol):
    """What the timers need from a connection."""

    @property
    def calls_open(self) -> int: ...

    def send_keepalive_ping(self) -> None: ...

    def begin_drain(self, reason: str) -> None: ...

    def end_calls(self, reason: str) -> None: ...

    def close(self, reason: str) -> None: ...


class ConnectionLifecycle:
    """The timers of one connection (see the module docstring)."""

    __slots__ = (
        "_age",
        "_config",
        "_connection",
        "_grace",
        "_handshake",
        "_idle",
        "_keepalive",
        "_keepalive_deadline",
        "_loop",
        "last_call_ended",
        "last_read",
    )

    def __init__(
        self,
        connection: Lifecycle,
        config: TransportConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connection = connection
        self._config = config
        self._loop = loop
        now = loop.time()
        self.last_read = now
        self.last_call_ended = now
        self._handshake: asyncio.TimerHandle | None = loop.call_later(
            config.handshake_timeout, self._handshake_expired
        )
        self._keepalive: asyncio.TimerHandle | None = loop.call_later(
            config.keepalive.time, self._keepalive_due
        )
        self._keepalive_deadline: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        if config.max_connection_idle is not None:
            self._idle = loop.call_later(config.max_connection_idle, self._idle_due)
        self._age: asyncio.TimerHandle | None = None
        if config.max_connection_age is not None:
            jitter = random.uniform(1 - AGE_JITTER, 1 + AGE_JITTER)
            self._age = loop.call_later(config.max_connection_age * jitter, self._age_due)
        self._grace: asyncio.TimerHandle | None = None

    def handshake_done(self) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None

    def _handshake_expired(self) -> None:
        self._handshake = None
        self._connection.close(
            f"no HTTP/2 preface within {self._config.handshake_timeout:g}s (handshake timeout)"
        )

    # -- keepalive ---------------------------------------------------------------------------

    def _keepalive_due(self) -> None:
        quiet_for = self._loop.time() - self.last_read
        interval = self._config.keepalive.time
        if quiet_for < interval:
            self._keepalive = self._loop.call_later(interval - quiet_for, self._keepalive_due)
            return
        self._connection.send_keepalive_ping()
        self._keepalive_deadline = self._loop.call_later(
            self._config.keepalive.timeout, self._keepalive_expired
        )
        self._keepalive = self._loop.call_later(interval, self._keepalive_due)

    def ping_acknowledged(self) -> None:
        if self._keepalive_deadline is not None:
            self._keepalive_deadline.cancel()
            self._keepalive_deadline = None

    def _keepalive_expired(self) -> None:
        self._keepalive_deadline = None
        log.info(
            "keepalive ping not acknowledged within %gs: closing the connection",
            self._config.keepalive.timeout,
        )
        self._connection.close(
            f"keepalive ping not acknowledged within {self._config.keepalive.timeout:g}s"
        )

    # -- idleness and age --------------------------------------------------------------------

    def _idle_due(self) -> None:
        limit = self._config.max_connection_idle
        assert limit is not None
        if self._connection.calls_open:
            self._idle = self._loop.call_later(limit, self._idle_due)
            return
        idle_for = self._loop.time() - self.last_call_ended
        if idle_for < limit:
            self._idle = self._loop.call_later(limit - idle_for, self._idle_due)
            return
        self._idle = None
        self._connection.begin_drain("max_idle")

    def _age_due(self) -> None:
        self._age = None
        self._connection.begin_drain("max_age")
        grace = self._config.max_connection_age_grace
        if grace is not None:
            self._grace = self._loop.call_later(grace, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        self._connection.end_calls("max connection age grace period over")

    def stop(self) -> None:
        """The connection is closed: no timer may fire any more."""
        for handle in (
            self._handshake,
            self._keepalive,
            self._keepalive_deadline,
            self._idle,
            self._age,
            self._grace,
        ):
            if handle is not None:
                handle.cancel()
        self._handshake = self._keepalive = self._keepalive_deadline = None
        self._idle = self._age = self._grace = None
