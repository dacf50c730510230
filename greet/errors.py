"""One error hierarchy for the service and the client.

    GreetError                  base of everything greet raises on purpose
    +-- InvalidRequest          the request breaks a rule            -> INVALID_ARGUMENT
    +-- LimitExceeded           the request is larger than allowed   -> RESOURCE_EXHAUSTED
    +-- RpcError                a call failed; carries the gRPC status the server (or the
                                transport) gave, e.g. UNAVAILABLE when no connection could be made

Domain errors become gRPC statuses at one boundary (`to_grpc_error`), and grpclib's client-side
exceptions become RpcError at one boundary in the client (`greet.client`).
"""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError

__all__ = [
    "GreetError",
    "InvalidRequest",
    "LimitExceeded",
    "RpcError",
    "to_grpc_error",
]


class GreetError(Exception):
    """Base class of every error greet raises on purpose."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(GreetError):
    """The request breaks a rule of the service (bad name, malformed message)."""

    status = Status.INVALID_ARGUMENT


class LimitExceeded(GreetError):
    """The request asks for more than a configured limit allows."""

    status = Status.RESOURCE_EXHAUSTED


class RpcError(GreetError):
    """A call failed with a gRPC status (raised by the client library)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name


def to_grpc_error(error: GreetError) -> GRPCError:
    """The gRPC status a domain error is reported to the caller with."""
    return GRPCError(error.status, error.message)
