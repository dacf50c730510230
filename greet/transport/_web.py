"""Connect and gRPC-Web on greet's transport: the browsers' protocols beside gRPC, on one call path.

A web call is a `WebCall`: a ServerCall (greet.transport._server_call) with the same method
table, interceptors, limits, deadlines and cancellation as a gRPC call. What differs is the wire,
and only at its two ends:

- in: `WebCall.data_received` turns the request body into gRPC message frames before the call's
  MessageFramer sees them (a Connect unary body is one bare message; gRPC-Web text is base64);
- out: the call's "connection" is a `WebExchange`, which takes what a ServerCall sends (response
  headers, framed messages, trailers) and writes the protocol's HTTP response to a `Sink` (an
  HTTP/1.1 connection, greet.transport._http1, or one HTTP/2 stream of a ServerConnection).

Protocols (the request's content-type chooses):

    application/json, application/proto              Connect unary (a bare message each way)
    application/connect+json, application/connect+proto   Connect streaming (enveloped messages,
                                                     then an end-of-stream message, flag 0x02)
    application/grpc-web, application/grpc-web+proto gRPC-Web (gRPC framing; the trailers in a
                                                     frame with flag 0x80 at the end of the body)
    application/grpc-web-text(+proto)                the same, base64 both ways

Connect errors are the JSON error body with the HTTP status the spec maps each code to; the
details of a `grpc-status-details-bin` (a google.rpc.Status) become Connect error details
(`type`, unpadded base64 `value`, and `debug`, the detail as JSON where its type is known).
JSON messages follow the proto3 JSON mapping: betterproto's `to_dict`/`from_dict` for betterproto
messages, google.protobuf.json_format for protobuf's (grpclib's health).

Not implemented: Connect unary GET (the request in the query string), Connect and gRPC-Web
compression (a compressed request gets `unimplemented`), gRPC-Web with JSON messages.
Client and bidi streaming need HTTP/2 and Connect: over HTTP/1.1, and for gRPC-Web at all, they
get `unimplemented`.

What each protocol's bytes look like (content types, proto3 JSON, Connect errors and details,
envelopes, gRPC-Web trailer blocks, CORS headers) is greet.transport._web_wire's.

CORS (`--cors-allow-origin`): `Cors` answers preflights (OPTIONS) for the listed origins and adds
the allow and expose headers to their responses; any other origin gets no allow header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from grpclib.const import Cardinality, Status
from grpclib.metadata import Deadline, _Metadata

from greet.transport._engine import ErrorCode, Header, StreamGone
from greet.transport._server_call import CallState, ServerCall
from greet.transport._web_wire import (
    CONNECT_HTTP_STATUS,
    RESPONSE_FIELDS,
    WebKind,
    classify_header,
    connect_error,
    decode_base64_pieces,
    dumps,
    envelope,
    quote,
    read_trailers,
    unpadded,
)
from greet.transport._wire import (
    OK_TRAILERS,
    RESPONSE_HEADERS,
    BadRequestHead,
    RequestHead,
    read_deadline,
)

if TYPE_CHECKING:
    from grpclib.protocol import Peer

    from greet.transport._connection import Writer
    from greet.transport._server import ServerConnection, TransportServer
    from greet.transport._wire import Route

__all__ = [
    "Answer",
    "H2Sink",
    "Sink",
    "WebCall",
    "WebExchange",
    "WebRequest",
    "h2_request",
    "open_call",
    "plain",
    "refusal",
    "send_answer",
]


# -- requests ----------

NOT_METADATA = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"origin",
        b"referer",
        b"x-grpc-web",
        b"x-user-agent",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
    }
)


class WebRequest:
    """One HTTP request's head, from either HTTP version (names lowercase)."""

    __slots__ = ("first", "headers", "http2", "method", "path", "size")

    def __init__(
        self,
        method: bytes,
        path: str,
        headers: list[Header],
        http2: bool,
        size: int | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.http2 = http2
        self.first = dict(reversed(headers))  # each name's first value, looked up in one step
        if size is None:
            size = sum(len(name) + len(value) for name, value in headers)
        self.size = size + 32 * len(headers)  # as HTTP/2 counts a header list (RFC 9113 6.5.2)

    def get(self, name: bytes) -> bytes | None:
        """The first value of header `name`."""
        return self.first.get(name)


@dataclass(slots=True)
class Answer:
    """A response no handler is involved in (preflights, refusals)."""

    status: int
    headers: list[Header]
    body: bytes = b""


def send_answer(sink: Sink, answer: Answer, *, request_ended: bool = True) -> None:
    """Write an Answer whole (StreamGone if the sink is gone)."""
    body = answer.body
    headers = [*answer.headers, (b"content-length", str(len(body)).encode())]
    sink.respond_whole(answer.status, headers, body, request_ended=request_ended)


def plain(status: int, text: str, extra: list[Header] | None = None) -> Answer:
    body = text.encode() + b"\n"
    return Answer(status, [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])], body)


