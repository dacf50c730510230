"""ServerConnection: one client connection, from its first byte to its last.

An `asyncio.Protocol` that drives the connection's HTTP/2 engine (greet.transport.engine) and
implements `EngineEvents`: it turns request headers into calls (greet.transport.server_stream),
hands DATA to them, and applies the limits that are the connection's to apply, on both engines
alike (each answers what grpc-go and grpcio answer):

    more streams than MAX_CONCURRENT_STREAMS       REFUSED_STREAM for the extra stream
    request headers over --max-header-list-bytes   RESOURCE_EXHAUSTED for that call
    RST_STREAM faster than --max-resets-per-second GOAWAY ENHANCE_YOUR_CALM (rapid reset)
    SETTINGS flood                                 GOAWAY ENHANCE_YOUR_CALM
    PINGs against the keepalive policy             GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
    a protocol error, or an engine limit           GOAWAY with the error code, then close
    unknown method                                 UNIMPLEMENTED, with content-type
    not POST / not application/grpc                HTTP 405 / 415 with a gRPC status
    bad grpc-timeout                               INTERNAL
    a peer that stops reading                      senders wait (bounded buffers); ACKs of
                                                   PINGs and SETTINGS are bounded too

Timers (keepalive, idleness, age, handshake) are greet.transport.lifecycle's; graceful drain
(two GOAWAYs) is `begin_drain`, driven by the server or by the age timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from grpclib.const import Status
from grpclib.protocol import Peer

from greet.transport.call_runner import run_call
from greet.transport.eager import start_call
from greet.transport.engine import (
    EngineFailure,
    ErrorCode,
    Headers,
    new_engine,
)
from greet.transport.lifecycle import ConnectionLifecycle
from greet.transport.policy import PingStrikes, TokenBucket
from greet.transport.request_head import BadRequestHead
from greet.transport.server_output import ServerOutput
from greet.transport.server_stream import ServerCall
from greet.transport.writes import WriteBatcher, batching_transport

if TYPE_CHECKING:
    from greet.transport.server import TransportServer

__all__ = ["ServerConnection"]

log = logging.getLogger("greet.transport")

MAX_STREAM_ID = 2**31 - 1


class ServerConnection(ServerOutput, asyncio.Protocol):
    """One HTTP/2 connection of a TransportServer (see the module docstring)."""

    def __init__(self, server: TransportServer) -> None:
        super().__init__()
        self.server = server
        config = server.transport_config
        self.config = config
        self.calls: dict[int, ServerCall] = {}
        self.stream_send_buffer = config.stream_send_buffer
        self.max_concurrent_streams = config.max_concurrent_streams
        self.max_message_bytes = config.max_message_bytes
        self.connection_send_buffer = config.connection_send_buffer
        self.highest_stream_id = 0
        self.draining = False
        self.final_goaway: int | None = None  # the last stream id of the final GOAWAY
        self.closing = False
        self._resets = TokenBucket(config.max_resets_per_second, config.reset_burst)
        self._settings = TokenBucket(config.max_settings_per_second, config.settings_burst)
        self._pings = PingStrikes(
            config.keepalive.min_time,
            config.keepalive.permit_without_calls,
            config.keepalive.max_ping_strikes,
        )
        self._settings_seen = 0
        self._handshake_done = False
        self._drain_ping = False
        self.peer: Peer

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = batching_transport(transport)
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.peer = Peer(transport)
        self.engine = new_engine(
            self.config.engine, client=False, limits=self.server.engine_limits, events=self
        )
        self.writes = WriteBatcher(loop, self._flush)
        self.lifecycle = ConnectionLifecycle(self, self.config, loop)
        self.server.connections.add(self)
        self.engine.initiate()
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.lifecycle.last_read = self.loop.time()
        writes = self.writes
        writes.holding = True  # what calls send now goes out with the flush below
        try:
            self.engine.receive(data)
        except EngineFailure as failure:
            self._fail(failure)
            return
        finally:
            writes.holding = False
        writes.now()

    def eof_received(self) -> bool:
        return False  # the peer is done: close (HTTP/2 has no half-closed connections)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closing = True
        self.lifecycle.stop()
        self.server.connections.discard(self)
        calls = list(self.calls.values())
        self.calls.clear()
        for call in calls:
            call.terminate()
        for call in self._waiting_writers:
            call.writable()
        self._waiting_writers.clear()
        self._reset_after_trailers.clear()
        self.server.connection_closed(self)

    def sent_something(self) -> None:
        """A call queued HEADERS or DATA: flush soon, and client pings so far are forgiven."""
        self._pings.forgive()
        self.writes.request()

    # -- lifecycle (greet.transport.lifecycle.Lifecycle) ------------------------------------

    @property
    def calls_open(self) -> int:
        return len(self.calls)

    def send_keepalive_ping(self) -> None:
        self.engine.ping(b"greet-ka")
        self.writes.request()

    def begin_drain(self, reason: str = "server shutting down") -> None:
        """First GOAWAY (last stream id 2^31-1) and a PING; the final GOAWAY follows its ACK."""
        if self.draining or self.closing:
            return
        self.draining = True
        self.engine.goaway(ErrorCode.NO_ERROR, MAX_STREAM_ID, reason.encode())
        self.engine.ping(b"greet-gw")
        self._drain_ping = True
        self.writes.now()

    def final_goaway_now(self) -> None:
        """The second GOAWAY: streams above the last one accepted are refused from now on."""
        if self.final_goaway is not None or self.closing:
            return
        self.draining = True
        self.final_goaway = self.highest_stream_id
        self.engine.goaway(ErrorCode.NO_ERROR, self.highest_stream_id)
        self.writes.now()

    def end_calls(self, reason: str) -> None:
        """End every call in flight with UNAVAILABLE (the drain's grace period is over)."""
        for call in list(self.calls.values()):
            task = call.task
            if task is not None and not task.done():
                call.shutting_down = True
                task.cancel()
            elif not call.started:
                self.reject(call, Status.UNAVAILABLE, "the server is shutting down")
        log.debug("ending calls on %s: %s", self.peer_name, reason)

    # -- EngineEvents ------------------------------------------------------------------------

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        if stream_id > self.highest_stream_id:
            self.highest_stream_id = stream_id
        engine = self.engine
        if self.final_goaway is not None and stream_id > self.final_goaway:
            engine.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        if len(self.calls) >= self.max_concurrent_streams:
            engine.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        route = self.server.route(headers)
        rejection = route.rejection
        if rejection is not None:
            status, message, http_status = rejection
            self._answer(stream_id, status, message, http_status=http_status, ended=end_stream)
            return
        head = route.head
        try:
            deadline = head.deadline() if head.timeout is not None else None
            metadata = head.metadata()
        except BadRequestHead as error:
            self._answer(stream_id, Status.INTERNAL, str(error), ended=end_stream)
            return
        call = ServerCall(self, stream_id, route, deadline, metadata)
        self.calls[stream_id] = call
        if end_stream:
            call.end_request()
        if call._cardinality.client_streaming or end_stream:
            self._run(call)

    def _run(self, call: ServerCall) -> None:
        """Start the handler; a unary request is checked for its one message first."""
        if call.unary_request and call.single is None:
            if call.recv_error is not None:
                self.reject(call, call.recv_error.status, call.recv_error.message or "")
                return
            count = len(call.framer.messages)
            if count != 1:
                self.reject(
                    call,
                    Status.INTERNAL,
                    f"{call._method_name} takes one request message; the client sent {count}",
                )
                return
        call.started = True
        call.task = start_call(self.loop, run_call(call), eager=self.config.eager_calls)

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None or call.closed:
            self.engine.acknowledge(stream_id, len(data))
            return
        if end_stream and call.unary_request and not call.started and call.framer.untouched:
            # The usual unary request: its one whole message in the DATA frame that ends it.
            size = len(data) - 5
            if (
                size >= 0
                and data[0] == 0
                and int.from_bytes(data[1:5], "big") == size
                and size <= self.max_message_bytes
            ):
                call.single = data[5:]
                call.unacked = len(data)
                call.request_ended = True
                self._run(call)
                return
        call.feed(data, end_stream)
        if call.started:
            return
        if end_stream:
            self._run(call)
        elif call.recv_error is not None:
            self.reject(call, call.recv_error.status, call.recv_error.message or "")

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        call = self.calls.get(stream_id)
        if call is None or call.closed:
            return
        call.end_request()
        if not call.started:
            self._run(call)

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        if not self._resets.take():
            self._goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM,
                b"too_many_resets",
                "the client reset streams faster than --max-resets-per-second (rapid reset)",
            )
            return
        call = self.calls.pop(stream_id, None)
        if call is not None:
            call.terminate()
            call.release()

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None:
            if not call.started or error_code:
                call.terminate()
                call.release()
            else:
                call.closed = True  # the handler has finished: nothing to cancel
        if not self.calls:
            self.lifecycle.last_call_ended = self.loop.time()

    def on_window_update(self, stream_id: int) -> None:
        if not self._waiting_writers:
            return
        if stream_id:
            call = self.calls.get(stream_id)
            if call is not None and call in self._waiting_writers:
                self.writes.request()
        else:
            self.writes.request()

    def on_ping(self) -> None:
        if not self._pings.ping(bool(self.calls)):
            self._goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings", "too many pings (keepalive policy)"
            )
            return
        self._owe_ack()

    def on_ping_ack(self, payload: bytes) -> None:
        self.lifecycle.ping_acknowledged()
        if self._drain_ping and payload == b"greet-gw":
            self._drain_ping = False
            self.final_goaway_now()

    def on_settings(self) -> None:
        if not self._handshake_done:
            self._handshake_done = True
            self.lifecycle.handshake_done()
        elif not self._settings.take():
            self._goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM, b"too_many_settings", "SETTINGS flood"
            )
            return
        self._owe_ack()

    def _owe_ack(self) -> None:
        """An ACK is queued; a peer that sends PING/SETTINGS but never reads gets a bound."""
        if self._write_paused:
            self._pending_acks += 1
            if self._pending_acks > self.server.engine_limits.max_outbound_acks:
                self._goaway_and_close(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    b"too_many_unread_acks",
                    "the peer sends PING/SETTINGS frames but does not read their ACKs",
                )

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.engine.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)  # not for a server

    def on_connection_closed(self, error_code: int) -> None:
        self._engine_done = True  # closed by the next flush, once the final bytes are written
        self.writes.request()

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        if error_code:
            log.info(
                "client %s sent GOAWAY %s %r",
                self.peer_name,
                _code_name(error_code),
                debug[:100],
            )


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return hex(code)
