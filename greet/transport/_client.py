"""The client: Channel (a grpclib Channel) and the client role of a connection.

    channel = Channel("127.0.0.1", 8080)                  # engine: GREET_HTTP2_ENGINE or default
    stub = GreetServiceStub(channel)                      # betterproto's generated stub works
    reply = await stub.say_hello(NoParam())
    channel.close()

It is a `grpclib.client.Channel` (a subclass), so everything built on grpclib's Channel
(generated stubs, `channel.request(...)`) runs on it; what it adds is the engine choice, client
keepalive, a handshake timeout, typed stream errors and GOAWAY handling that lets calls in flight
finish. One Channel is one connection to one address at a time; it reconnects for the next call
once a connection has gone.

`ClientConnection` is the client role on the shared connection core (greet.transport._connection):
- it opens streams for calls (greet.transport._client_stream) and waits for a free stream when the
  server's MAX_CONCURRENT_STREAMS is reached;
- a GOAWAY is "no new streams here": calls the server accepted (id <= last stream id) finish,
  calls above it fail with NotProcessed (safe to retry), and the connection closes once its last
  call is done, so a server's graceful drain loses no call in flight;
- a connect under way is shared by the calls that need it (`Channel.__connect__`); a connection
  that sends nothing within the handshake timeout, or closes before its SETTINGS, fails the
  connect with HandshakeFailed, whose message names the likely cause (not HTTP/2, TLS expected,
  a client certificate required);
- client keepalive (ClientKeepalive): pings after a quiet period, closes on a missing answer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from grpclib.client import Channel as GrpclibChannel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.metadata import Deadline, _Metadata, _MetadataLike
from grpclib.protocol import Peer
from multidict import MultiDict

from greet._codec import StrictProtoCodec
from greet.addresses import format_address
from greet.tls import refused_client
from greet.transport._client_stream import (
    ClientStream,
    ConnectionLost,
    HandshakeFailed,
    NotProcessed,
    StreamRefused,
    StreamReset,
)
from greet.transport._connection import Connection, ConnectionState, KeepaliveTimes, within
from greet.transport._engine import ErrorCode, Headers, StreamGone, code_name
from greet.transport._server_call import Listening
from greet.transport._wire import RequestHeads, empty_metadata
from greet.transport.config import ChannelConfig

if TYPE_CHECKING:
    from grpclib.exceptions import StreamTerminatedError

    from greet.transport._client_stream import ClientStream

__all__ = ["Channel", "ClientConnection", "Connector"]

log = logging.getLogger("greet.client")


# -- the client role of a connection -------------------------------------------------------------


READ_BUFFER_SIZE = 64 * 1024
"""Bytes a connection reads from its socket at most at once, into a buffer of its own."""


class ClientConnection(Connection, asyncio.BufferedProtocol):
    """One connection of a Channel (see the module docstring).

    It reads into a buffer of its own (`asyncio.BufferedProtocol`), not into a new bytes object
    for each read: asyncio's reads of up to 256 KiB cost a memory map and unmap each. The flush
    that ends the processing of a read is scheduled behind the calls that read woke
    (`flush_after_input` False), so a call's next request leaves in the same write as the
    acknowledgements (PING, WINDOW_UPDATE) of the reply before it.
    """

    flush_after_input = False

    def __init__(self, config: ChannelConfig, *, tls: bool, target: str) -> None:
        keepalive = config.keepalive
        super().__init__(
            engine=config.engine,
            client=True,
            limits=config.engine_limits(),
            stream_send_buffer=config.stream_send_buffer,
            connection_send_buffer=config.connection_send_buffer,
            keepalive=(
                None
                if keepalive.time is None
                else KeepaliveTimes(keepalive.time, keepalive.timeout)
            ),
        )
        self.config = config
        self.tls = tls
        self.target = target
        self.streams: dict[int, ClientStream] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))

    @property
    def peer_name(self) -> str:
        return self.target

    # -- connecting --------------------------------------------------------------------------

    async def handshake(self) -> None:
        """Wait for the server's SETTINGS (the end of the HTTP/2 preface)."""
        try:
            await within(asyncio.shield(self._ready), self.config.handshake_timeout)
        except asyncio.TimeoutError:
            self.close("no HTTP/2 settings from the server")
            hint = "" if self.tls else " (if it serves TLS, connect with TLS)"
            raise HandshakeFailed(
                f"{self.target} sent no HTTP/2 settings within "
                f"{self.config.handshake_timeout:g}s: not a gRPC server?{hint}"
            ) from None

    @property
    def usable(self) -> bool:
        """New calls may start here."""
        return self.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    @property
    def goaway_received(self) -> bool:
        """The server said: no new streams here (or the connection is gone)."""
        return self.state is not ConnectionState.OPEN and self.state is not (
            ConnectionState.HANDSHAKE
        )

    # -- asyncio.BufferedProtocol ------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_buffer[:nbytes].tobytes())

    # -- the connection core's hooks (greet.transport._connection) ---------------------------

    def opened(self, transport: asyncio.Transport) -> None:
        self.peer = Peer(transport)

    def lost(self, exc: BaseException | None) -> None:
        if not self._ready.done():
            refused = refused_client(exc) if self.tls else None  # its TLS handshake is done
            if refused is not None:
                message = f"{self.target} closed the connection after the TLS handshake: {refused}"
            else:
                reason = f": {exc}" if exc else ""
                hint = "" if self.tls else "; if the server serves TLS, connect with TLS (--tls-ca)"
                message = f"{self.target} closed the connection before HTTP/2 started{reason}{hint}"
            self._ready.set_exception(HandshakeFailed(message))
            self._ready.exception()  # retrieved: whoever awaits it gets it too
        self._end_streams(f"connection lost{': ' + str(exc) if exc else ''}")

    def _end_streams(self, reason: str) -> None:
        """Every stream fails with ConnectionLost; the socket closes."""
        self.state = ConnectionState.CLOSED
        self._stop_keepalive()
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.terminate(ConnectionLost(f"{self.target}: {reason}"))
        self._wake_slots()
        self.release_writers()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def close(self, reason: str = "closed by the client") -> None:
        """Close the connection; its calls fail with ConnectionLost."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self.state is not ConnectionState.CLOSED and not self._session_ended:
                try:
                    self.engine.goaway(ErrorCode.NO_ERROR, 0)
                    self.flush()
                except Exception:  # the engine may have failed already
                    log.debug("no GOAWAY on close", exc_info=True)
            transport.close()
        self._end_streams(reason)

    def keepalive_wanted(self) -> bool:
        return bool(self.streams) or self.config.keepalive.permit_without_calls

    def keepalive_failed(self, reason: str) -> None:
        log.info("%s did not answer a keepalive ping: closing the connection", self.target)
        self._end_streams(reason)
        if self._transport is not None:
            self._transport.abort()

    # -- streams -----------------------------------------------------------------------------

    def has_room(self) -> bool:
        """A new stream may open here now (usable, and below the server's stream limit)."""
        return (
            self.state is ConnectionState.OPEN
            and len(self.streams) < self.engine.peer_max_concurrent_streams
        )

    async def stream_slot(self) -> None:
        """Wait until the server's MAX_CONCURRENT_STREAMS lets another stream open."""
        while self.usable and len(self.streams) >= self.engine.peer_max_concurrent_streams:
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)

    def _wake_slots(self) -> None:
        waiters, self._slot_waiters = self._slot_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def open_stream(self, stream: ClientStream, headers: Headers, end_stream: bool) -> int:
        try:
            stream_id = self.engine.send_request(headers, end_stream=end_stream)
        except StreamGone as error:
            self.state = ConnectionState.DRAINING  # no new streams here: the next call reconnects
            raise NotProcessed(f"{self.target}: cannot open a stream: {error}") from None
        self.streams[stream_id] = stream
        self.want_flush()
        return stream_id

    def forget(self, stream_id: int, unacked: int) -> None:
        """The call is over: reset its stream if it is still open, drop it."""
        if self.streams.pop(stream_id, None) is not None:
            if self.engine.is_stream_open(stream_id):
                self.engine.reset_stream(stream_id, ErrorCode.CANCEL)
                self.want_flush()
            self._after_stream()
        if unacked:
            self.acknowledge(stream_id, unacked)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """A framed message; StreamGone if the stream is gone."""
        self.engine.send_data(stream_id, data, end_stream=end_stream)
        self.want_flush()

    def end_stream(self, stream_id: int) -> None:
        """The client side of a stream ends (no more messages); StreamGone if it is gone."""
        self.engine.end_stream(stream_id)
        self.want_flush()

    def cancel(self, stream_id: int) -> None:
        """Reset one stream (CANCEL): its call gave up (deadline, cancel, a bad reply)."""
        if self.state is not ConnectionState.CLOSED:
            self.engine.reset_stream(stream_id, ErrorCode.CANCEL)
            self.want_flush()

    def _after_stream(self) -> None:
        if self._slot_waiters:
            self._wake_slots()
        if self.state is ConnectionState.DRAINING and not self.streams:
            self.close("the server went away and the last call is done")

    # -- EngineEvents ------------------------------------------------------------------------

    def on_settings(self) -> None:
        if self.state is ConnectionState.HANDSHAKE:
            self.state = ConnectionState.OPEN
        if not self._ready.done():
            self._ready.set_result(None)
        self._wake_slots()  # MAX_CONCURRENT_STREAMS may have grown

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.got_headers(headers, end_stream)

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            self.engine.acknowledge(stream_id, len(data))
            return
        stream.feed(data, end_stream)

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.got_trailers(headers)

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        error: StreamTerminatedError
        if error_code == ErrorCode.REFUSED_STREAM:
            error = StreamRefused(error_code, f"{self.target} refused the stream (REFUSED_STREAM)")
        else:
            error = StreamReset(
                error_code, f"{self.target} reset the stream ({code_name(error_code)})"
            )
        stream.terminate(error)
        self.acknowledge(stream_id, stream.take_unacked())
        self._after_stream()

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.stream_closed(error_code)
            self._after_stream()

    def on_ping(self) -> None:
        pass  # the engine answers

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        if self.state is ConnectionState.OPEN or self.state is ConnectionState.HANDSHAKE:
            self.state = ConnectionState.DRAINING
        if error_code == ErrorCode.ENHANCE_YOUR_CALM and debug == b"too_many_pings":
            self.keepalive_scale = 2
            log.warning("%s: too many pings; keepalive time doubled", self.target)
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last_stream_id:
                self.streams.pop(stream_id)
                stream.terminate(
                    NotProcessed(f"{self.target} is going away (GOAWAY): the call was not served")
                )
        if error_code != ErrorCode.NO_ERROR:
            # An error GOAWAY ends the connection: the server closes it after this frame.
            log.info("GOAWAY %s from %s: %r", code_name(error_code), self.target, debug[:100])
        self._after_stream()

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self.engine.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)  # servers open no streams


