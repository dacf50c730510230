"""The header blocks a server sends: response headers, trailers, trailers-only answers.

Built once where they do not vary (`RESPONSE_HEADERS`, `OK_TRAILERS`), otherwise per call from the
status, its message, rich error details (grpc-status-details-bin) and the handler's metadata.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from grpclib.const import Status
from grpclib.metadata import (
    _STATUS_DETAILS_KEY,
    encode_bin_value,
    encode_grpc_message,
    encode_metadata,
)

from greet.transport.compression import ACCEPT_ENCODING
from greet.transport.engine import Header

__all__ = [
    "CONTENT_TYPE",
    "OK_TRAILERS",
    "RESPONSE_HEADERS",
    "STATUS_VALUES",
    "header_list",
    "rejection",
    "trailers",
]

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
