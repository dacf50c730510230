"""ClientStream: one client call on greet's transport (a `grpclib.client.Stream`), and how it ends.

`Channel.request(...)` returns one, so generated stubs (betterproto's `ServiceStub`), greet's
client and code written for grpclib's Channel run on it unchanged. Its connection tells it what
arrived (`got_headers`, `feed`, `got_trailers`, `stream_closed`, `terminate`, `writable`); each
wakes the call's receiving (or sending) side. A stream's deadline timer ends here too: the stream
is reset (CANCEL) and the waiting call raises asyncio.TimeoutError, as grpclib's does.

How a client call's HTTP/2 stream can end badly, as types (never read from message text). All
are grpclib's `StreamTerminatedError`, so code written for grpclib's Channel handles them as
before; `greet.client` maps them to `greet.errors.RpcError` at its one boundary:

    StreamTerminatedError            (grpclib)
    +-- StreamReset                  the server reset this one stream (RST_STREAM); the
    |   |                            connection is fine
    |   +-- StreamRefused            ... with REFUSED_STREAM: the server did not process it
    +-- ConnectionEnded              the connection is gone for this call and for others
        +-- ConnectionLost           the socket closed or failed, the keepalive timed out
        +-- NotProcessed             a GOAWAY said the server never saw this stream

`processed` says whether the server may have seen the request (False: safe to retry anything).
`HandshakeFailed` (an OSError) is raised when connecting: no HTTP/2 settings from the peer in
time, or the connection closed before them. `DeadlineExceeded` (an asyncio.TimeoutError) is the
call's deadline passing; its message says what the call was waiting for ("while connecting to
10.0.0.1:8080 (HTTP/2 handshake not complete)", "while waiting for the reply from ...").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from grpclib.client import Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import Deadline, _Metadata, decode_metadata
from multidict import MultiDict

from greet.transport._connection import within
from greet.transport._engine import ErrorCode, Headers, StreamGone
from greet.transport._wire import (
    CompressedBody,
    MessageFramer,
    compress,
    decompress,
    empty_metadata,
    metadata_headers,
    plain_ok,
    text_headers,
    usual_reply_headers,
)

if TYPE_CHECKING:
    from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
    from grpclib.events import _DispatchChannelEvents

    from greet.transport._client import Channel, ClientConnection

__all__ = [
    "ClientStream",
    "ConnectionEnded",
    "ConnectionLost",
    "DeadlineExceeded",
    "HandshakeFailed",
    "NotProcessed",
    "StreamRefused",
    "StreamReset",
]


# -- errors ----------


class StreamReset(StreamTerminatedError):
    """The server reset the stream with `error_code`."""

    processed = True

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamRefused(StreamReset):
    """REFUSED_STREAM: the server did no work for it (RFC 9113 section 8.7)."""

    processed = False


class ConnectionEnded(StreamTerminatedError):
    """The call's connection ended."""

    processed = True


class ConnectionLost(ConnectionEnded):
    """The socket closed or failed while the call was open."""


class NotProcessed(ConnectionEnded):
    """A GOAWAY's last stream id is below this stream: the server never processed it."""

    processed = False


class HandshakeFailed(OSError):
    """The connection opened but HTTP/2 did not start (see the message for the likely cause)."""


class DeadlineExceeded(asyncio.TimeoutError):
    """The call's deadline passed; the message says what it was waiting for."""


# -- the call ---------------------------------------------------------------------------------

CONTENT_TYPE = "application/grpc"


