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

Every accepted socket first meets a `FrontDoor`: ALPN (with TLS) or the first bytes (the HTTP/2
preface, or an HTTP/1.1 request line) hand it to a ServerConnection or to an HTTP/1.1 connection
for browsers' Connect and gRPC-Web calls (greet.transport._http1); both are in `connections`
and drain alike.

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
    not POST / no content-type                     HTTP 405 / 415 with a gRPC status
    another content-type, or OPTIONS               Connect, gRPC-Web or a CORS preflight
                                                   (greet.transport._web)
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
import contextlib
import logging
import random
import socket
import ssl as ssl_module
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, cast

from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.protocol import Peer
from grpclib.server import Server

from greet._codec import StrictProtoCodec
from greet.transport._connection import (
    Connection,
    ConnectionState,
    KeepaliveTimes,
    PingStrikes,
    TokenBucket,
)
from greet.transport._engine import MAX_STREAM_ID, ErrorCode, Header, Headers, StreamGone, code_name
from greet.transport._http1 import Http1Connection
from greet.transport._server_call import Interceptor, Listening, ServerCall
from greet.transport._web import H2Sink, WebCall, h2_request, open_call, send_answer
from greet.transport._web_wire import JSON_CODEC, Cors, WebKind
from greet.transport._wire import (
    BadRequestHead,
    RequestHead,
    Route,
    accepted,
    read_deadline,
    read_request_head,
    rejection,
)
from greet.transport.config import TransportConfig

if TYPE_CHECKING:
    from grpclib._typing import IServable

__all__ = ["CLOSE_TIMEOUT", "LINGER", "ServerConnection", "ServerTimers", "TransportServer"]

log = logging.getLogger("greet.transport")
server_log = logging.getLogger("greet.server")


# -- the server role of a connection ------------------------------------------------------------

LINGER = 1.0  # seconds a closing connection keeps reading (and dropping) what the peer sends
CLOSE_TIMEOUT = 5.0  # seconds a closed socket may take to write out its last bytes
AGE_JITTER = 0.1
DRAIN_PING = b"greet-gw"


