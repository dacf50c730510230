"""gRPC on the wire: message framing, compression and the header blocks of both sides.

Messages. A gRPC message is a 5-byte prefix (compressed flag, 4-byte big-endian length) and the
body. `MessageFramer` reads the prefix as soon as it arrives and refuses a message larger than
`--max-message-bytes` before a byte of its body is kept (RESOURCE_EXHAUSTED), so the limit bounds
what one message can make a peer buffer. Complete bodies wait in `messages` until the call takes
them; received bytes are acknowledged (the peer's flow-control window opened) only while nothing
complete is waiting, so a peer that sends faster than its reader reads is held to one window of
buffered messages. Refused: a prefix flag other than 0 or 1 (INTERNAL, as the gRPC spec says for
a malformed frame) and a stream that ends inside a message (INVALID_ARGUMENT). A compressed
message is kept as a `CompressedBody` and decompressed (with the limit on its decompressed size)
when the call takes it.

Compression: gzip and deflate (grpc-encoding), both ways; decompression is bounded by the same
size limit, so a decompression bomb gets RESOURCE_EXHAUSTED.

Header blocks:
- a request's, read once on the server (`read_request_head`): routing fields, metadata and the
  header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (32 bytes a field); the deadline is
  read apart from it (`read_deadline`), since a client's grpc-timeout changes call by call;
- a server's replies: response headers, trailers and trailers-only answers, built once where they
  do not vary (`RESPONSE_HEADERS`, `OK_TRAILERS`);
- a client's request headers, built once per method (`RequestHeads`), and quick reads of the
  usual replies (`usual_reply_headers`, `plain_ok`) so that an ordinary successful call costs no
  metadata parsing.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import (
    _STATUS_DETAILS_KEY,
    USER_AGENT,
    Deadline,
    _Metadata,
    _MetadataLike,
    decode_bin_value,
    decode_timeout,
    encode_bin_value,
    encode_grpc_message,
    encode_metadata,
    encode_timeout,
)
from multidict import MultiDict

from greet.transport._engine import Header, Headers

if TYPE_CHECKING:
    from collections.abc import Callable

    from grpclib.const import Handler, Status

__all__ = [
    "ACCEPT_ENCODING",
    "CONTENT_TYPE",
    "ENCODINGS",
    "OK_TRAILERS",
    "RECV_YIELD_EVERY",
    "RESPONSE_HEADERS",
    "STATUS_VALUES",
    "BadRequestHead",
    "CompressedBody",
    "MessageFramer",
    "RequestHead",
    "RequestHeads",
    "Route",
    "accepted",
    "compress",
    "decompress",
    "empty_metadata",
    "header_list",
    "metadata_headers",
    "plain_ok",
    "read_deadline",
    "read_request_head",
    "rejection",
    "text_headers",
    "trailers",
    "truncated",
    "usual_reply_headers",
]


# -- compression ----------

WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


ENCODINGS = frozenset(WINDOW_BITS)


"""Encodings greet decodes (besides identity)."""


ACCEPT_ENCODING = b"gzip,deflate,identity"


"""greet's grpc-accept-encoding value."""


def accepted(header: bytes | None) -> frozenset[str]:
    """The encodings a grpc-accept-encoding value lists (identity always counts)."""
    if not header:
        return frozenset({"identity"})
    names = {part.strip().lower() for part in header.decode("latin-1").split(",")}
    return frozenset(names | {"identity"})


def compress(data: bytes, encoding: str) -> bytes:
    """`data` compressed with `encoding` (gzip or deflate)."""
    compressor = zlib.compressobj(wbits=WINDOW_BITS[encoding])
    return compressor.compress(data) + compressor.flush()