def refusal(kind: WebKind, status: Status, message: str) -> Answer:
    """A call's error as the protocol writes it when no handler ran."""
    if kind.name == "grpc-web":
        return Answer(
            200,
            [
                (b"content-type", kind.content_type),
                (b"grpc-status", str(status.value).encode()),
                (b"grpc-message", quote(message)),
            ],
        )
    error = connect_error(status, message, None)
    if kind.enveloped:
        return Answer(
            200, [(b"content-type", kind.content_type)], envelope(0x02, dumps({"error": error}))
        )
    return Answer(
        CONNECT_HTTP_STATUS[status], [(b"content-type", b"application/json")], dumps(error)
    )


def request_head(request: WebRequest, kind: WebKind) -> RequestHead:
    fields = []
    user_agent = None
    for name, value in request.headers:
        if name == b"user-agent" or (name == b"x-user-agent" and user_agent is None):
            user_agent = value.decode("ascii", "replace")
        elif (
            name[:1] != b":"
            and name not in NOT_METADATA
            and name[:8] != b"connect-"
            and name[:4] != b"sec-"
        ):
            fields.append((name, value))
    return RequestHead(
        request.method,
        request.path,
        kind.content_type.decode(),
        user_agent,
        None,
        None,
        request.size,
        fields,
    )


def read_timeout(request: WebRequest, kind: WebKind) -> Deadline | None:
    """The call's deadline: Connect-Timeout-Ms (Connect) or grpc-timeout (gRPC-Web)."""
    if kind.name == "connect":
        value = request.get(b"connect-timeout-ms")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10:
            raise BadRequestHead(
                f"malformed connect-timeout-ms {value.decode('latin-1')!r}: it is at most 10 digits"
            )
        return Deadline.from_timeout(int(value) / 1000)
    value = request.get(b"grpc-timeout")
    return None if value is None else read_deadline(value)


def open_call(server: TransportServer, request: WebRequest, sink: Sink) -> Answer | WebCall:
    """A web request's call, or the answer it gets without one (a preflight, a refusal)."""
    cors = server.cors
    origin = request.get(b"origin")
    if request.method == b"OPTIONS":
        status, headers = cors.preflight(origin)
        return Answer(status, headers)
    extra = cors.response_headers(origin)
    answer = refuse(server, request, extra)
    if isinstance(answer, Answer):
        answer.headers += extra
        return answer
    kind, route, deadline, head = answer
    exchange = WebExchange(server, sink, kind, extra)
    try:
        metadata = head.metadata()
    except BadRequestHead as error:
        answer = refusal(kind, Status.INVALID_ARGUMENT, str(error))
        answer.headers += extra
        return answer
    return WebCall(exchange, route, deadline, metadata, head.user_agent)


def refuse(
    server: TransportServer, request: WebRequest, extra: list[Header]
) -> Answer | tuple[WebKind, Route, Deadline | None, RequestHead]:
    """Why a request gets no call (an Answer), or what its call is made of."""
    if request.method != b"POST":  # not a client of greet's: the connection closes
        return plain(
            405,
            "greet serves POST (Connect, gRPC-Web, gRPC) and OPTIONS (CORS preflights)",
            [(b"allow", b"POST, OPTIONS"), (b"connection", b"close")],
        )
    content_type = request.get(b"content-type")
    kind = classify_header(content_type)
    if kind is None:
        return plain(
            415,
            "unsupported content-type: use application/json or application/proto (Connect "
            "unary), application/connect+json or application/connect+proto (Connect streaming), "
            "application/grpc-web or application/grpc-web-text (gRPC-Web), application/grpc",
            [(b"accept-post", ACCEPT_POST)],
        )
    answer = check_request(server, request, kind)
    if answer is not None:
        return answer
    route = server.web_route(request.path, kind)
    if route is None or route.handler is None:
        return refusal(kind, Status.UNIMPLEMENTED, f"Method not found: {request.path}")
    cardinality = route.handler.cardinality
    streaming = cardinality is not Cardinality.UNARY_UNARY
    if kind.name == "connect" and kind.enveloped != streaming:
        wanted = (
            "application/connect+json or application/connect+proto"
            if streaming
            else "application/json or application/proto"
        )
        what = "a streaming method" if streaming else "a unary method"
        return plain(
            415, f"{request.path} is {what}: use {wanted}", [(b"accept-post", wanted.encode())]
        )
    if cardinality.client_streaming and (kind.name == "grpc-web" or not request.http2):
        why = (
            "gRPC-Web serves unary and server-streaming calls only"
            if kind.name == "grpc-web"
            else "client and bidi streaming need HTTP/2: this request came over HTTP/1.1"
        )
        return refusal(kind, Status.UNIMPLEMENTED, why)
    try:
        deadline = read_timeout(request, kind)
    except BadRequestHead as error:
        return refusal(kind, Status.INVALID_ARGUMENT, str(error))
    return kind, route, deadline, request_head(request, kind)


