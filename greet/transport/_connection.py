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
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar, cast

from greet.addresses import format_peer
from greet.transport._engine import (
    EngineFailure,
    EngineLimits,
    EngineName,
    ErrorCode,
    Http2Engine,
    goaway_frame,
    new_engine,
)

__all__ = [
    "WRITE_BUFFER_HIGH",
    "Connection",
    "ConnectionState",
    "KeepaliveTimes",
    "PingStrikes",
    "TokenBucket",
    "Writer",
    "batching_transport",
    "within",
]

log = logging.getLogger("greet.transport")

WRITE_BUFFER_HIGH = 256 * 1024
"""Bytes queued in the transport above which it tells the connection to pause writing."""
KEEPALIVE_PAYLOAD = b"greet-ka"


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


def batching_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """A new connection's transport, set up for batched writes: TCP_NODELAY (greet batches its
    own writes, so Nagle would only delay them) and the WRITE_BUFFER_HIGH pause mark."""
    stream = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses
    sock = stream.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
    return stream


T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`awaitable`'s result, or TimeoutError after `seconds`. A cancellation that arrives
        as the awaitable completes is never lost: before Python 3.12, asyncio.wait_for returns
        the result instead (CPython gh-86296), and a Ctrl-C at the instant a connection opened
        then left the call waiting for the server's HTTP/2 settings."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`awaitable`'s result, or TimeoutError after `seconds` (asyncio.wait_for)."""
        return await asyncio.wait_for(awaitable, seconds)


class ConnectionState(Enum):
    """A connection's life (see the module docstring); only the connection moves it."""

    HANDSHAKE = "handshake"  # the peer's SETTINGS have not arrived yet
    OPEN = "open"
    DRAINING = "draining"  # a GOAWAY went one way or the other: no new streams
    CLOSING = "closing"  # the last bytes are going out; input is dropped
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class KeepaliveTimes:
    """When to ping a quiet peer (`time`) and how long to wait for its answer (`timeout`)."""

    time: float
    timeout: float


class Writer(Protocol):
    """A stream that waits for room to send (`Connection.wait_writable`)."""

    @property
    def stream_id(self) -> int: ...

    def writable(self) -> None: ...