def decompress(data: bytes, encoding: str | None, limit: int, *, side: str = "request") -> bytes:
    """Decompress one message of a stream whose grpc-encoding is `encoding`, with at most `limit`
    bytes of output; GRPCError with the status the gRPC spec gives otherwise (module docstring).
    """
    if encoding is None or encoding == "identity":
        raise GRPCError(
            Status.INTERNAL,
            f"a compressed {side} message on a stream without grpc-encoding",
        )
    bits = WINDOW_BITS.get(encoding)
    if bits is None:
        raise GRPCError(
            Status.UNIMPLEMENTED,
            f"grpc-encoding {encoding!r} is not supported; use one of {ACCEPT_ENCODING.decode()}",
        )
    inflater = zlib.decompressobj(wbits=bits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise GRPCError(
            Status.INTERNAL, f"the {side} message does not decompress as {encoding}: {error}"
        ) from None
    if len(out) > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"{side} message is more than {limit} bytes once decompressed; the limit "
            "(--max-message-bytes) applies to the decompressed size",
        )
    if not inflater.eof:
        raise GRPCError(
            Status.INTERNAL, f"the {side} message is cut short: its {encoding} data does not end"
        )
    return out


# -- receiving ----------

RECV_YIELD_EVERY = 16


"""A handler reading buffered messages yields to the event loop after this many, so that one fast
client stream cannot hold the loop while other calls wait."""


PREFIX_SIZE = 5


class CompressedBody(bytes):
    """A message body whose prefix had the compressed flag (greet.transport._wire)."""


def truncated() -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, "truncated gRPC message: the stream ended inside it")


class MessageFramer:
    """Cuts one stream's DATA into gRPC message bodies (see the module docstring).

    DATA that holds whole messages is cut where it lies. The body of a message that spans DATA
    frames is kept as the list of its pieces and joined once, when its last piece arrives: a large
    message is copied once, not once per frame.
    """

    __slots__ = ("_compressed", "_length", "_parts", "_size", "limit", "messages", "side")

    def __init__(self, limit: int, side: str = "request") -> None:
        self.limit = limit
        self.side = side
        self.messages: deque[bytes] = deque()
        self._parts: list[bytes] = []  # a message's body so far, or the start of a prefix
        self._size = 0  # bytes in `_parts`
        self._length = -1  # the body length of the message being read; -1: reading a prefix
        self._compressed = False

    @property
    def untouched(self) -> bool:
        """Nothing has been fed (or all of it was taken)."""
        return not self.messages and self._length < 0 and not self._parts

    @property
    def inside_message(self) -> bool:
        """True when a message has begun and not ended (the stream must not end now)."""
        return bool(self._parts) or self._length >= 0

    def feed(self, data: bytes) -> None:
        """Add DATA bytes; complete bodies go to `messages` (a compressed one as a
        CompressedBody). Raises GRPCError on a refused one."""
        if self._length >= 0:  # inside a message's body
            need = self._length - self._size
            if len(data) < need:
                self._parts.append(data)
                self._size += len(data)
                return
            parts = self._parts
            parts.append(data[:need] if len(data) > need else data)
            body = b"".join(parts) if len(parts) > 1 else parts[0]
            self.messages.append(CompressedBody(body) if self._compressed else body)
            self._parts = []
            self._size = 0
            self._length = -1
            if len(data) == need:
                return
            data = data[need:]
        elif self._parts:  # the start of a prefix
            data = b"".join(self._parts) + data
            self._parts = []
            self._size = 0
        size = len(data)
        pos = 0
        while size - pos >= PREFIX_SIZE:
            flag = data[pos]
            length = self._check_prefix(flag, int.from_bytes(data[pos + 1 : pos + 5], "big"))
            end = pos + PREFIX_SIZE + length
            if end > size:  # the body goes on in the next DATA
                self._compressed = flag == 1
                self._length = length
                rest = data[pos + PREFIX_SIZE :]
                self._parts.append(rest)
                self._size = len(rest)
                return
            body = data[pos + PREFIX_SIZE : end]
            self.messages.append(CompressedBody(body) if flag else body)
            pos = end
        if pos < size:
            self._parts.append(data[pos:])
            self._size = size - pos

    def _check_prefix(self, flag: int, length: int) -> int:
        if flag > 1:
            raise GRPCError(Status.INTERNAL, f"invalid gRPC message prefix flag {flag}")
        if length > self.limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"{self.side} message is {length} bytes; the limit (--max-message-bytes) is "
                f"{self.limit}",
            )
        return length

    def clear(self) -> None:
        """Drop everything buffered (the call ended)."""
        self.messages.clear()
        self._parts = []
        self._size = 0
        self._length = -1


