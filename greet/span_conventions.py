"""What greet's tracing spans say: the OpenTelemetry RPC semantic conventions, v1.37.0.

greet follows the RPC span conventions as of semantic conventions v1.37.0
(https://github.com/open-telemetry/semantic-conventions/blob/v1.37.0/docs/rpc/grpc.md), the
version that grpcio's and grpc-go's OpenTelemetry instrumentations, and the dashboards built on
them, use. Later releases (1.38 on) rename these attributes (`rpc.system.name`, a fully qualified
`rpc.method`, a string status code) and ask existing instrumentations to keep emitting the old
ones by default; greet will add the new ones behind `OTEL_SEMCONV_STABILITY_OPT_IN=rpc` as
that migration guide says, once they are released as stable.

    span name          greet_service.GreetService/SayHello   ($package.$service/$method)
    rpc.system         grpc
    rpc.service        greet_service.GreetService
    rpc.method         SayHello
    rpc.grpc.status_code   the call's status as an int (0 OK, 14 UNAVAILABLE, ...)
    server.address, server.port                on client spans: the endpoint called;
                                               on server spans: the listening address
    network.peer.address, network.peer.port    on server spans: the client's address
    network.transport, network.type            tcp; ipv4 or ipv6

The span status is ERROR for every non-OK status on client spans, and on server spans only for
the statuses the conventions count as the server's errors (SERVER_ERRORS); otherwise unset.

Client attempt spans add gRPC's own attempt attributes (gRFC A72, as grpc-java and grpc-go's
OpenTelemetry plugins name them): `previous-rpc-attempts` and `transparent-retry`. Message counts
are attributes of greet's own: `greet.messages.sent`, `greet.messages.received`.

This module is plain data: importing it imports nothing of OpenTelemetry.
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

from grpclib.const import Status

__all__ = [
    "ATTEMPT_PREFIX",
    "GREET_MESSAGES_RECEIVED",
    "GREET_MESSAGES_SENT",
    "INSTRUMENTATION_NAME",
    "NETWORK_PEER_ADDRESS",
    "NETWORK_PEER_PORT",
    "NETWORK_TRANSPORT",
    "NETWORK_TYPE",
    "PREVIOUS_RPC_ATTEMPTS",
    "RPC_GRPC_STATUS_CODE",
    "RPC_METHOD",
    "RPC_SERVICE",
    "RPC_SYSTEM",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "SERVER_ADDRESS",
    "SERVER_ERRORS",
    "SERVER_PORT",
    "TRANSPARENT_RETRY",
    "AttributeValues",
    "address_attributes",
    "method_attributes",
    "span_name",
]

SEMCONV_VERSION = "1.37.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION_NAME = "greet"
"""The instrumentation scope of every span greet makes (with greet's version)."""

RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
NETWORK_PEER_ADDRESS = "network.peer.address"
NETWORK_PEER_PORT = "network.peer.port"
NETWORK_TRANSPORT = "network.transport"
NETWORK_TYPE = "network.type"
PREVIOUS_RPC_ATTEMPTS = "previous-rpc-attempts"
TRANSPARENT_RETRY = "transparent-retry"
GREET_MESSAGES_SENT = "greet.messages.sent"
GREET_MESSAGES_RECEIVED = "greet.messages.received"

ATTEMPT_PREFIX = "Attempt."
"""An attempt span's name is the call's with this prefix, as in gRFC A72."""

SERVER_ERRORS = frozenset(
    {
        Status.UNKNOWN,
        Status.DEADLINE_EXCEEDED,
        Status.UNIMPLEMENTED,
        Status.INTERNAL,
        Status.UNAVAILABLE,
        Status.DATA_LOSS,
    }
)
"""The statuses that make a SERVER span's status ERROR (every non-OK one does on CLIENT spans)."""

AttributeValues: TypeAlias = "dict[str, str | int | bool]"


def span_name(path: str) -> str:
    """`/greet_service.GreetService/SayHello` -> `greet_service.GreetService/SayHello`."""
    return path[1:] if path.startswith("/") else path


def method_attributes(path: str) -> AttributeValues:
    """rpc.system, rpc.service and rpc.method of a method path."""
    service, _, method = span_name(path).rpartition("/")
    return {RPC_SYSTEM: "grpc", RPC_SERVICE: service, RPC_METHOD: method}


def address_attributes(
    host: str, port: int, *, address_key: str = SERVER_ADDRESS, port_key: str = SERVER_PORT
) -> AttributeValues:
    """`host` and `port` under the given keys (server.* by default), with network.transport
    and, for an IP address, network.type; a wildcard address (`0.0.0.0`, `::`) names no host,
    so it gives the port alone."""
    attributes: AttributeValues = {NETWORK_TRANSPORT: "tcp", port_key: port}
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone is not part of it
    except ValueError:  # a host name
        attributes[address_key] = host
        return attributes
    attributes[NETWORK_TYPE] = f"ipv{ip.version}"
    if not ip.is_unspecified:
        attributes[address_key] = host
    return attributes
