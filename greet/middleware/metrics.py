"""ServerMetrics: go-grpc-prometheus' server metrics, recorded by a call observer.

The names, labels and label values are go-grpc-prometheus' (greet.grpc_labels), so dashboards
and alerts written for it work unchanged:

    grpc_server_started_total         calls started (the chain began)
    grpc_server_handled_total         calls ended, by grpc_code (OK, Canceled, InvalidArgument ...)
    grpc_server_msg_received_total    request messages the handler read
    grpc_server_msg_sent_total        response messages sent
    grpc_server_handling_seconds      histogram: the call's duration, request headers to its end

all labelled grpc_service, grpc_method and grpc_type. They count calls of every wire protocol
alike (gRPC, and browsers' Connect and gRPC-Web, greet.transport._web); one more series splits
the calls started by protocol:

    greet_server_protocol_started_total   calls started, by protocol ("grpc", "connect",
                                          "grpc-web"), grpc_service and grpc_method
 `initialize(methods)` (GreetServer calls
it with every served method, health and reflection included) creates each method's series at 0,
as go-grpc-prometheus' `InitializeMetrics` does: started, msg_received, msg_sent, the histogram,
and handled for every one of the 17 codes, so `rate()` and alerts see a series before the first
call and the first error. Unknown method paths never reach interceptors (the transport answers
them UNIMPLEMENTED), so no client can grow the label set.

Every number comes from the call observer (`call.status`, `call.elapsed`,
`call.messages_received`, `call.messages_sent`) when the call ends. A long stream's messages
would then show only at its end; `flush()` adds what calls in flight have exchanged since, and
runs before every scrape (or every second in a worker process, greet.server.metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpclib.const import Cardinality, Handler, Status

from greet.grpc_labels import CODE_NAMES, LATENCY_BUCKETS, grpc_type, method_labels
from greet.middleware.observer import CallObserver
from greet.transport import ServerCall

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["BUCKETS", "LABELS", "ServerMetrics"]

LABELS = ("grpc_service", "grpc_method", "grpc_type")
"""The labels of every grpc_server_* series (grpc_server_handled_total adds grpc_code)."""

BUCKETS = LATENCY_BUCKETS  # shared with the client's metrics (greet.grpc_labels)


@dataclass
class _MethodSeries:
    """The labelled children of one method, looked up once rather than per call."""

    started: Any
    received: Any
    sent: Any
    handling: Any
    handled: dict[Status, Any]


@dataclass
class _Counted:
    """What has been added to the message counters for a streaming call in flight."""

    series: _MethodSeries
    received: int = 0
    sent: int = 0


class ServerMetrics(CallObserver):
    """The grpc_server_* metrics in `registry` (see the module docstring); an interceptor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self._series: dict[str, _MethodSeries] = {}
        self._in_flight: dict[ServerCall, _Counted] = {}

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, (*LABELS, *extra), registry=self.registry)

        self.started_total = counter("grpc_server_started_total", "RPCs started on the server.")
        self.handled_total = counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            ("grpc_code",),
        )
        self.msg_received_total = counter(
            "grpc_server_msg_received_total", "RPC stream messages received on the server."
        )
        self.msg_sent_total = counter(
            "grpc_server_msg_sent_total", "gRPC stream messages sent by the server."
        )
        self.protocol_started_total = Counter(
            "greet_server_protocol_started_total",
            "RPCs started on the server, by wire protocol (grpc, connect, grpc-web).",
            ("protocol", "grpc_service", "grpc_method"),
            registry=self.registry,
        )
        self._by_protocol: dict[tuple[str, str], Any] = {}
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            LABELS,
            buckets=BUCKETS,
            registry=self.registry,
        )

    def initialize(self, methods: Mapping[str, Handler]) -> None:
        """Create the series of every method (path -> handler, as a grpclib servable's
        `__mapping__()` or TransportServer.methods holds them) at 0."""
        for path, handler in methods.items():
            self._add(path, handler.cardinality)

    def _add(self, path: str, kind: Cardinality) -> _MethodSeries:
        labels = (*method_labels(path), grpc_type(kind))
        series = self._series[path] = _MethodSeries(
            started=self.started_total.labels(*labels),
            received=self.msg_received_total.labels(*labels),
            sent=self.msg_sent_total.labels(*labels),
            handling=self.handling_seconds.labels(*labels),
            handled={
                status: self.handled_total.labels(*labels, name)
                for status, name in CODE_NAMES.items()
            },
        )
        return series

    # -- the call observer -------------------------------------------------------------------

    def started(self, call: ServerCall) -> None:
        series = self._series.get(call.method) or self._add(call.method, call.kind)
        series.started.inc()
        key = (call.protocol, call.method)
        protocol = self._by_protocol.get(key)
        if protocol is None:
            protocol = self._by_protocol[key] = self.protocol_started_total.labels(
                call.protocol, *method_labels(call.method)
            )
        protocol.inc()
        if call.kind is not Cardinality.UNARY_UNARY:
            self._in_flight[call] = _Counted(series)

    def ended(self, call: ServerCall, status: Status) -> None:
        counted = self._in_flight.pop(call, None)
        if counted is not None:
            series = counted.series
            received = call.messages_received - counted.received
            sent = call.messages_sent - counted.sent
        else:
            series = self._series[call.method]
            received, sent = call.messages_received, call.messages_sent
        if received:
            series.received.inc(received)
        if sent:
            series.sent.inc(sent)
        series.handled[status].inc()
        series.handling.observe(call.elapsed)

    def flush(self) -> None:
        """Count the messages that streaming calls in flight exchanged since the last flush."""
        for call, counted in self._in_flight.items():
            received, sent = call.messages_received, call.messages_sent
            if received > counted.received:
                counted.series.received.inc(received - counted.received)
                counted.received = received
            if sent > counted.sent:
                counted.series.sent.inc(sent - counted.sent)
                counted.sent = sent