# -- request_head ----------

FIELD_OVERHEAD = 32


NOT_METADATA = frozenset({b"te", b"content-type", b"user-agent"})


class BadRequestHead(ValueError):
    """A header the call cannot go on with (a malformed grpc-timeout or -bin value)."""


@dataclass(slots=True)
class RequestHead:
    method: bytes
    path: str
    content_type: str | None
    user_agent: str | None
    encoding: str | None  # grpc-encoding: how the request messages are compressed
    accept_encoding: bytes | None  # grpc-accept-encoding: what the client decodes
    size: int
    metadata_fields: list[tuple[bytes, bytes]]

    def metadata(self) -> _Metadata:
        """The call's metadata; BadRequestHead when a -bin value is not base64."""
        metadata: MultiDict[str | bytes] = MultiDict()
        for name, value in self.metadata_fields:
            key = name.decode("ascii")
            if key.endswith("-bin"):
                try:
                    metadata.add(key, decode_bin_value(value))
                except ValueError:
                    raise BadRequestHead(f"malformed binary metadata {key!r}") from None
            else:
                metadata.add(key, value.decode("latin-1"))
        return _Metadata(metadata)


@dataclass(slots=True)
class Route:
    """What one request header block means to a server: the handler and the head, or why the
    call is answered without one (`rejection`: status, message, HTTP status). Servers keep the
    Routes of the header blocks they see (a client sends the same block call after call)."""

    head: RequestHead
    handler: Handler | None
    rejection: tuple[Status, str, bytes] | None
    reply_encoding: str | None
    call_attributes: dict[str, object] | None = None  # what every call of the route starts with


