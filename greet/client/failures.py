"""The one boundary where a failed attempt's exception becomes an RpcError, by its type.

    GRPCError               the server's status (with its rich details)
    asyncio.TimeoutError    the call's deadline passed: DEADLINE_EXCEEDED
    StreamRefused           REFUSED_STREAM: UNAVAILABLE, not processed, the connection is fine
    StreamReset             gRPC's RST_STREAM mapping (doc/PROTOCOL-HTTP2.md), the connection
                            is fine
    NotProcessed            a GOAWAY left it out: UNAVAILABLE, not processed, connection gone
    StreamTerminatedError   the connection ended under it (ConnectionLost, ...): UNAVAILABLE
    OSError                 no connection (refused, unreachable, HandshakeFailed, TLS):
                            UNAVAILABLE
    RpcError                already one (greet's own checks, e.g. a unary call with no reply)

Message texts are never read: the types (greet.transport) carry what is known, including
`processed`, whether the server may have seen the request. An attempt its server refused or a
GOAWAY left out (StreamRefused, NotProcessed) gets A6's transparent retry (`transparent`); one
that found no connection was not processed either, but follows the retry policy (backoff,
attempts counted), so that `max_attempts=1` still means one try when an endpoint is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from greet.errors import RpcError
from greet.transport import ConnectionEnded, ErrorCode, StreamReset

__all__ = ["ATTEMPT_ERRORS", "Failure", "classify"]

ATTEMPT_ERRORS = (GRPCError, StreamTerminatedError, OSError, asyncio.TimeoutError, RpcError)
"""What a failed attempt raises; anything else is not a call failure and propagates."""

RESET_STATUS: dict[int, Status] = {
    ErrorCode.REFUSED_STREAM: Status.UNAVAILABLE,
    ErrorCode.CANCEL: Status.CANCELLED,
    ErrorCode.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}
"""gRPC's mapping of a RST_STREAM error code to a status (doc/PROTOCOL-HTTP2.md); INTERNAL else."""


@dataclass(frozen=True)
class Failure:
    """A failed attempt: the error, whether its connection failed (the endpoint is then taken
    out of the pool), whether the server may have processed the request, and whether the
    server said it did not (a transparent retry is due)."""

    error: RpcError
    cause: BaseException | None  # what it was mapped from (None: it was an RpcError already)
    connection_failed: bool = False
    processed: bool = True
    transparent: bool = False


def classify(error: BaseException, endpoint: str) -> Failure:
    """The Failure for one of ATTEMPT_ERRORS raised by an attempt on `endpoint`; its RpcError's
    `__cause__` is `error`, as `raise ... from error` sets it."""
    if isinstance(error, RpcError):
        return Failure(error, error.__cause__)
    failure = _mapped(error, endpoint)
    failure.error.__cause__ = error
    return failure


def _mapped(error: BaseException, endpoint: str) -> Failure:
    if isinstance(error, GRPCError):
        return Failure(RpcError.from_grpc_error(error), error)
    if isinstance(error, asyncio.TimeoutError):  # before OSError: it is one on Python >= 3.11
        return Failure(RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded"), error)
    if isinstance(error, StreamReset):
        # this stream only: the connection is fine
        status = RESET_STATUS.get(error.error_code, Status.INTERNAL)
        rpc_error = RpcError(status, f"{endpoint}: {error}")
        return Failure(rpc_error, error, processed=error.processed, transparent=not error.processed)
    if isinstance(error, StreamTerminatedError):
        # the connection ended (lost, closed, GOAWAY before the stream was served)
        processed = error.processed if isinstance(error, ConnectionEnded) else True
        rpc_error = RpcError(Status.UNAVAILABLE, f"{endpoint}: stream terminated: {error}")
        return Failure(
            rpc_error, error, connection_failed=True, processed=processed, transparent=not processed
        )
    rpc_error = RpcError(Status.UNAVAILABLE, f"cannot connect to {endpoint}: {error}")
    return Failure(rpc_error, error, connection_failed=True, processed=False)
