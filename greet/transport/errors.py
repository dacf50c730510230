"""How a client call's HTTP/2 stream can end badly, as types (never read from message text).

All are grpclib's `StreamTerminatedError`, so code written for grpclib's Channel handles them as
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
time, or the connection closed before them.
"""

from __future__ import annotations

from grpclib.exceptions import StreamTerminatedError

__all__ = [
    "ConnectionEnded",
    "ConnectionLost",
    "HandshakeFailed",
    "NotProcessed",
    "StreamRefused",
    "StreamReset",
]


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