def read_deadline(timeout: bytes) -> Deadline:
    """A call's deadline from its grpc-timeout value; BadRequestHead when it is malformed."""
    try:
        return Deadline.from_timeout(decode_timeout(timeout.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        raise BadRequestHead(f"malformed grpc-timeout {timeout.decode('latin-1')!r}") from None


def read_request_head(headers: Headers) -> RequestHead:
    method = b""
    path = ""
    content_type = user_agent = None
    accept = None
    encoding = None
    size = 0
    fields: list[tuple[bytes, bytes]] = []
    for header in headers:
        name, value = header
        size += len(name) + len(value) + FIELD_OVERHEAD
        if name[:1] == b":":
            if name == b":path":
                path = value.decode("ascii", "replace")
            elif name == b":method":
                method = value
        elif name == b"content-type":
            content_type = value.decode("ascii", "replace")
        elif name == b"user-agent":
            user_agent = value.decode("ascii", "replace")
        elif name[:5] == b"grpc-":
            if name == b"grpc-encoding":
                encoding = value.decode("ascii", "replace").strip().lower()
            elif name == b"grpc-accept-encoding":
                accept = value
        elif name not in NOT_METADATA:
            fields.append(header)
    return RequestHead(method, path, content_type, user_agent, encoding, accept, size, fields)


# -- responses ----------

CONTENT_TYPE = b"application/grpc"


RESPONSE_HEADERS: list[Header] = [
    (b":status", b"200"),
    (b"content-type", CONTENT_TYPE),
    (b"grpc-accept-encoding", ACCEPT_ENCODING),
]


OK_TRAILERS: list[Header] = [(b"grpc-status", b"0")]


STATUS_VALUES = {status: str(status.value).encode() for status in Status}


def header_list(headers: Collection[tuple[str, str]]) -> list[Header]:
    """grpclib's encoded metadata (str pairs) as an engine's header list."""
    return [(name.encode("ascii"), value.encode("ascii")) for name, value in headers]


def trailers(
    status: Status,
    message: str | None,
    details: Any,
    details_codec: Any,
    metadata: Any,
    *,
    trailers_only: bool,
) -> list[Header]:
    """The block that ends a call: `grpc-status` and what goes with it; with the response
    headers in front when nothing was sent before it (a trailers-only response)."""
    if status is Status.OK and not metadata and not trailers_only:
        return OK_TRAILERS
    headers = list(RESPONSE_HEADERS) if trailers_only else []
    headers.append((b"grpc-status", STATUS_VALUES[status]))
    if message is not None:
        headers.append((b"grpc-message", encode_grpc_message(message).encode()))
    if details is not None and details_codec is not None:
        encoded = details_codec.encode(status, message, details)
        headers.append((_STATUS_DETAILS_KEY.encode(), encode_bin_value(encoded)))
    if metadata:
        headers += header_list(encode_metadata(metadata))
    return headers


def rejection(status: Status, message: str, http_status: bytes = b"200") -> list[Header]:
    """A trailers-only answer to a request no handler sees (bad head, limits, shutdown)."""
    return [
        (b":status", http_status),
        (b"content-type", CONTENT_TYPE),
        (b"grpc-accept-encoding", ACCEPT_ENCODING),
        (b"grpc-status", STATUS_VALUES[status]),
        (b"grpc-message", encode_grpc_message(message).encode()),
    ]


# -- client_heads ----------

USER_AGENT_HEADER = (b"user-agent", USER_AGENT.encode())


OK_STATUS = (b":status", b"200")


OK_TRAILER = (b"grpc-status", b"0")


class RequestHeads:
    """A channel's request header blocks (metadata aside), each built once per method: only a
    call's grpc-timeout changes from call to call. A block is a tuple, shared by the calls."""

    __slots__ = ("_authority", "_plain", "_prefixes", "_scheme", "_tail")

    LIMIT = 1000
    """Methods whose blocks are kept; past it the cache starts again (names come from code)."""

    def __init__(self, scheme: bytes, authority: bytes, encoding: str | None) -> None:
        self._scheme = scheme
        self._authority = authority
        tail: tuple[Header, ...] = (
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            USER_AGENT_HEADER,
            (b"grpc-accept-encoding", ACCEPT_ENCODING),
        )
        if encoding is not None:
            tail += ((b"grpc-encoding", encoding.encode()),)
        self._tail = tail
        self._prefixes: dict[str, tuple[Header, ...]] = {}
        self._plain: dict[str, tuple[Header, ...]] = {}

    def _prefix(self, method: str) -> tuple[Header, ...]:
        prefix = self._prefixes.get(method)
        if prefix is None:
            if len(self._prefixes) >= self.LIMIT:
                self._prefixes.clear()
                self._plain.clear()
            prefix = self._prefixes[method] = (
                (b":method", b"POST"),
                (b":scheme", self._scheme),
                (b":path", method.encode("ascii")),
                (b":authority", self._authority),
            )
        return prefix

    def __call__(self, method: str, deadline: Deadline | None) -> tuple[Header, ...]:
        """A call's request headers; asyncio.TimeoutError if its deadline passed."""
        if deadline is None:
            head = self._plain.get(method)
            if head is None:
                head = self._plain[method] = self._prefix(method) + self._tail
            return head
        timeout = deadline.time_remaining()
        if timeout <= 0:
            raise asyncio.TimeoutError("before the call was sent")
        grpc_timeout = (b"grpc-timeout", encode_timeout(timeout).encode())
        return (*self._prefix(method), grpc_timeout, *self._tail)


def metadata_headers(metadata: _MetadataLike) -> list[Header]:
    return [(k.encode(), v.encode()) for k, v in encode_metadata(metadata)]


def usual_reply_headers(raw: Headers) -> bool:
    """`:status 200`, a gRPC content-type and at most grpc-accept-encoding: nothing to read."""
    return (
        len(raw) <= 3
        and raw[0] == OK_STATUS
        and raw[1][0] == b"content-type"
        and raw[1][1].startswith(b"application/grpc")
        and (len(raw) == 2 or raw[2][0] == b"grpc-accept-encoding")
    )


EMPTY_MESSAGE = (b"grpc-message", b"")


def plain_ok(trailers: Headers) -> bool:
    """Trailers that say OK and nothing else (an empty grpc-message, as grpc-go sends, aside)."""
    size = len(trailers)
    return (size == 1 or (size == 2 and trailers[1] == EMPTY_MESSAGE)) and trailers[0] == OK_TRAILER


empty_metadata = cast("Callable[[], _Metadata]", MultiDict)
"""A new empty metadata map (MultiDict itself: no Python call on a call's way)."""


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    return [(name.decode("ascii"), value.decode("latin-1")) for name, value in headers]
