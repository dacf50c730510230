"""The server: TransportServer (a grpclib Server) and the server role of a connection.

TransportServer is a `grpclib.server.Server` (a subclass): it is built from the same servables
(generated service bases, grpclib's health and reflection), `grpclib.events.listen(server, ...)`
works on it, and `start`, `close` and `wait_closed` keep grpclib's meaning. What is greet's: every
accepted connection is a `ServerConnection` on the engine the TransportConfig names, the server
keeps the list of its connections, and `shutdown` drains them the way grpc-go's GracefulStop
does (grpclib's `close` cancels every call at once and never sends GOAWAY):

1. stop accepting; a GOAWAY (last stream id 2^31-1) and a PING on every connection, then the
   final GOAWAY with the real last stream id once the PING comes back;
2. wait for the calls in flight, up to the grace period (or until `hurry()`, a second signal);
3. end what is left with UNAVAILABLE, and close every connection.

`ServerConnection` is the server role on the shared connection core (greet.transport._connection).
It turns request headers into calls (greet.transport._server_call), hands DATA to them, and applies
the limits that are the connection's to apply, on both engines alike (each answers what grpc-go
and grpcio answer):

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

Its timers, as grpc-go's keepalive package has them: a handshake timeout (no SETTINGS from the
peer in time: closed), keepalive pings, idleness (no call for `max_connection_idle`: a graceful
drain) and a maximum age (give or take 10%, so that replicas' connections do not all end at once:
a graceful drain, with `max_connection_age_grace` more seconds for the calls in flight). A
graceful drain is two GOAWAY frames (RFC 9113 section 6.8): the first with the largest stream id,
so streams the client has already sent are still served, then after a PING round trip the second
with the last stream id really accepted. A call answered while its client was still sending gets
RST_STREAM NO_ERROR after its trailers (the gRPC way to say "stop sending").
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.protocol import Peer
from grpclib.server import Server

from greet.addresses import format_peer
from greet.transport._connection import (
    ConnectionLifecycle,
    PingStrikes,
    TokenBucket,
    WriteBatcher,
    batching_transport,
)
from greet.transport._engine import (
    EngineFailure,
    ErrorCode,
    Header,
    Headers,
    Http2Engine,
    StreamGone,
    goaway_frame,
    new_engine,
)
from greet.transport._server_call import Interceptor, Listening, ServerCall, run_call, start_call
from greet.transport._wire import (
    BadRequestHead,
    RequestHead,
    Route,
    accepted,
    read_request_head,
    rejection,
)
from greet.transport.config import TransportConfig
from greet.transport.decoding import StrictProtoCodec

if TYPE_CHECKING:
    from grpclib._typing import IServable

    from greet.transport._server_call import ServerCall

__all__ = ["CLOSE_TIMEOUT", "LINGER", "ServerConnection", "ServerOutput", "TransportServer"]

log = logging.getLogger("greet.transport")
log = logging.getLogger("greet.server")


# -- server_output ----------

LINGER = 1.0  # seconds a closing connection keeps reading (and dropping) what the peer sends


CLOSE_TIMEOUT = 5.0  # seconds a closed socket may take to write out its last bytes


class ServerOutput:
    """The output half of a ServerConnection (see the module docstring)."""

    engine: Http2Engine
    writes: WriteBatcher
    loop: asyncio.AbstractEventLoop
    calls: dict[int, ServerCall]
    stream_send_buffer: int
    connection_send_buffer: int
    highest_stream_id: int
    draining: bool
    final_goaway: int | None
    closing: bool

    def __init__(self) -> None:
        self.send_blocked = False  # the socket's or the engine's buffer is full
        self._transport: asyncio.Transport | None = None
        self._waiting_writers: set[ServerCall] = set()
        self._reset_after_trailers: list[int] = []
        self._pending_acks = 0  # PING/SETTINGS ACKs owed while the socket is not writable
        self._write_paused = False
        self._engine_done = False

    def pause_writing(self) -> None:
        self._write_paused = True
        self.send_blocked = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pending_acks = 0
        self._update_send_blocked()

    # -- output ------------------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        data = self.engine.data_to_send()
        if self._reset_after_trailers:
            data += self._reset_finished_streams()
        if data:
            transport.write(data)
        if self._engine_done:
            self.close("the HTTP/2 session ended")
            return
        if self.draining and self.final_goaway is not None and not self.calls:
            self.close("drained")
            return
        if self._waiting_writers or self.send_blocked:
            self._update_send_blocked()

    def _reset_finished_streams(self) -> bytes:
        """RST_STREAM(NO_ERROR) for streams answered while the client was still sending (the
        gRPC way to say "stop sending"), once their trailers are out."""
        engine = self.engine
        waiting = []
        for stream_id in self._reset_after_trailers:
            if not engine.is_stream_open(stream_id):
                continue
            if engine.queued(stream_id):
                waiting.append(stream_id)
            else:
                engine.reset_stream(stream_id, ErrorCode.NO_ERROR)
        self._reset_after_trailers = waiting
        return engine.data_to_send()

    def schedule_flush(self) -> None:
        self.writes.request()

    def _update_send_blocked(self) -> None:
        blocked = self._write_paused or self.engine.queued_total() > self.connection_send_buffer
        self.send_blocked = blocked
        if self._waiting_writers:
            engine = self.engine
            ready = [
                call
                for call in self._waiting_writers
                if blocked is False and engine.queued(call.stream_id) <= self.stream_send_buffer
            ]
            for call in ready:
                self._waiting_writers.discard(call)
                call.writable()

    def wait_writable(self, call: ServerCall) -> None:
        self._waiting_writers.add(call)

    def acknowledge(self, call: ServerCall) -> None:
        """The call's handler took (or will never take) what it received: open the window."""
        if call.unacked:
            self.engine.acknowledge(call.stream_id, call.unacked)
            call.unacked = 0
            self.writes.request()

    def send_trailers(
        self, call: ServerCall, headers: list[Header], *, trailers_only: bool
    ) -> None:
        if trailers_only:
            self.engine.send_headers(call.stream_id, headers, end_stream=True)
        else:
            self.engine.send_trailers(call.stream_id, headers)
        if not call.request_ended:
            self._reset_after_trailers.append(call.stream_id)
        self.writes.request()

    def reset(self, call: ServerCall, code: int) -> None:
        self.engine.reset_stream(call.stream_id, code)
        self.writes.request()

    def reject(self, call: ServerCall, status: Status, message: str) -> None:
        """Answer a call that has no handler running: trailers-only with `status`."""
        self._answer(call.stream_id, status, message, ended=call.request_ended)
        call.terminate()

    def _answer(
        self,
        stream_id: int,
        status: Status,
        message: str,
        *,
        http_status: bytes = b"200",
        ended: bool = True,
    ) -> None:
        """A trailers-only response (no handler involved)."""
        try:
            self.engine.send_headers(
                stream_id, rejection(status, message, http_status), end_stream=True
            )
        except StreamGone:
            return  # reset by the client already: nobody to answer
        if not ended:
            self._reset_after_trailers.append(stream_id)
        self.writes.request()

    # -- connection-level ends ---------------------------------------------------------------

    def _goaway_and_close(self, code: ErrorCode, debug: bytes, reason: str) -> None:
        log.info("closing connection from %s: %s", self.peer_name, reason)
        self.engine.goaway(code, self.highest_stream_id, debug)
        self.writes.now()
        self.close(reason)

    def _fail(self, failure: EngineFailure) -> None:
        """The peer broke the protocol (or an engine limit): GOAWAY with the code, close."""
        transport = self._transport
        log.info(
            "HTTP/2 error on connection from %s: %s (%s)",
            self.peer_name,
            failure.message,
            failure.code.name,
        )
        if transport is not None and not transport.is_closing():
            if failure.goaway_queued:
                transport.write(self.engine.data_to_send())
            else:
                debug = failure.message.encode("utf-8", "replace")[:256]
                transport.write(goaway_frame(self.highest_stream_id, failure.code, debug))
        self.close(failure.message)

    def abort(self) -> None:
        """Drop the socket at once (safe when it is closed already)."""
        if self._transport is not None:
            self._transport.abort()

    def close(self, reason: str) -> None:
        """End the connection the way HTTP/2 servers must (a lingering close): what is queued
        is written and followed by a FIN, input is read and dropped until the peer closes too
        or LINGER seconds pass, then the socket is closed. Closing at once while the peer is
        still sending would make the kernel answer with an RST that destroys the GOAWAY."""
        transport = self._transport
        if self.closing:
            return
        self.closing = True
        self.engine.halt()
        if transport is None or transport.is_closing():
            return
        log.debug("connection from %s closing: %s", self.peer_name, reason)
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already (ENOTCONN): nothing left to linger for
                transport.abort()
                return
        self.loop.call_later(LINGER, self._close_now)

    def _close_now(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():  # a peer that does not read
                self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    @property
    def peer_name(self) -> str:
        transport = self._transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return format_peer(address, unknown="unknown peer")


# -- server_connection ----------

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

    # -- lifecycle (greet.transport._connection.Lifecycle) ------------------------------------

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


# -- server ----------

BACKLOG = 1024


ROUTE_CACHE = 256  # distinct request header blocks remembered (then forgotten all at once)


class TransportServer(Server):
    """A grpclib Server on greet's transport (see the module docstring)."""

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        config: TransportConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        codec = codec or StrictProtoCodec()
        # grpclib chooses a status details codec only when it also chooses the message codec
        status_details_codec = status_details_codec or ProtoStatusDetailsCodec()
        super().__init__(handlers, codec=codec, status_details_codec=status_details_codec)
        self.transport_config = config or TransportConfig()
        self.interceptors: tuple[Interceptor, ...] = tuple(interceptors)
        self.engine_limits = self.transport_config.engine_limits()
        self.methods: dict[str, Handler] = {}
        for handler in handlers:
            self.methods.update(handler.__mapping__())
        self.codec = codec
        self.status_details_codec: StatusDetailsCodecBase | None = status_details_codec
        self.dispatch = self.__dispatch__
        self.listening = Listening(self.__dispatch__)
        self.connections: set[ServerConnection] = set()
        self._routes: dict[Headers, Route] = {}
        self.listener: asyncio.Server | None = None
        self._hurry = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def route(self, headers: Headers) -> Route:
        """The Route of a request header block (cached: see greet.transport._wire)."""
        key = headers if type(headers) is tuple else tuple(headers)
        route = self._routes.get(key)
        if route is None:
            route = self._new_route(read_request_head(key))
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _new_route(self, head: RequestHead) -> Route:
        config = self.transport_config
        limit = config.max_header_list_bytes
        if head.size > limit:
            message = (
                f"request headers are {head.size} bytes; the limit (--max-header-list-bytes) "
                f"is {limit}"
            )
            return Route(head, None, (Status.RESOURCE_EXHAUSTED, message, b"200"), None)
        if head.method != b"POST":
            return Route(head, None, (Status.UNIMPLEMENTED, "gRPC requests use POST", b"405"), None)
        content_type = head.content_type
        if content_type is None or not content_type.startswith("application/grpc"):
            message = f"invalid gRPC request content-type {content_type!r}"
            return Route(head, None, (Status.INVALID_ARGUMENT, message, b"415"), None)
        handler = self.methods.get(head.path)
        if handler is None:
            message = f"Method not found: {head.path}"
            return Route(head, None, (Status.UNIMPLEMENTED, message, b"200"), None)
        wanted = config.compression
        reply_encoding = None
        if wanted not in (None, "identity") and wanted in accepted(head.accept_encoding):
            reply_encoding = wanted
        route = Route(head, handler, None, reply_encoding)
        route.call_attributes = {
            "route": route,
            "_method_name": head.path,
            "_cardinality": handler.cardinality,
            "_recv_type": handler.request_type,
            "_send_type": handler.reply_type,
            "_codec": self.codec,
            "_status_details_codec": self.status_details_codec,
            "_dispatch": self.dispatch,
            "user_agent": head.user_agent,
            "handler_func": handler.func,
            "reply_encoding": reply_encoding,
            "unary_request": not handler.cardinality.client_streaming,
        }
        return route

    def connection_factory(self) -> ServerConnection:
        self._all_closed.clear()
        return ServerConnection(self)

    def connection_closed(self, connection: ServerConnection) -> None:
        if not self.connections:
            self._all_closed.set()

    async def start(  # type: ignore[override]  # greet listens on a host/port or a socket
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        if self.listener is not None:
            raise RuntimeError("Server is already started")
        loop = asyncio.get_running_loop()
        handshake = self.transport_config.handshake_timeout if ssl else None
        if sock is not None:
            self.listener = await loop.create_server(
                self.connection_factory,
                sock=sock,
                ssl=ssl,
                backlog=backlog,
                ssl_handshake_timeout=handshake,
            )
        else:
            self.listener = await loop.create_server(
                self.connection_factory,
                host,
                port or 0,
                ssl=ssl,
                backlog=backlog,
                reuse_port=reuse_port,
                ssl_handshake_timeout=handshake,
            )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on."""
        if self.listener is None:
            raise RuntimeError("Server is not started")
        host, port = self.listener.sockets[0].getsockname()[:2]
        return host, port

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The handler tasks still running."""
        return {
            call.task
            for connection in list(self.connections)
            for call in list(connection.calls.values())
            if call.task is not None and not call.task.done()
        }

    def calls(self) -> list[ServerCall]:
        return [call for connection in self.connections for call in connection.calls.values()]

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def hurry(self) -> None:
        """End the grace period now (a second stop signal): what is in flight gets ended."""
        if not self._hurry.is_set():
            log.info("told again to stop: not waiting for the calls in flight")
            self._hurry.set()

    async def shutdown(self, grace: float) -> None:
        """Drain (see the module docstring): returns when every connection is closed."""
        self.stop_accepting()
        connections = list(self.connections)
        for connection in connections:
            connection.begin_drain()
        log.info(
            "draining: stopped accepting connections; GOAWAY sent on %d; %d calls in flight "
            "get up to %gs",
            len(connections),
            len(self.in_flight()),
            grace,
        )
        left = await self._wait_for_calls(grace)
        if left:
            log.info("grace period over: cancelling %d calls", len(left))
        for connection in list(self.connections):
            connection.final_goaway_now()
            connection.end_calls("server stopping")
        await self._wait_for_calls(1.0)  # the ended calls send their UNAVAILABLE trailers
        for connection in list(self.connections):
            connection.close("server stopped")
        if self.listener is not None:
            await self.listener.wait_closed()
        try:
            await asyncio.wait_for(self._all_closed.wait(), 5.0)
        except asyncio.TimeoutError:
            for connection in list(self.connections):
                connection.abort()

    async def _wait_for_calls(self, grace: float) -> set[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = loop.create_task(self._hurry.wait())
        try:
            pending = self.in_flight()
            while pending and not hurried.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*pending, hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending = self.in_flight()  # also calls that raced the first GOAWAY
        finally:
            hurried.cancel()
        return pending

    def close(self) -> None:
        """grpclib's close: stop accepting and end every call now (no grace)."""
        if self.listener is None:
            raise RuntimeError("Server is not started")
        self.stop_accepting()
        for connection in list(self.connections):
            connection.final_goaway_now()
            connection.end_calls("server closed")
            connection.close("server closed")

    async def wait_closed(self) -> None:
        if self.listener is None:
            raise RuntimeError("Server is not started")
        await self.listener.wait_closed()
        tasks = self.in_flight()
        if tasks:
            await asyncio.wait(tasks)
        await self._all_closed.wait()
