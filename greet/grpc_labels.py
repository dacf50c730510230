"""The label values of go-grpc-prometheus, for server and client metrics alike.

Dashboards and alerts written for go-grpc-prometheus (and grpc-ecosystem's go-grpc-middleware
metrics) match on these exact strings, so greet writes them the same way:

    grpc_code     grpc-go's `codes.Code.String()`: OK, Canceled, InvalidArgument, ...
                  (not the upper-case names of the gRPC spec, CANCELLED, INVALID_ARGUMENT)
    grpc_type     unary, client_stream, server_stream, bidi_stream
    grpc_service  the method path up to its last part: greet_service.GreetService
    grpc_method   the method's own name: SayHello

Server metrics (greet.middleware.metrics) and client metrics both import these from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from grpclib.const import Cardinality, Status

__all__ = ["CODE_NAMES", "GRPC_TYPES", "LATENCY_BUCKETS", "code_name", "grpc_type", "method_labels"]

CODE_NAMES: Mapping[Status, str] = MappingProxyType(
    {
        Status.OK: "OK",
        Status.CANCELLED: "Canceled",
        Status.UNKNOWN: "Unknown",
        Status.INVALID_ARGUMENT: "InvalidArgument",
        Status.DEADLINE_EXCEEDED: "DeadlineExceeded",
        Status.NOT_FOUND: "NotFound",
        Status.ALREADY_EXISTS: "AlreadyExists",
        Status.PERMISSION_DENIED: "PermissionDenied",
        Status.RESOURCE_EXHAUSTED: "ResourceExhausted",
        Status.FAILED_PRECONDITION: "FailedPrecondition",
        Status.ABORTED: "Aborted",
        Status.OUT_OF_RANGE: "OutOfRange",
        Status.UNIMPLEMENTED: "Unimplemented",
        Status.INTERNAL: "Internal",
        Status.UNAVAILABLE: "Unavailable",
        Status.DATA_LOSS: "DataLoss",
        Status.UNAUTHENTICATED: "Unauthenticated",
    }
)
"""grpc_code for every status, as grpc-go spells it (`codes.Code.String()`)."""

GRPC_TYPES: Mapping[Cardinality, str] = MappingProxyType(
    {
        Cardinality.UNARY_UNARY: "unary",
        Cardinality.UNARY_STREAM: "server_stream",
        Cardinality.STREAM_UNARY: "client_stream",
        Cardinality.STREAM_STREAM: "bidi_stream",
    }
)
"""grpc_type for every call kind."""


LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip
"""Histogram buckets of the handling_seconds metrics, in seconds: from well under a millisecond
(a unary call here takes about 0.1 ms) to long streams."""


def code_name(status: Status) -> str:
    """The grpc_code label value of `status` (OK, Canceled, InvalidArgument, ...)."""
    return CODE_NAMES[status]


def grpc_type(kind: Cardinality) -> str:
    """The grpc_type label value of a call kind (unary, server_stream, ...)."""
    return GRPC_TYPES[kind]


def method_labels(path: str) -> tuple[str, str]:
    """(grpc_service, grpc_method) of a method path `/package.Service/Method`.

    As go-grpc-prometheus splits it: at the first `/` after the leading one; a path without
    one is ("unknown", "unknown").
    """
    service, slash, method = path.removeprefix("/").partition("/")
    if not slash:
        return "unknown", "unknown"
    return service, method