# -- the channel -----------------------------------------------------------------------------

Connector: TypeAlias = Callable[[Callable[[], ClientConnection]], Awaitable[ClientConnection]]
"""How a Channel opens a connection: given the factory of its ClientConnection, connect that
protocol to the server and return it. The default opens a TCP (or TLS) socket to the channel's
address (`loop.create_connection`); greet.transport.testing connects it in memory."""


class Channel(GrpclibChannel):
    """One client connection to `host:port` (see the module docstring).

    `ssl`: a client SSLContext for TLS; `server_hostname`: the name to check the server's
    certificate against when it is not `host` (a resolved address, say); `connector`: how to
    open a connection, when not over a socket to `host:port` (greet.transport.testing).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        config: ChannelConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        connector: Connector | None = None,
    ) -> None:
        codec = codec or StrictProtoCodec()
        status_details_codec = status_details_codec or ProtoStatusDetailsCodec()
        super().__init__(
            host, port, ssl=ssl, codec=codec, status_details_codec=status_details_codec
        )
        self.connector: Connector = connector or self.open_socket
        self.transport_config = config or ChannelConfig()
        self.host = host
        self.port = port
        self.tls = ssl
        self.server_hostname = server_hostname
        self.scheme = b"https" if ssl is not None else b"http"
        self.authority = format_address(host, port).encode("ascii")
        compression = self.transport_config.compression
        self.send_encoding = None if compression in (None, "identity") else compression
        self.request_heads = RequestHeads(self.scheme, self.authority, self.send_encoding)
        self.codec = codec
        self.status_details_codec: StatusDetailsCodecBase | None = status_details_codec
        self.listening = Listening(self.__dispatch__)
        self.connection: ClientConnection | None = None
        self._connecting: asyncio.Task[ClientConnection] | None = None
        self._handshaking = False

    def __repr__(self) -> str:
        return f"Channel({self.host!r}, {self.port!r}, engine={self.transport_config.engine!r})"

    @property
    def target(self) -> str:
        return format_address(self.host, self.port)

    async def __connect__(self) -> ClientConnection:  # type: ignore[override]
        """The open connection, or a new one (with its HTTP/2 handshake done).

        A connect under way is shared: every call that needs the connection meanwhile waits for
        the same one and gets its outcome, as grpc-go's subchannel does, instead of opening one
        connection (and waiting one handshake timeout) after another. A caller that gives up
        (its deadline, a cancellation) leaves the connect running for the others."""
        connection = self.connection
        if connection is not None and connection.usable:
            return connection
        pending = self._connecting
        if pending is None:
            pending = self._connecting = asyncio.ensure_future(self._open())
            pending.add_done_callback(self._opened)
        await asyncio.wait((pending,))
        if pending.cancelled():
            raise ConnectionAbortedError(f"{self.target}: the channel closed while connecting")
        return pending.result()

    @property
    def connect_stage(self) -> str:
        """What a connect under way waits for (a deadline error names it)."""
        if self._handshaking:
            return "HTTP/2 handshake not complete"
        return "TLS connection not established" if self.tls else "TCP connection not established"

    async def _open(self) -> ClientConnection:
        timeout = self.transport_config.handshake_timeout
        try:
            protocol = await within(
                self.connector(
                    lambda: ClientConnection(
                        self.transport_config, tls=self.tls is not None, target=self.target
                    )
                ),
                timeout,
            )
        except asyncio.TimeoutError:  # not the call's deadline: a connection that never opened
            raise HandshakeFailed(
                f"{self.target}: no connection within {timeout:g}s ({self.connect_stage})"
            ) from None
        self._handshaking = True
        try:
            await protocol.handshake()
        except BaseException:
            protocol.close("the connect failed")
            raise
        finally:
            self._handshaking = False
        self.connection = protocol
        return protocol

    def _opened(self, pending: asyncio.Task[ClientConnection]) -> None:
        if self._connecting is pending:
            self._connecting = None
        if not pending.cancelled():
            pending.exception()  # retrieved: each waiter raises it for itself

    async def open_socket(self, factory: Callable[[], ClientConnection]) -> ClientConnection:
        """The default Connector: a TCP connection (TLS with `ssl`) to `host:port`."""
        hostname = None
        if self.tls is not None:
            hostname = self.server_hostname or self.host
        _, protocol = await asyncio.get_running_loop().create_connection(
            factory, self.host, self.port, ssl=self.tls, server_hostname=hostname
        )
        return protocol

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[Any],
        reply_type: type[Any],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: _MetadataLike | None = None,
    ) -> ClientStream:
        if timeout is not None and deadline is None:
            deadline = Deadline.from_timeout(timeout)
        elif timeout is not None and deadline is not None:
            deadline = min(Deadline.from_timeout(timeout), deadline)
        return ClientStream(
            self,
            name,
            cast(_Metadata, MultiDict(metadata)) if metadata else empty_metadata(),
            cardinality,
            request_type,
            reply_type,
            codec=self.codec,
            status_details_codec=self.status_details_codec,
            dispatch=self.__dispatch__,
            deadline=deadline,
        )

    def close(self) -> None:
        """Close the connection (calls on it fail with ConnectionLost) and stop a connect under
        way."""
        pending, self._connecting = self._connecting, None
        if pending is not None:
            pending.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
