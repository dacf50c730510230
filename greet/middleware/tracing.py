"""ServerTracing: an OpenTelemetry SERVER span around every call (needs the `otel` extra).

GreetServer puts it first in its chain when tracing is on (greet.telemetry: OTEL_* environment
variables), so refused calls are traced too and the span covers everything the server does for
the call. Any grpclib-based server on greet's transport can use it the same way:

    GreetServer(config, interceptors=[ServerTracing(provider)])

Each span follows the RPC semantic conventions v1.37.0 (greet.span_conventions): named
`greet_service.GreetService/SayHello`, kind SERVER, with rpc.system, rpc.service, rpc.method,
server.address/port (the listening address), network.peer.address/port (the client),
rpc.grpc.status_code, and ERROR status for the statuses the conventions count as server errors
(UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).

Its parent is the context the client sent: the incoming metadata is read with the global
propagator (W3C `traceparent` and `tracestate`, and baggage, unless OTEL_PROPAGATORS says
otherwise), so a grpcio, grpc-go or GreetClient caller's trace goes on here. The span is the
current span while the rest of the chain and the handler run (they run in the same context), so
spans the handler starts are its children.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from multidict import MultiMapping
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode

from greet.middleware.observer import final_status
from greet.span_conventions import (
    GREET_MESSAGES_RECEIVED,
    GREET_MESSAGES_SENT,
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    RPC_GRPC_STATUS_CODE,
    SERVER_ERRORS,
    AttributeValues,
    address_attributes,
    method_attributes,
    span_name,
)
from greet.telemetry import greet_tracer, tracer_provider
from greet.transport import Proceed, ServerCall, TransportServer

__all__ = ["METADATA_GETTER", "MetadataGetter", "ServerTracing"]


class MetadataGetter(Getter["MultiMapping[str | bytes]"]):
    """Reads propagation fields (traceparent, tracestate, baggage) from a call's metadata."""

    def get(self, carrier: MultiMapping[str | bytes], key: str) -> list[str] | None:
        values = [value for value in carrier.getall(key, ()) if isinstance(value, str)]
        return values or None

    def keys(self, carrier: MultiMapping[str | bytes]) -> list[str]:
        return list(dict.fromkeys(carrier.keys()))


METADATA_GETTER = MetadataGetter()


class ServerTracing:
    """A SERVER span per call (see the module docstring); an interceptor.

    `tracer_provider`: where the spans go; by default the provider greet.telemetry settled
    on for this process (the application's global one, or greet's from OTEL_*), else (tracing
    off by the environment) the global one, whenever the application sets it.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        provider = tracer_provider or _process_provider()
        self.tracer = greet_tracer(provider)
        self._methods: dict[str, tuple[str, AttributeValues]] = {}
        self._listening: WeakKeyDictionary[TransportServer, AttributeValues] = WeakKeyDictionary()

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        metadata: MultiMapping[str | bytes] | None = call.metadata
        parent = None if metadata is None else propagate.extract(metadata, getter=METADATA_GETTER)
        name, attributes = self._start_attributes(call)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        outside = context.get_current()
        context.attach(trace.set_span_in_context(span, parent))
        raised: BaseException | None = None
        try:
            await proceed()
        except BaseException as error:
            raised = error
            raise
        finally:
            # Set back rather than detached: on Python < 3.12 a call that had to wait goes on
            # in a copy of the context it started in (greet.transport._server_call), where the token
            # attach() returned cannot be reset.
            context.attach(outside)
            status = final_status(call, raised)
            if span.is_recording():
                span.set_attributes(
                    {
                        RPC_GRPC_STATUS_CODE: status.value,
                        GREET_MESSAGES_RECEIVED: call.messages_received,
                        GREET_MESSAGES_SENT: call.messages_sent,
                    }
                )
                if status in SERVER_ERRORS:
                    span.set_status(StatusCode.ERROR, call.status_message or status.name)
            span.end()

    def _start_attributes(self, call: ServerCall) -> tuple[str, AttributeValues]:
        """The span's name and the attributes known when the call starts."""
        method = self._methods.get(call.method)
        if method is None:
            method = self._methods[call.method] = (
                span_name(call.method),
                method_attributes(call.method),
            )
        name, method_values = method
        attributes = {**method_values, **self._listening_attributes(call.server)}
        peer = call.peer.addr()
        if isinstance(peer, tuple) and len(peer) >= 2:
            attributes[NETWORK_PEER_ADDRESS] = str(peer[0])
            attributes[NETWORK_PEER_PORT] = int(peer[1])
        return name, attributes

    def _listening_attributes(self, server: TransportServer) -> AttributeValues:
        """server.address and server.port: where `server` listens (read once per server)."""
        attributes = self._listening.get(server)
        if attributes is None:
            try:
                host, port = server.address
            except (RuntimeError, IndexError, OSError):  # its listener already closed
                return {}
            attributes = self._listening[server] = address_attributes(host, port)
        return attributes


def _process_provider() -> trace.TracerProvider:
    return tracer_provider() or trace.get_tracer_provider()