ACCEPT_POST = (
    b"application/json, application/proto, application/connect+json, application/connect+proto, "
    b"application/grpc-web, application/grpc-web-text"
)


def check_request(server: TransportServer, request: WebRequest, kind: WebKind) -> Answer | None:
    """What the protocol refuses before routing: headers over the limit, an unknown Connect
    version, a compressed body."""
    limit = server.transport_config.max_header_list_bytes
    size = request.size
    if size > limit:
        return refusal(
            kind,
            Status.RESOURCE_EXHAUSTED,
            f"request headers are {size} bytes; the limit (--max-header-list-bytes) is {limit}",
        )
    if kind.name == "connect":
        version = request.get(b"connect-protocol-version")
        if version is not None and version != b"1":
            return refusal(
                kind,
                Status.INVALID_ARGUMENT,
                f"connect-protocol-version {version.decode('latin-1')!r} is not supported: "
                "greet speaks version 1",
            )
        encoding = request.get(
            b"connect-content-encoding" if kind.enveloped else b"content-encoding"
        )
        if encoding is not None and encoding.strip().lower() != b"identity":
            return refusal(
                kind,
                Status.UNIMPLEMENTED,
                f"content encoding {encoding.decode('latin-1')!r} is not supported: send "
                "uncompressed messages",
            )
    else:
        encoding = request.get(b"grpc-encoding")
        if encoding is not None and encoding.strip().lower() != b"identity":
            return refusal(
                kind,
                Status.UNIMPLEMENTED,
                f"grpc-encoding {encoding.decode('latin-1')!r} is not supported on gRPC-Web",
            )
    return None


# -- the response side ----------


class Sink(Protocol):
    """Where one web call's HTTP response goes: an HTTP/1.1 connection (greet.transport._http1)
    or one HTTP/2 stream (`H2Sink`). `respond` and `write` raise StreamGone once it is gone."""

    loop: asyncio.AbstractEventLoop
    peer: Peer
    stream_id: int

    @property
    def send_blocked(self) -> bool: ...

    def respond(
        self, status: int, headers: list[Header], *, end: bool, request_ended: bool = True
    ) -> None: ...

    def write(self, data: bytes, *, end: bool, request_ended: bool = True) -> None: ...

    def respond_whole(
        self, status: int, headers: list[Header], body: bytes, *, request_ended: bool = True
    ) -> None:
        """`respond` and `write` of the whole response at once (its headers hold its
        content-length)."""

    def abort(self) -> None: ...

    def acknowledge(self, size: int) -> None: ...

    def must_wait(self) -> bool: ...

    def wait_writable(self, writer: Writer) -> None: ...


