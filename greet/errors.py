"""One error hierarchy for the service and the client.

    GreetError                  base of everything greet raises on purpose
    +-- InvalidRequest          the request breaks a rule            -> INVALID_ARGUMENT
    +-- LimitExceeded           the request is larger than allowed   -> RESOURCE_EXHAUSTED
    +-- RpcError                a call failed; carries the gRPC status the server (or the
                                transport) gave, e.g. UNAVAILABLE when no connection could be made

A domain error that breaks a limit carries a `Violation`: the request field, the limit, the
actual value and a machine-readable reason. Domain errors become gRPC statuses at one boundary
(`to_grpc_error`), where a Violation also becomes the standard rich error details
(`grpc-status-details-bin`, see greet.error_details). grpclib's client-side exceptions become
RpcError at one boundary in the client (`greet.client`), which keeps those details as typed
google.rpc messages (`RpcError.details`, `.bad_request`, `.error_info`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import Message
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from greet.error_details import status_details

__all__ = [
    "GreetError",
    "InvalidRequest",
    "LimitExceeded",
    "MetadataValue",
    "RpcError",
    "Trailers",
    "Violation",
    "to_grpc_error",
]

DetailT = TypeVar("DetailT", bound=Message)

MetadataValue: TypeAlias = str | bytes
"""A metadata value: text, or bytes for keys ending in `-bin`."""

Trailers: TypeAlias = Mapping[str, MetadataValue] | Iterable[tuple[str, MetadataValue]]
"""Trailing metadata as grpclib gives it (a MultiDict) or as (key, value) pairs."""


@dataclass(frozen=True)
class Violation:
    """Which limit a request broke, in terms a caller can act on.

    `reason` is machine-readable (NAME_TOO_LONG, TOO_MANY_NAMES, TOO_MANY_MESSAGES, see
    greet.greeting), `field` the offending part of the request as a field path (`name`,
    `names[3]`, `names`; `requests` for the client's message stream), `limit` the limit in force,
    `actual` what the request had (characters, names, messages so far), `setting` the server flag
    that sets the limit (`--max-name-chars`).
    """

    reason: str
    field: str
    limit: int
    actual: int
    setting: str


class GreetError(Exception):
    """Base class of every error greet raises on purpose."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str, *, violation: Violation | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.violation = violation


class InvalidRequest(GreetError):
    """The request breaks a rule of the service (bad name, malformed message)."""

    status = Status.INVALID_ARGUMENT


class LimitExceeded(GreetError):
    """The request asks for more than a configured limit allows."""

    status = Status.RESOURCE_EXHAUSTED


class RpcError(GreetError):
    """A call failed with a gRPC status (raised by the client library).

    `details` are the rich error details the server sent (`grpc-status-details-bin`) as typed
    google.rpc messages, e.g. `google.rpc.BadRequest`; `bad_request` and `error_info` pick the
    two kinds greet's server sends. `trailers` is the trailing metadata as (key, value) pairs
    (bytes values for `-bin` keys). An RpcError survives pickling with all of them.
    """

    def __init__(
        self,
        status: Status,
        message: str,
        *,
        details: Iterable[Message] = (),
        trailers: Trailers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.details: tuple[Message, ...] = tuple(details)
        self.trailers: tuple[tuple[str, MetadataValue], ...] = metadata_pairs(trailers)

    @classmethod
    def from_grpc_error(cls, error: GRPCError, trailers: Trailers | None = None) -> RpcError:
        """The RpcError for a grpclib GRPCError, with its details and the call's trailers.

        grpclib decodes only details whose message type is known to google.protobuf's pool (all
        of google/rpc/error_details.proto is); it reduces the others to a type name, and those
        are left out here.
        """
        details = [detail for detail in error.details or () if isinstance(detail, Message)]
        return cls(error.status, error.message or "", details=details, trailers=trailers)

    def detail(self, kind: type[DetailT]) -> DetailT | None:
        """The first detail of the given message type, or None."""
        return next((detail for detail in self.details if isinstance(detail, kind)), None)

    @property
    def bad_request(self) -> BadRequest | None:
        """The `google.rpc.BadRequest` detail (which fields broke which rule), if sent."""
        return self.detail(BadRequest)

    @property
    def error_info(self) -> ErrorInfo | None:
        """The `google.rpc.ErrorInfo` detail (reason, domain, metadata), if sent."""
        return self.detail(ErrorInfo)

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles as cls(*self.args), and args holds only the message; rebuild from
        # status and message, then restore every attribute (details, trailers, ...).
        return (type(self), (self.status, self.message), self.__dict__)


def metadata_pairs(metadata: Trailers | None) -> tuple[tuple[str, MetadataValue], ...]:
    """Metadata as (key, value) pairs; a Mapping gives all its items (a MultiDict repeats keys)."""
    if metadata is None:
        return ()
    if isinstance(metadata, Mapping):
        return tuple(metadata.items())
    return tuple(metadata)


def to_grpc_error(error: GreetError, *, domain: str) -> GRPCError:
    """The gRPC status a domain error is reported to the caller with, by the service `domain`
    (its full name, `package.Service`: the ErrorInfo's domain).

    A Violation travels as rich error details (google.rpc.BadRequest and google.rpc.ErrorInfo),
    which grpclib's server sends as `grpc-status-details-bin`.
    """
    if error.violation is None:
        return GRPCError(error.status, error.message)
    return GRPCError(
        error.status, error.message, list(status_details(error.violation, error.message, domain))
    )
