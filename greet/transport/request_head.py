"""A request's header block, read once: routing fields, deadline, metadata, size.

One pass over the engine's raw (bytes) headers gives everything the connection needs to decide
about a call: `:method`, `:path`, content-type, user-agent, `grpc-timeout` (as a grpclib
Deadline) and the call's metadata (a MultiDict as grpclib's `decode_metadata` builds it: no
pseudo-headers, no `grpc-*`, te, content-type or user-agent; `-bin` values base64-decoded), and
the header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (32 bytes of overhead a field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpclib.metadata import Deadline, _Metadata, decode_bin_value, decode_timeout
from multidict import MultiDict

from greet.transport.engine import Headers

if TYPE_CHECKING:
    from grpclib.const import Handler, Status

__all__ = ["BadRequestHead", "RequestHead", "Route", "read_request_head"]

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
    timeout: bytes | None
    encoding: str | None  # grpc-encoding: how the request messages are compressed
    accept_encoding: bytes | None  # grpc-accept-encoding: what the client decodes
    size: int
    metadata_fields: list[tuple[bytes, bytes]]

    def deadline(self) -> Deadline | None:
        """The call's deadline from grpc-timeout; BadRequestHead when it is malformed."""
        if self.timeout is None:
            return None
        try:
            return Deadline.from_timeout(decode_timeout(self.timeout.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise BadRequestHead(
                f"malformed grpc-timeout {self.timeout.decode('latin-1')!r}"
            ) from None

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


def read_request_head(headers: Headers) -> RequestHead:
    method = b""
    path = ""
    content_type = user_agent = None
    timeout = accept = None
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
            if name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value.decode("ascii", "replace").strip().lower()
            elif name == b"grpc-accept-encoding":
                accept = value
        elif name not in NOT_METADATA:
            fields.append(header)
    return RequestHead(
        method, path, content_type, user_agent, timeout, encoding, accept, size, fields
    )