class ServerTimers:
    """The server's own timers of one connection: handshake, idleness, age and its grace (see
    the module docstring; keepalive is the connection core's)."""

    __slots__ = ("_age", "_config", "_connection", "_grace", "_handshake", "_idle", "_loop")

    def __init__(
        self,
        connection: ServerConnection,
        config: TransportConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connection = connection
        self._config = config
        self._loop = loop
        self._handshake: asyncio.TimerHandle | None = loop.call_later(
            config.handshake_timeout, self._handshake_expired
        )
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

    def _idle_due(self) -> None:
        limit = self._config.max_connection_idle
        assert limit is not None
        connection = self._connection
        if connection.calls:
            self._idle = self._loop.call_later(limit, self._idle_due)
            return
        idle_for = self._loop.time() - connection.last_call_ended
        if idle_for < limit:
            self._idle = self._loop.call_later(limit - idle_for, self._idle_due)
            return
        self._idle = None
        connection.begin_drain("max_idle")

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
        for handle in (self._handshake, self._idle, self._age, self._grace):
            if handle is not None:
                handle.cancel()
        self._handshake = self._idle = self._age = self._grace = None


class ServerConnection(Connection):
    """One HTTP/2 connection of a TransportServer (see the module docstring)."""

    def __init__(self, server: TransportServer) -> None:
        config = server.transport_config
        super().__init__(
            engine=config.engine,
            client=False,
            limits=server.engine_limits,
            stream_send_buffer=config.stream_send_buffer,
            connection_send_buffer=config.connection_send_buffer,
            keepalive=KeepaliveTimes(config.keepalive.time, config.keepalive.timeout),
        )
        self.server = server
        self.config = config
        self.calls: dict[int, ServerCall] = {}  # WebCalls too (Connect and gRPC-Web on HTTP/2)
        self.max_concurrent_streams = config.max_concurrent_streams
        self.max_message_bytes = config.max_message_bytes
        self.eager_calls = config.eager_calls
        self.compression_threshold = config.compression_threshold
        self.final_goaway: int | None = None  # the last stream id of the final GOAWAY
        self.last_call_ended = 0.0
        self._resets = TokenBucket(config.max_resets_per_second, config.reset_burst)
        self._settings = TokenBucket(config.max_settings_per_second, config.settings_burst)
        self._pings = PingStrikes(
            config.keepalive.min_time,
            config.keepalive.permit_without_calls,
            config.keepalive.max_ping_strikes,
        )
        self._reset_after_trailers: list[int] = []
        self._drain_ping = False
        self.peer: Peer

    # -- the connection core's hooks (greet.transport._connection) ---------------------------

    def opened(self, transport: asyncio.Transport) -> None:
        self.peer = Peer(transport)
        self.last_call_ended = self.loop.time()
        self.timers = ServerTimers(self, self.config, self.loop)
        self.server.connections.add(self)

    def lost(self, exc: BaseException | None) -> None:
        self.timers.stop()
        self.server.connections.discard(self)
        calls = list(self.calls.values())
        self.calls.clear()
        for call in calls:
            call.connection_lost()
        self._reset_after_trailers.clear()
        self.server.connection_closed(self)

    def output_after(self) -> bytes:
        """RST_STREAM(NO_ERROR) for streams answered while the client was still sending (the
        gRPC way to say "stop sending"), once their trailers are out."""
        if not self._reset_after_trailers:
            return b""
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

    def flush(self) -> None:
        super().flush()
        if (
            self.state is ConnectionState.DRAINING
            and self.final_goaway is not None
            and not self.calls
        ):
            self.close("drained")

    def close(self, reason: str) -> None:
        """End the connection the way HTTP/2 servers must (a lingering close): what is queued
        is written and followed by a FIN, input is read and dropped until the peer closes too
        or LINGER seconds pass, then the socket is closed. Closing at once while the peer is
        still sending would make the kernel answer with an RST that destroys the GOAWAY."""
        if self.state is ConnectionState.CLOSING or self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSING
        self.engine.halt()
        transport = self._transport
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

    def abort(self) -> None:
        """Drop the socket at once (safe when it is closed already)."""
        if self._transport is not None:
            self._transport.abort()

    # -- what calls tell their connection (greet.transport._server_call) -----------------------

    def send_headers(self, stream_id: int, headers: list[Header]) -> None:
        """Response headers; StreamGone if the stream is gone. Like DATA, they forgive the
        client's pings so far (grpc-go resets its strikes on writes)."""
        self.engine.send_headers(stream_id, headers)
        self._pings.forgive()
        self.want_flush()

    def send_data(self, stream_id: int, data: bytes) -> None:
        """A framed message; StreamGone if the stream is gone."""
        self.engine.send_data(stream_id, data)
        self._pings.forgive()
        self.want_flush()

    def send_trailers(
        self, stream_id: int, headers: list[Header], *, trailers_only: bool, request_ended: bool
    ) -> None:
        """Trailers (or a trailers-only answer) end a call; StreamGone if it is gone."""
        if trailers_only:
            self.engine.send_headers(stream_id, headers, end_stream=True)
        else:
            self.engine.send_trailers(stream_id, headers)
        if not request_ended:
            self._reset_after_trailers.append(stream_id)
        self.want_flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.engine.reset_stream(stream_id, code)
        self.want_flush()

    def send_response(
        self, stream_id: int, headers: list[Header], *, end_stream: bool, request_ended: bool
    ) -> None:
        """A web call's response headers (greet.transport._web); StreamGone if it is gone."""
        self.engine.send_headers(stream_id, headers, end_stream=end_stream)
        self._pings.forgive()
        if end_stream and not request_ended:
            self._reset_after_trailers.append(stream_id)
        self.want_flush()

    def send_body(
        self, stream_id: int, data: bytes, *, end_stream: bool, request_ended: bool
    ) -> None:
        """A web call's response body; StreamGone if the stream is gone."""
        self.engine.send_data(stream_id, data, end_stream=end_stream)
        self._pings.forgive()
        if end_stream and not request_ended:
            self._reset_after_trailers.append(stream_id)
        self.want_flush()

    def answer(
        self,
        stream_id: int,
        status: Status,
        message: str,
        *,
        http_status: bytes = b"200",
        ended: bool = True,
    ) -> None:
        """A trailers-only response no handler is involved in (limits, bad heads, shutdown)."""
        try:
            self.engine.send_headers(
                stream_id, rejection(status, message, http_status), end_stream=True
            )
        except StreamGone:
            return  # reset by the client already: nobody to answer
        if not ended:
            self._reset_after_trailers.append(stream_id)
        self.want_flush()

    # -- drain (the server, or the age and idle timers) ----------------------------------------

    def begin_drain(self, reason: str = "server shutting down") -> None:
        """First GOAWAY (last stream id 2^31-1) and a PING; the final GOAWAY follows its ACK."""
        if self.state is not ConnectionState.OPEN and self.state is not ConnectionState.HANDSHAKE:
            return
        self.state = ConnectionState.DRAINING
        self.engine.goaway(ErrorCode.NO_ERROR, MAX_STREAM_ID, reason.encode())
        self.engine.ping(DRAIN_PING)
        self._drain_ping = True
        self.flush()

    def final_goaway_now(self) -> None:
        """The second GOAWAY: streams above the last one accepted are refused from now on."""
        if self.final_goaway is not None or self.state in (
            ConnectionState.CLOSING,
            ConnectionState.CLOSED,
        ):
            return
        self.state = ConnectionState.DRAINING
        self.final_goaway = self.last_stream_id
        self.engine.goaway(ErrorCode.NO_ERROR, self.last_stream_id)
        self.flush()

    def end_calls(self, reason: str) -> None:
        """End every call in flight with UNAVAILABLE (the drain's grace period is over)."""
        for call in list(self.calls.values()):
            call.shut_down()
        log.debug("ending calls on %s: %s", self.peer_name, reason)

    # -- EngineEvents ------------------------------------------------------------------------

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        if stream_id > self.last_stream_id:
            self.last_stream_id = stream_id
        engine = self.engine
        if self.final_goaway is not None and stream_id > self.final_goaway:
            engine.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        if len(self.calls) >= self.max_concurrent_streams:
            engine.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        route, timeout = self.server.route(headers)
        rejected = route.rejection
        if rejected is not None:
            if rejected is WEB:
                self._web_request(stream_id, headers, end_stream)
                return
            status, message, http_status = rejected
            self.answer(stream_id, status, message, http_status=http_status, ended=end_stream)
            return
        head = route.head
        try:
            deadline = None if timeout is None else read_deadline(timeout)
            metadata = head.metadata()
        except BadRequestHead as error:
            self.answer(stream_id, Status.INTERNAL, str(error), ended=end_stream)
            return
        call = ServerCall(self, stream_id, route, deadline, metadata)
        self.calls[stream_id] = call
        call.headers_received(end_stream)

    def _web_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """A Connect or gRPC-Web request, or a CORS preflight (greet.transport._web)."""
        sink = H2Sink(self, stream_id)
        opened = open_call(self.server, h2_request(headers), sink)
        if isinstance(opened, WebCall):
            self.calls[stream_id] = opened
            opened.headers_received(end_stream)
            return
        with contextlib.suppress(StreamGone):
            send_answer(sink, opened, request_ended=end_stream)

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            self.engine.acknowledge(stream_id, len(data))
            return
        call.data_received(data, end_stream)

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.request_ended()

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        if not self._resets.take():
            self.goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM,
                b"too_many_resets",
                "the client reset streams faster than --max-resets-per-second (rapid reset)",
            )
            return
        call = self.calls.pop(stream_id, None)
        if call is not None:
            call.stream_closed(error_code or ErrorCode.CANCEL)

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None:
            call.stream_closed(error_code)
        if not self.calls:
            self.last_call_ended = self.loop.time()

    def on_ping(self) -> None:
        if not self._pings.ping(bool(self.calls)):
            self.goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings", "too many pings (keepalive policy)"
            )
            return
        self._owe_ack()

    def on_ping_ack(self, payload: bytes) -> None:
        super().on_ping_ack(payload)
        if self._drain_ping and payload == DRAIN_PING:
            self._drain_ping = False
            self.final_goaway_now()

    def on_settings(self) -> None:
        if self.state is ConnectionState.HANDSHAKE:
            self.state = ConnectionState.OPEN
            self.timers.handshake_done()
        elif not self._settings.take():
            self.goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM, b"too_many_settings", "SETTINGS flood"
            )
            return
        self._owe_ack()

    def _owe_ack(self) -> None:
        """An ACK is queued; a peer that sends PING/SETTINGS but never reads gets a bound."""
        if not self.owe_ack():
            self.goaway_and_close(
                ErrorCode.ENHANCE_YOUR_CALM,
                b"too_many_unread_acks",
                "the peer sends PING/SETTINGS frames but does not read their ACKs",
            )

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.engine.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)  # not for a server

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        if error_code:
            log.info(
                "client %s sent GOAWAY %s %r",
                self.peer_name,
                code_name(error_code),
                debug[:100],
            )


