"""Prometheus metrics of GreetClient calls, as go-grpc-prometheus' client metrics name them.

    registry = prometheus_client.CollectorRegistry()
    client = GreetClient(targets, interceptors=[ClientMetrics(registry)])

    grpc_client_started_total         calls started
    grpc_client_handled_total         calls finished, by grpc_code (OK, Canceled, Unavailable, ...)
    grpc_client_msg_sent_total        request messages the calls sent
    grpc_client_msg_received_total    replies the calls received
    grpc_client_handling_seconds      histogram: call start to its end, all attempts included

Every series has the labels grpc_type (unary, client_stream, server_stream, bidi_stream),
grpc_service and grpc_method; grpc_code values are grpc-go's code names (codes.Code.String()),
so dashboards and alerts written for go-grpc-prometheus read them unchanged. ClientMetrics is a
call interceptor (greet.client.Interceptor): it counts calls as the application sees them,
once each however many attempts they took, and a call's messages as its last attempt sent and
received them (a retry's resent requests are not counted twice). Put it first in the list to
count calls that a later interceptor refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpclib.const import Status
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from greet.grpc_labels import CODE_NAMES, GRPC_TYPES, LATENCY_BUCKETS, code_name

if TYPE_CHECKING:
    from greet.client import ClientCall, Proceed

__all__ = ["BUCKETS", "GRPC_CODE_NAMES", "GRPC_TYPES", "ClientMetrics", "grpc_code"]

GRPC_CODE_NAMES = CODE_NAMES  # the shared tables (greet.grpc_labels), server and client alike
BUCKETS = LATENCY_BUCKETS

LABELS = ("grpc_type", "grpc_service", "grpc_method")


def grpc_code(status: Status | None) -> str:
    """The grpc_code label of a call's status (None, a call that never ended: Unknown)."""
    return code_name(status) if status is not None else "Unknown"


class ClientMetrics:
    """The client metrics (see the module docstring), registered in `registry` (default:
    prometheus_client's global REGISTRY); a metric name can be registered once per registry."""

    def __init__(
        self, registry: CollectorRegistry = REGISTRY, *, buckets: tuple[float, ...] = BUCKETS
    ) -> None:
        self.started = Counter(
            "grpc_client_started_total",
            "Total number of RPCs started on the client.",
            LABELS,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_client_handled_total",
            "Total number of RPCs completed by the client, regardless of success or failure.",
            (*LABELS, "grpc_code"),
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_client_msg_sent_total",
            "Total number of gRPC stream messages sent by the client.",
            LABELS,
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_client_msg_received_total",
            "Total number of RPC stream messages received by the client.",
            LABELS,
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the "
            "application.",
            LABELS,
            buckets=buckets,
            registry=registry,
        )

    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        labels = (GRPC_TYPES[call.kind], call.service, call.method_name)
        self.started.labels(*labels).inc()
        try:
            await proceed()
        finally:
            self.handled.labels(*labels, grpc_code(call.status)).inc()
            self.handling_seconds.labels(*labels).observe(call.elapsed)
            if call.messages_sent:
                self.msg_sent.labels(*labels).inc(call.messages_sent)
            if call.messages_received:
                self.msg_received.labels(*labels).inc(call.messages_received)