class WebExchange:
    """What a WebCall takes for its connection: it writes the call's response in the call's
    protocol to its Sink (see the module docstring)."""

    def __init__(
        self, server: TransportServer, sink: Sink, kind: WebKind, extra: list[Header]
    ) -> None:
        config = server.transport_config
        self.server = server
        self.sink = sink
        self.kind = kind
        self.extra = extra  # CORS headers for the request's origin
        self.loop = sink.loop
        self.peer = sink.peer
        self.eager_calls = config.eager_calls
        self.max_message_bytes = config.max_message_bytes
        self.compression_threshold = config.compression_threshold
        self.stream_send_buffer = config.stream_send_buffer
        self.count_acks = kind.enveloped and not kind.text  # the call's bytes are the wire's
        self._leading: list[Header] = []
        self._body = b""

    @property
    def send_blocked(self) -> bool:
        return self.sink.send_blocked

    def must_wait(self, stream_id: int) -> bool:
        return self.sink.must_wait()

    def wait_writable(self, writer: Writer) -> None:
        self.sink.wait_writable(writer)

    def acknowledge(self, stream_id: int, size: int) -> None:
        if self.count_acks:
            self.sink.acknowledge(size)

    def reset(self, stream_id: int, code: int) -> None:
        self.sink.abort()

    def send_headers(self, stream_id: int, headers: list[Header]) -> None:
        if headers is RESPONSE_HEADERS:  # the usual case: no metadata
            metadata: list[Header] = []
        else:
            metadata = [
                header
                for header in headers
                if header[0][:1] != b":" and header[0] not in RESPONSE_FIELDS
            ]
        if not self.kind.enveloped:
            self._leading = metadata  # a Connect unary answer's status is not known yet
            return
        self.sink.respond(
            200, [(b"content-type", self.kind.content_type), *metadata, *self.extra], end=False
        )

    def send_data(self, stream_id: int, data: bytes) -> None:
        kind = self.kind
        if not kind.enveloped:
            self._body = data[5:]
            return
        self.sink.write(base64.b64encode(data) if kind.text else data, end=False)

    def send_trailers(
        self, stream_id: int, headers: list[Header], *, trailers_only: bool, request_ended: bool
    ) -> None:
        kind = self.kind
        sink = self.sink
        if headers is OK_TRAILERS and not kind.enveloped:  # a Connect unary reply, no metadata
            body = self._body
            sink.respond_whole(
                200,
                [
                    (b"content-type", kind.content_type),
                    *self._leading,
                    *self.extra,
                    (b"content-length", str(len(body)).encode()),
                ],
                body,
                request_ended=request_ended,
            )
            return
        status, message, details, metadata = read_trailers(headers)
        if kind.name == "grpc-web":
            fields = [(b"grpc-status", str(status.value).encode())]
            if message is not None:
                fields.append((b"grpc-message", quote(message)))
            if details is not None:
                fields.append((b"grpc-status-details-bin", unpadded(details).encode()))
            fields += metadata
            if trailers_only:
                sink.respond(
                    200,
                    [
                        (b"content-type", kind.content_type),
                        *fields,
                        *self.extra,
                        (b"content-length", b"0"),
                    ],
                    end=True,
                    request_ended=request_ended,
                )
                return
            block = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
            frame = envelope(0x80, block)
            sink.write(
                base64.b64encode(frame) if kind.text else frame,
                end=True,
                request_ended=request_ended,
            )
            return
        if not kind.enveloped:
            if status is Status.OK:
                body = self._body
                headers = [
                    (b"content-type", kind.content_type),
                    *self._leading,
                    *[(b"trailer-" + name, value) for name, value in metadata],
                ]
                http_status = 200
            else:
                body = dumps(connect_error(status, message, details))
                headers = [(b"content-type", b"application/json"), *self._leading, *metadata]
                http_status = CONNECT_HTTP_STATUS[status]
            headers += self.extra
            headers.append((b"content-length", str(len(body)).encode()))
            sink.respond_whole(http_status, headers, body, request_ended=request_ended)
            return
        end: dict[str, Any] = {}
        if status is not Status.OK:
            end["error"] = connect_error(status, message, details)
        if metadata:
            grouped: dict[str, list[str]] = {}
            for name, value in metadata:
                grouped.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
            end["metadata"] = grouped
        if trailers_only:
            sink.respond(200, [(b"content-type", kind.content_type), *self.extra], end=False)
        sink.write(envelope(0x02, dumps(end)), end=True, request_ended=request_ended)

    def answer(
        self,
        stream_id: int,
        status: Status,
        message: str,
        *,
        http_status: bytes = b"200",
        ended: bool = True,
    ) -> None:
        """A refusal before the handler ran (a limit, a bad body, shutdown)."""
        headers = [(b"grpc-status", str(status.value).encode()), (b"grpc-message", quote(message))]
        with contextlib.suppress(StreamGone):
            self.send_trailers(stream_id, headers, trailers_only=True, request_ended=ended)