class Connection(asyncio.Protocol):
    """One HTTP/2 connection of either role (see the module docstring). The roles implement
    `EngineEvents` beyond what is common here, `opened`, `lost`, `close` and
    `keepalive_failed`."""

    state = ConnectionState.HANDSHAKE
    loop: asyncio.AbstractEventLoop
    engine: Http2Engine
    flush_after_input = True
    """Whether the flush that ends the processing of input runs at once; a role that sets it
    False has it scheduled (`want_flush`) behind the callbacks the input woke, so that what they
    send goes out in the same write as the acknowledgements of the input."""

    def __init__(
        self,
        *,
        engine: EngineName,
        client: bool,
        limits: EngineLimits,
        stream_send_buffer: int,
        connection_send_buffer: int,
        keepalive: KeepaliveTimes | None,
    ) -> None:
        self._engine_name: EngineName = engine
        self._client = client
        self._limits = limits
        self.stream_send_buffer = stream_send_buffer
        self.connection_send_buffer = connection_send_buffer
        self._keepalive_times = keepalive
        self.keepalive_scale = 1  # the client doubles its interval after "too_many_pings"
        self.send_blocked = False  # the socket's or the engine's buffer is full
        self.last_read = 0.0
        self.last_stream_id = 0  # the highest stream id the peer opened (a server's GOAWAY)
        self._transport: asyncio.Transport | None = None
        self._write_paused = False
        self._pending_acks = 0  # PING/SETTINGS ACKs owed while the socket is not writable
        self._writers: dict[int, Writer] = {}
        self._flush_scheduled = False
        self._holding = False  # input is being processed: its flush writes what calls send
        self._session_ended = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._keepalive_deadline: asyncio.TimerHandle | None = None

    # -- what the roles implement ------------------------------------------------------------

    def opened(self, transport: asyncio.Transport) -> None:
        """The socket is up and the engine made (before its first bytes are queued)."""

    def lost(self, exc: BaseException | None) -> None:
        """The socket is gone: end what is still open."""

    def close(self, reason: str) -> None:
        raise NotImplementedError

    def keepalive_wanted(self) -> bool:
        """Whether a quiet connection should be pinged now."""
        return True

    def keepalive_failed(self, reason: str) -> None:
        self.close(reason)

    def output_after(self) -> bytes:
        """More bytes to write after the engine's, once they are out (a role's own frames)."""
        return b""

    @property
    def peer_name(self) -> str:
        """The peer's address, for logs."""
        transport = self._transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return format_peer(address, unknown="unknown peer")

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream = batching_transport(transport)
        self.loop = loop = asyncio.get_running_loop()
        self.last_read = loop.time()
        self.engine = new_engine(
            self._engine_name,
            client=self._client,
            limits=self._limits,
            events=self,  # type: ignore[arg-type]
        )
        self.opened(stream)
        self.engine.initiate()
        self.flush()
        times = self._keepalive_times
        if times is not None:
            self._keepalive = loop.call_later(times.time, self._keepalive_due)

    def data_received(self, data: bytes) -> None:
        if self.state is ConnectionState.CLOSING or self.state is ConnectionState.CLOSED:
            return
        self.last_read = self.loop.time()
        self._holding = True
        try:
            self.engine.receive(data)
        except EngineFailure as failure:
            self._holding = False
            self._failed(failure)
            return
        self._holding = False
        if self.flush_after_input:
            self.flush()
        else:
            self.want_flush()

    def eof_received(self) -> bool:
        return False  # the peer is done: close (HTTP/2 has no half-closed connections)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.send_blocked = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pending_acks = 0
        self._update_send_blocked()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.state = ConnectionState.CLOSED
        self._stop_keepalive()
        self.lost(exc)
        self.release_writers()

    def release_writers(self) -> None:
        """Wake every sender waiting for room: the connection is gone, and each sees why."""
        writers = list(self._writers.values())
        self._writers.clear()
        for writer in writers:
            writer.writable()

    # -- output ------------------------------------------------------------------------------

    def want_flush(self) -> None:
        """Something was queued: write it at the end of this event-loop round."""
        if not self._flush_scheduled and not self._holding:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self._flush_scheduled:
            self.flush()

    def flush(self) -> None:
        """Write what the engine has queued, now."""
        self._flush_scheduled = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        data = self.engine.data_to_send()
        more = self.output_after()
        if more:
            data += more
        if data:
            transport.write(data)
        if self._session_ended:
            self.close("the HTTP/2 session ended")
        elif self._writers or self.send_blocked:
            self._update_send_blocked()

    def _update_send_blocked(self) -> None:
        engine = self.engine
        blocked = self._write_paused or engine.queued_total() > self.connection_send_buffer
        self.send_blocked = blocked
        if self._writers and not blocked:
            limit = self.stream_send_buffer
            ready = [w for i, w in self._writers.items() if engine.queued(i) <= limit]
            for writer in ready:
                del self._writers[writer.stream_id]
                writer.writable()

    def must_wait(self, stream_id: int) -> bool:
        """Whether a sender on `stream_id` must wait before it sends more."""
        if self.state is ConnectionState.CLOSED:
            return False
        return self.send_blocked or self.engine.queued(stream_id) > self.stream_send_buffer

    def wait_writable(self, writer: Writer) -> None:
        """`writer.writable()` is called once the stream and the connection have room."""
        self._writers[writer.stream_id] = writer

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application took `size` received bytes of a stream: open the window again."""
        if size and self.state is not ConnectionState.CLOSED:
            self.engine.acknowledge(stream_id, size)
            self.want_flush()

    def owe_ack(self) -> bool:
        """The engine queued a PING or SETTINGS ACK; False once a peer that does not read is
        owed more than the limit."""
        if self._write_paused:
            self._pending_acks += 1
            return self._pending_acks <= self._limits.max_outbound_acks
        return True

    # -- EngineEvents common to both roles ----------------------------------------------------

    def on_window_update(self, stream_id: int) -> None:
        if self._writers and (not stream_id or stream_id in self._writers):
            self.want_flush()

    def on_ping_ack(self, payload: bytes) -> None:
        if self._keepalive_deadline is not None:
            self._keepalive_deadline.cancel()
            self._keepalive_deadline = None

    def on_connection_closed(self, error_code: int) -> None:
        self._session_ended = True  # closed by the next flush, once the final bytes are written
        self.want_flush()

    # -- keepalive ---------------------------------------------------------------------------

    def _keepalive_due(self) -> None:
        times = self._keepalive_times
        assert times is not None
        interval = times.time * self.keepalive_scale
        quiet = self.loop.time() - self.last_read
        if quiet < interval or not self.keepalive_wanted():
            self._keepalive = self.loop.call_later(max(interval - quiet, 0.05), self._keepalive_due)
            return
        self.engine.ping(KEEPALIVE_PAYLOAD)
        self.want_flush()
        if self._keepalive_deadline is None:
            self._keepalive_deadline = self.loop.call_later(times.timeout, self._keepalive_expired)
        self._keepalive = self.loop.call_later(interval, self._keepalive_due)

    def _keepalive_expired(self) -> None:
        self._keepalive_deadline = None
        times = self._keepalive_times
        assert times is not None
        log.info(
            "keepalive ping not acknowledged within %gs: closing the connection", times.timeout
        )
        self.keepalive_failed(f"keepalive ping not acknowledged within {times.timeout:g}s")

    def _stop_keepalive(self) -> None:
        for handle in (self._keepalive, self._keepalive_deadline):
            if handle is not None:
                handle.cancel()
        self._keepalive = self._keepalive_deadline = None

    # -- ends --------------------------------------------------------------------------------

    def goaway_and_close(self, code: ErrorCode, debug: bytes, reason: str) -> None:
        """An abuse limit tripped: GOAWAY with `code`, then close."""
        log.info("closing connection from %s: %s", self.peer_name, reason)
        self.engine.goaway(code, self.last_stream_id, debug)
        self.flush()
        self.close(reason)

    def _failed(self, failure: EngineFailure) -> None:
        """The peer broke the protocol (or an engine limit): GOAWAY with the code, close."""
        log.info(
            "HTTP/2 error on connection from %s: %s (%s)",
            self.peer_name,
            failure.message,
            failure.code.name,
        )
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if failure.goaway_queued:
                transport.write(self.engine.data_to_send())
            else:
                debug = failure.message.encode("utf-8", "replace")[:256]
                transport.write(goaway_frame(self.last_stream_id, failure.code, debug))
        self._session_ended = True
        self.close(failure.message)