# -- the front door ----------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
METHOD_MAX = 20  # an HTTP/1.1 request line starts with a method: upper-case letters, a space


class FrontDoor(asyncio.Protocol):
    """An accepted connection until its protocol is known: HTTP/2 (a ServerConnection) or
    HTTP/1.1 (greet.transport._http1); see that module's docstring."""

    def __init__(self, server: TransportServer) -> None:
        self.server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not asyncio's classes
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if chosen == "h2":
            self._hand_over(ServerConnection(self.server))
        elif chosen == "http/1.1":
            self._hand_over(Http1Connection(self.server))
        else:
            timeout = self.server.transport_config.handshake_timeout
            self._timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer = self._buffer + data
        if buffer.startswith(PREFACE[: min(len(buffer), len(PREFACE))]):
            if len(buffer) < 4:
                return  # "P" may still be POST, PUT or PATCH
            self._hand_over(ServerConnection(self.server))
            return
        space = buffer.find(b" ", 0, METHOD_MAX + 1)
        if space == -1 and len(buffer) <= METHOD_MAX and buffer.isalpha() and buffer.isupper():
            return  # a request method so far
        if space > 0 and buffer[:space].isalpha() and buffer[:space].isupper():
            self._hand_over(Http1Connection(self.server))
        else:  # neither: the HTTP/2 engine refuses it (GOAWAY PROTOCOL_ERROR) and closes
            self._hand_over(ServerConnection(self.server))

    def _hand_over(self, protocol: ServerConnection | Http1Connection) -> None:
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._done = True
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self.server.door_opened(self)
        buffer, self._buffer = self._buffer, b""
        if buffer:
            protocol.data_received(buffer)

    def _too_slow(self) -> None:
        self._timer = None
        self.close()

    def close(self) -> None:
        """Close the socket (no protocol yet: the handshake timed out, or the server stops)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._done:
            self._done = True
            self.server.connection_closed(self)


# -- the server ------------------------------------------------------------------------------


BACKLOG = 1024


ROUTE_CACHE = 256  # distinct request header blocks remembered (then forgotten all at once)

WEB: tuple[Status, str, bytes] = (Status.OK, "a web request", b"200")
"""A Route's `rejection` for what greet.transport._web serves (checked by identity, only on the
path of requests that are not plain gRPC calls, so a gRPC call pays nothing for it)."""


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
        self.connections: set[ServerConnection | Http1Connection] = set()
        self._doors: set[FrontDoor] = set()  # accepted sockets whose protocol is not known yet
        self._routes: dict[Headers, Route] = {}
        self._web_routes: dict[tuple[str, WebKind], Route] = {}
        self.cors = Cors(self.transport_config.cors_allow_origin)
        self.listener: asyncio.Server | None = None
        self._hurry = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def route(self, headers: Headers) -> tuple[Route, bytes | None]:
        """The Route of a request header block, and its grpc-timeout value.

        Routes are cached by the block without its grpc-timeout (greet.transport._wire): a
        client sends the same block call after call, but with each call's own timeout. The
        route's header size counts the timeout field of the first block it was made from."""
        timeout = None
        for name, value in headers:
            if name == b"grpc-timeout":
                timeout = value
                break
        if timeout is None:
            key = headers if type(headers) is tuple else tuple(headers)
        else:
            key = tuple([header for header in headers if header[0] != b"grpc-timeout"])
        route = self._routes.get(key)
        if route is None:
            route = self._new_route(read_request_head(headers))
            if route.rejection is WEB:
                return route, timeout  # not kept: a browser's header blocks vary call by call
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            self._routes[key] = route
        return route, timeout

    def _new_route(self, head: RequestHead) -> Route:
        config = self.transport_config
        limit = config.max_header_list_bytes
        if head.size > limit:
            message = (
                f"request headers are {head.size} bytes; the limit (--max-header-list-bytes) "
                f"is {limit}"
            )
            return Route(head, None, (Status.RESOURCE_EXHAUSTED, message, b"200"), None)
        content_type = head.content_type
        if (
            head.method == b"OPTIONS"
            or (content_type is not None and not content_type.startswith("application/grpc"))
            or (content_type is not None and content_type.startswith("application/grpc-web"))
        ):
            return Route(head, None, WEB, None)  # greet.transport._web
        if head.method != b"POST":
            return Route(head, None, (Status.UNIMPLEMENTED, "gRPC requests use POST", b"405"), None)
        if content_type is None:
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
        return self._handled_route(head, handler, reply_encoding, self.codec)

    def _handled_route(
        self, head: RequestHead, handler: Handler, reply_encoding: str | None, codec: CodecBase
    ) -> Route:
        route = Route(head, handler, None, reply_encoding)
        route.call_attributes = {
            "route": route,
            "_method_name": head.path,
            "_cardinality": handler.cardinality,
            "_recv_type": handler.request_type,
            "_send_type": handler.reply_type,
            "_codec": codec,
            "_status_details_codec": self.status_details_codec,
            "_dispatch": self.dispatch,
            "user_agent": head.user_agent,
            "handler_func": handler.func,
            "reply_encoding": reply_encoding,
            "unary_request": not handler.cardinality.client_streaming,
        }
        return route

    def web_route(self, path: str, kind: WebKind) -> Route | None:
        """The Route of a Connect or gRPC-Web call of `path` (None: no such method)."""
        key = (path, kind)
        route = self._web_routes.get(key)
        if route is None:
            handler = self.methods.get(path)
            if handler is None:
                return None
            head = RequestHead(b"POST", path, kind.content_type.decode(), None, None, None, 0, [])
            route = self._handled_route(
                head, handler, None, JSON_CODEC if kind.json else self.codec
            )
            assert route.call_attributes is not None
            route.call_attributes["protocol"] = kind.name
            self._web_routes[key] = route
        return route

    def connection_factory(self) -> asyncio.Protocol:
        """The protocol of an accepted socket: a FrontDoor, which hands it on."""
        self._all_closed.clear()
        door = FrontDoor(self)
        self._doors.add(door)
        return door

    def connection_closed(self, connection: object) -> None:
        """A connection (or a front door that never handed over) is gone."""
        if isinstance(connection, FrontDoor):
            self._doors.discard(connection)
        if not self.connections and not self._doors:
            self._all_closed.set()

    @property
    def undecided(self) -> int:
        """Accepted sockets whose protocol is not known yet (nothing read from them so far)."""
        return len(self._doors)

    def door_opened(self, door: FrontDoor) -> None:
        """A front door handed its socket to a connection (which is in `connections` now)."""
        self._doors.discard(door)

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

    def calls(self) -> list[ServerCall]:  # HTTP/2 and HTTP/1.1 connections alike
        return [call for connection in self.connections for call in connection.calls.values()]

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def hurry(self) -> None:
        """End the grace period now (a second stop signal): what is in flight gets ended."""
        if not self._hurry.is_set():
            server_log.info("told again to stop: not waiting for the calls in flight")
            self._hurry.set()

    async def shutdown(self, grace: float) -> None:
        """Drain (see the module docstring): returns when every connection is closed."""
        self.stop_accepting()
        connections = list(self.connections)
        for connection in connections:
            connection.begin_drain()
        for door in list(self._doors):  # nothing sent yet: nothing to finish
            door.close()
        server_log.info(
            "draining: stopped accepting connections; GOAWAY sent on %d; %d calls in flight "
            "get up to %gs",
            len(connections),
            len(self.in_flight()),
            grace,
        )
        left = await self._wait_for_calls(grace)
        if left:
            server_log.info("grace period over: cancelling %d calls", len(left))
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
        for door in list(self._doors):
            door.close()
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