class WebCall(ServerCall):
    """A ServerCall on a web protocol: the request body is turned into gRPC message frames
    (see the module docstring); everything else is the ServerCall's."""

    def __init__(
        self,
        exchange: WebExchange,
        route: Route,
        deadline: Deadline | None,
        metadata: _Metadata,
        user_agent: str | None,
    ) -> None:
        super().__init__(exchange, exchange.sink.stream_id, route, deadline, metadata)
        self.exchange = exchange
        self.user_agent = user_agent
        kind = exchange.kind
        self._bare = not kind.enveloped
        self._text = kind.text
        self._parts: list[bytes] = []
        self._size = 0
        self._rest = b""

    def headers_received(self, end_stream: bool) -> None:
        if end_stream and (self._bare or self._text):
            super().headers_received(False)
            self.data_received(b"", True)
        else:
            super().headers_received(end_stream)

    def data_received(self, data: bytes, end_stream: bool) -> None:
        if self._bare:
            self._bare_data(data, end_stream)
        elif self._text:
            self._text_data(data, end_stream)
        else:
            super().data_received(data, end_stream)

    def _bare_data(self, data: bytes, end_stream: bool) -> None:
        """A Connect unary body: one message, however many pieces it comes in."""
        self.exchange.sink.acknowledge(len(data))
        if self.state is not CallState.RECEIVING:
            return
        self._size += len(data)
        limit = self.framer.limit
        if self._size > limit:
            self._parts = []
            self._reject(
                Status.RESOURCE_EXHAUSTED,
                f"request message is more than {limit} bytes; the limit (--max-message-bytes) "
                f"is {limit}",
            )
            return
        if data:
            self._parts.append(data)
        if end_stream:
            body = b"".join(self._parts)
            self._parts = []
            super().data_received(envelope(0, body), True)

    def _text_data(self, data: bytes, end_stream: bool) -> None:
        """gRPC-Web text: base64, possibly as several padded pieces one after another."""
        self.exchange.sink.acknowledge(len(data))
        if self.state is CallState.CLOSED:
            return
        data = self._rest + data.replace(b"\r", b"").replace(b"\n", b"")
        whole = len(data) // 4 * 4
        chunk, self._rest = data[:whole], data[whole:]
        try:
            decoded = decode_base64_pieces(chunk)
        except binascii.Error:
            decoded = None
        if decoded is None or (end_stream and self._rest):
            if self.state is CallState.RECEIVING:
                self._reject(Status.INVALID_ARGUMENT, "the gRPC-Web text body is not base64")
            return
        super().data_received(decoded, end_stream)


HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})
"""HTTP/1.1 header fields HTTP/2 forbids (RFC 9113 section 8.2.2)."""


class H2Sink:
    """One HTTP/2 stream of a ServerConnection, as a web call's Sink."""

    __slots__ = ("connection", "loop", "peer", "stream_id")

    def __init__(self, connection: ServerConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.loop = connection.loop
        self.peer = connection.peer

    @property
    def send_blocked(self) -> bool:
        return self.connection.send_blocked

    def respond(
        self, status: int, headers: list[Header], *, end: bool, request_ended: bool = True
    ) -> None:
        self.connection.send_response(
            self.stream_id,
            [
                (b":status", str(status).encode()),
                *[header for header in headers if header[0] not in HOP_BY_HOP],
            ],
            end_stream=end,
            request_ended=request_ended,
        )

    def write(self, data: bytes, *, end: bool, request_ended: bool = True) -> None:
        self.connection.send_body(self.stream_id, data, end_stream=end, request_ended=request_ended)

    def respond_whole(
        self, status: int, headers: list[Header], body: bytes, *, request_ended: bool = True
    ) -> None:
        if body:
            self.respond(status, headers, end=False)
            self.write(body, end=True, request_ended=request_ended)
        else:
            self.respond(status, headers, end=True, request_ended=request_ended)

    def abort(self) -> None:
        self.connection.reset(self.stream_id, ErrorCode.CANCEL)

    def acknowledge(self, size: int) -> None:
        self.connection.acknowledge(self.stream_id, size)

    def must_wait(self) -> bool:
        return self.connection.must_wait(self.stream_id)

    def wait_writable(self, writer: Writer) -> None:
        self.connection.wait_writable(writer)


def h2_request(headers: Iterable[Header]) -> WebRequest:
    method = b""
    path = ""
    fields: list[Header] = []
    for name, value in headers:
        if name == b":method":
            method = value
        elif name == b":path":
            path = value.decode("ascii", "replace")
        elif name == b":authority":
            fields.append((b"host", value))
        elif name[:1] != b":":
            fields.append((name, value))
    return WebRequest(method, path.partition("?")[0], fields, True)