class ClientStream(Stream[Any, Any]):
    """One call (see the module docstring). Made by `Channel.request`."""

    # How every call starts (class attributes, as grpclib's Stream keeps its flags: a call sets
    # only what differs, and __init__ only what comes from the channel).
    connection: ClientConnection | None = None
    stream_id = 0
    reply_encoding: str | None = None  # the server's grpc-encoding
    response_headers: Headers | None = None
    response_trailers: Headers | None = None
    remote_ended = False
    recv_error: GRPCError | None = None
    failure: BaseException | None = None
    unacked = 0
    _recv_waiter: asyncio.Future[None] | None = None
    _send_waiter: asyncio.Future[None] | None = None
    _deadline_timer: asyncio.TimerHandle | None = None
    _released = False

    def __init__(
        self,
        channel: Channel,
        method_name: str,
        metadata: _Metadata,
        cardinality: Cardinality,
        send_type: type[Any],
        recv_type: type[Any],
        *,
        codec: CodecBase,
        status_details_codec: StatusDetailsCodecBase | None,
        dispatch: _DispatchChannelEvents,
        deadline: Deadline | None = None,
    ) -> None:
        super().__init__(
            channel,
            method_name,
            metadata,
            cardinality,
            send_type,
            recv_type,
            codec=codec,
            status_details_codec=status_details_codec,
            dispatch=dispatch,
            deadline=deadline,
        )
        self.channel = channel
        self._listening = channel.listening.names()
        config = channel.transport_config
        self.framer = MessageFramer(config.max_receive_message_bytes, side="reply")
        self.encoding = channel.send_encoding
        self.compression_threshold = config.compression_threshold

    # -- what the connection tells the stream --------------------------------------------------

    def got_headers(self, headers: Headers, end_stream: bool) -> None:
        if self.response_headers is None:
            self.response_headers = headers
            if end_stream:  # trailers-only
                self.response_trailers = headers
                self.remote_ended = True
        else:  # a second HEADERS with END_STREAM: trailers
            self.got_trailers(headers)
            return
        self._wake()

    def feed(self, data: bytes, end_stream: bool) -> None:
        self.unacked += len(data)
        if self.recv_error is None:
            try:
                self.framer.feed(data)
            except GRPCError as error:
                self.recv_error = error
                self.framer.clear()
                self._cancel_stream()
        if end_stream:
            self.remote_ended = True
        if not self.framer.messages:
            self._acknowledge()
        self._wake()

    def got_trailers(self, headers: Headers) -> None:
        self.response_trailers = headers
        self.remote_ended = True
        self._wake()

    def stream_closed(self, error_code: int) -> None:
        if not self.remote_ended and self.failure is None:
            if error_code == ErrorCode.REFUSED_STREAM:
                # e.g. above a GOAWAY's last stream id: the server did no work for it
                self.failure = StreamRefused(error_code, "the stream was refused (REFUSED_STREAM)")
            else:
                self.failure = StreamReset(
                    error_code, f"the stream closed ({ErrorCode(error_code).name})"
                )
        self._wake()

    def terminate(self, error: StreamTerminatedError) -> None:
        if self.failure is None:
            self.failure = error
        self._wake()

    def take_unacked(self) -> int:
        """Received bytes not yet acknowledged, which the caller acknowledges now."""
        unacked, self.unacked = self.unacked, 0
        return unacked

    def _acknowledge(self) -> None:
        connection = self.connection
        if self.unacked and connection is not None:
            connection.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0

    def writable(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        """Something arrived or the stream ended: wake the receiving side (and the sending side,
        which must see a failure)."""
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.failure is not None:
            self.writable()

    def _deadline_expired(self) -> None:
        self._deadline_timer = None
        if self.failure is None:
            waiting = "waiting for" if self.response_headers is None else "reading"
            self.failure = DeadlineExceeded(f"while {waiting} the reply from {self.channel.target}")
        self._cancel_stream()
        self._wake()

    def _cancel_stream(self) -> None:
        connection = self.connection
        if connection is not None and self.stream_id:
            connection.cancel(self.stream_id)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """The connection's loop (asyncio.get_running_loop() asks the OS for the process id)."""
        connection = self.connection
        return asyncio.get_running_loop() if connection is None else connection.loop

    async def _wait(self) -> None:
        """Until the connection tells the stream something; raises how the stream failed."""
        if self.failure is not None:
            raise self.failure
        waiter = self._recv_waiter = self._loop().create_future()
        try:
            await waiter
        finally:
            self._recv_waiter = None

    async def _wait_writable(self) -> None:
        if self.failure is not None:
            raise self.failure
        waiter = self._send_waiter = self._loop().create_future()
        try:
            await waiter
        finally:
            self._send_waiter = None

    @property
    def messages_sent(self) -> int:
        return self._messages_sent

    @property
    def messages_received(self) -> int:
        return self._messages_received

    # -- grpclib.client.Stream ---------------------------------------------------------------

    async def __aenter__(self) -> ClientStream:
        deadline = self._deadline
        if deadline is not None:
            self._deadline_timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline.time_remaining()), self._deadline_expired
            )
        return self

    async def send_request(self, *, end: bool = False) -> None:
        if self._send_request_done:
            raise ProtocolError("Request is already sent")
        if end and not self._cardinality.client_streaming:
            raise ProtocolError(
                "Unary request requires a message to be sent before ending outgoing stream"
            )
        connection = await self._connect()
        headers: Headers = self.channel.request_heads(self._method_name, self._deadline)
        metadata = self._metadata
        if "send_request" in self._listening:
            (metadata,) = await self._dispatch.send_request(
                metadata,
                method_name=self._method_name,
                deadline=self._deadline,
                content_type=CONTENT_TYPE,
            )
        if metadata:
            headers = [*headers, *metadata_headers(metadata)]
        if self.failure is not None:
            raise self.failure
        if not connection.usable:
            raise NotProcessed("the connection closed before the call started")
        self.connection = connection
        self.stream_id = connection.open_stream(self, headers, end_stream=end)
        self.peer = connection.peer
        self._send_request_done = True
        if end:
            self._end_done = True

    async def _connect(self) -> ClientConnection:
        connection = self.channel.connection
        if connection is not None and connection.has_room():
            return connection  # the usual case: nothing to wait for, no timer to set
        deadline = self._deadline
        channel = self.channel
        connect = channel.__connect__()
        if deadline is None:
            connection = await connect
        else:
            try:
                connection = await within(connect, max(0.0, deadline.time_remaining()))
            except asyncio.TimeoutError:
                stage = channel.connect_stage
                raise DeadlineExceeded(f"while connecting to {channel.target} ({stage})") from None
        while True:
            if deadline is None:
                await connection.stream_slot()
            else:
                try:
                    await within(connection.stream_slot(), max(0.0, deadline.time_remaining()))
                except asyncio.TimeoutError:
                    raise DeadlineExceeded(
                        f"while waiting for a free stream to {channel.target} (the server's "
                        "MAX_CONCURRENT_STREAMS)"
                    ) from None
            if connection.usable:
                return connection
            connection = await self.channel.__connect__()  # it went away: a new one

    async def send_message(self, message: Any, *, end: bool = False) -> None:
        if not self._send_request_done:
            await self.send_request()
        end_stream = end
        if not self._cardinality.client_streaming:
            if self._send_message_done:
                raise ProtocolError("Message was already sent")
            end_stream = True
        if self._end_done:
            raise ProtocolError("Stream is ended")
        if "send_message" in self._listening:
            (message,) = await self._dispatch.send_message(message)
        body = self._codec.encode(message, self._send_type)
        flag = b"\x00"
        if self.encoding is not None and len(body) >= self.compression_threshold:
            body = compress(body, self.encoding)
            flag = b"\x01"
        if self.failure is not None:
            raise self.failure
        connection = self.connection
        assert connection is not None
        try:
            connection.send_data(
                self.stream_id, flag + len(body).to_bytes(4, "big") + body, end_stream
            )
        except StreamGone as error:
            raise self.failure or StreamReset(0, f"the stream is gone: {error}") from None
        self._send_message_done = True
        self._messages_sent += 1
        if end:
            self._end_done = True
        while connection.must_wait(self.stream_id):
            connection.wait_writable(self)
            await self._wait_writable()

    async def end(self) -> None:
        if not self._send_request_done:
            raise ProtocolError("Request was not sent")
        if self._end_done:
            raise ProtocolError("Stream was already ended")
        if not self._cardinality.client_streaming:
            if not self._send_message_done:
                raise ProtocolError("Unary request requires a single message to be sent")
            self._end_done = True
            return
        if self.failure is not None:
            raise self.failure
        connection = self.connection
        assert connection is not None
        try:
            connection.end_stream(self.stream_id)
        except StreamGone as error:
            raise self.failure or StreamReset(0, f"the stream is gone: {error}") from None
        self._end_done = True

    async def recv_initial_metadata(self) -> None:
        if not self._send_request_done:
            raise ProtocolError("Request was not sent yet")
        if self._recv_initial_metadata_done:
            raise ProtocolError("Initial metadata was already received")
        while self.response_headers is None:
            await self._wait()
        self._recv_initial_metadata_done = True
        raw = self.response_headers
        if usual_reply_headers(raw):  # nothing more to read from them
            self.initial_metadata = empty_metadata()
            if "recv_initial_metadata" in self._listening:
                (self.initial_metadata,) = await self._dispatch.recv_initial_metadata(
                    self.initial_metadata
                )
            return
        headers = text_headers(raw)
        headers_map = dict(headers)
        self._raise_for_status(headers_map)
        self._raise_for_content_type(headers_map)
        encoding = headers_map.get("grpc-encoding")
        self.reply_encoding = encoding.strip().lower() if encoding else None
        if "grpc-status" in headers_map:  # trailers-only response
            self._trailers_only = True
            (initial,) = await self._dispatch.recv_initial_metadata(MultiDict())
            self.initial_metadata = initial
            await self._end_with_status(headers, headers_map)
        else:
            (initial,) = await self._dispatch.recv_initial_metadata(decode_metadata(headers))
            self.initial_metadata = initial

    async def recv_message(self) -> Any:
        if not self._recv_initial_metadata_done:
            await self.recv_initial_metadata()
        messages = self.framer.messages
        while not messages:
            if self.recv_error is not None:
                raise self.recv_error
            if self.remote_ended:
                if self.framer.inside_message:
                    raise GRPCError(Status.INTERNAL, "the server's reply ended inside a message")
                return None
            await self._wait()
        body = messages.popleft()
        if not messages:
            self._acknowledge()
        if type(body) is CompressedBody:
            body = decompress(body, self.reply_encoding, self.framer.limit, side="reply")
        message = self._codec.decode(body, self._recv_type)
        if "recv_message" in self._listening:
            (message,) = await self._dispatch.recv_message(message)
        self._messages_received += 1
        return message

    async def recv_trailing_metadata(self) -> None:
        if not self._end_done and not (
            not self._cardinality.client_streaming and self._send_message_done
        ):
            raise ProtocolError("Outgoing stream was not ended")
        if not self._recv_initial_metadata_done:
            raise ProtocolError(
                "Initial metadata was not received before waiting for trailing metadata"
            )
        if self._recv_trailing_metadata_done:
            raise ProtocolError("Trailing metadata was already received")
        if self._trailers_only:
            self._recv_trailing_metadata_done = True
            return
        while self.response_trailers is None:
            if self.recv_error is not None:
                raise self.recv_error
            await self._wait()
        self._recv_trailing_metadata_done = True
        trailers_seen = self.response_trailers
        if plain_ok(trailers_seen) and "recv_trailing_metadata" not in self._listening:
            self.trailing_metadata = empty_metadata()
            return
        trailers = text_headers(trailers_seen)
        await self._end_with_status(trailers, dict(trailers))

    async def _end_with_status(
        self, trailers: list[tuple[str, str]], trailer_map: dict[str, str]
    ) -> None:
        """The call's status from its trailers (or trailers-only headers): the trailing metadata
        for listeners and `trailing_metadata`, and GRPCError unless the status is OK."""
        status, message, details = self._process_grpc_status(trailer_map)
        (trailing,) = await self._dispatch.recv_trailing_metadata(
            decode_metadata(trailers),
            status=status,
            status_message=message,
            status_details=details,
        )
        self.trailing_metadata = trailing
        self._raise_for_grpc_status(status, message, details)

    async def cancel(self) -> None:
        if not self._send_request_done:
            raise ProtocolError("Request was not sent yet")
        if self._cancel_done:
            raise ProtocolError("Stream was already cancelled")
        self._cancel_stream()
        self._cancel_done = True

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self._send_request_done:
                return
            if exc_val is None and not self._cancel_done:
                if not self._recv_initial_metadata_done:
                    await self.recv_initial_metadata()
                if not self._recv_trailing_metadata_done:
                    await self.recv_trailing_metadata()
            elif isinstance(exc_val, StreamTerminatedError):
                self._raise_for_received_status()
        finally:
            self._release()

    def _raise_for_received_status(self) -> None:
        """A stream that ended badly after the server sent a status: raise that status."""
        if self.response_trailers is not None:
            trailers = dict(text_headers(self.response_trailers))
            if "grpc-status" in trailers:
                status, message, details = self._process_grpc_status(trailers)
                self._raise_for_grpc_status(status, message, details)
        if self.response_headers is not None:
            self._raise_for_status(dict(text_headers(self.response_headers)))

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self.framer.clear()
        connection = self.connection
        if connection is not None:
            unacked, self.unacked = self.unacked, 0
            connection.forget(self.stream_id, unacked)
