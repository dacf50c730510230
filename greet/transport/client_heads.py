"""The header blocks of a client call: the request's, and quick reads of the usual replies.

`request_headers` writes the pseudo-headers, grpc-timeout, te, content-type, user-agent and the
encodings; `usual_reply_headers` and `plain_ok` recognise the reply headers and trailers of an
ordinary successful call without decoding them (the common case costs no metadata parsing).
"""

from __future__ import annotations

import asyncio

from grpclib.metadata import (
    USER_AGENT,
    Deadline,
    _Metadata,
    _MetadataLike,
    encode_metadata,
    encode_timeout,
)
from multidict import MultiDict

from greet.transport.compression import ACCEPT_ENCODING
from greet.transport.engine import Header, Headers

__all__ = [
    "empty_metadata",
    "metadata_headers",
    "plain_ok",
    "request_headers",
    "text_headers",
    "usual_reply_headers",
]

USER_AGENT_HEADER = (b"user-agent", USER_AGENT.encode())
OK_STATUS = (b":status", b"200")
OK_TRAILER = (b"grpc-status", b"0")


def request_headers(
    scheme: bytes, authority: bytes, method: str, deadline: Deadline | None, encoding: str | None
) -> list[Header]:
    """A call's request headers (metadata aside); asyncio.TimeoutError if the deadline passed."""
    headers: list[Header] = [
        (b":method", b"POST"),
        (b":scheme", scheme),
        (b":path", method.encode("ascii")),
        (b":authority", authority),
    ]
    if deadline is not None:
        timeout = deadline.time_remaining()
        if timeout <= 0:
            raise asyncio.TimeoutError()
        headers.append((b"grpc-timeout", encode_timeout(timeout).encode()))
    headers += [
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        USER_AGENT_HEADER,
        (b"grpc-accept-encoding", ACCEPT_ENCODING),
    ]
    if encoding is not None:
        headers.append((b"grpc-encoding", encoding.encode()))
    return headers


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


def plain_ok(trailers: Headers) -> bool:
    """Trailers that say OK and nothing else."""
    return len(trailers) == 1 and trailers[0] == OK_TRAILER


def empty_metadata() -> _Metadata:
    return _Metadata(MultiDict())


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    return [(name.decode("ascii"), value.decode("latin-1")) for name, value in headers]
