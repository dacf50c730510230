"""GreetClient tracing: a CLIENT span per call, a child span per attempt (needs the `otel` extra).

GreetClient installs both when tracing is on (greet.telemetry: OTEL_* environment variables),
outermost in its chains; to trace with a provider of your own instead, pass them yourself (the
client then adds no others):

    GreetClient(target, interceptors=[CallTracing(provider)],
                attempt_interceptors=[AttemptTracing(provider)])

`CallTracing` starts one span per call of the application, around all its attempts: named
`greet_service.GreetService/SayHello`, kind CLIENT, with rpc.system, rpc.service, rpc.method
(RPC semantic conventions v1.37.0, greet.span_conventions) and, when the call ends,
rpc.grpc.status_code, server.address/port of the endpoint its last attempt went to, message
counts and ERROR status for any non-OK outcome. Its parent is the span current where the call
was made.

`AttemptTracing` starts one child span per attempt, so retries show as attempts under their call:
named `Attempt.greet_service.GreetService/SayHello` as in gRFC A72, kind INTERNAL (the call's
span is the one CLIENT span of the call), with server.address/port of the attempt's endpoint,
`previous-rpc-attempts` (0 for the first attempt) and `transparent-retry`, and the attempt's
own status. It injects the attempt's context into the attempt's metadata with the global
propagator (W3C `traceparent` and `tracestate` by default): the server's span is the child of
the attempt that reached it.
"""

from __future__ import annotations

from collections.abc import Sequence

from grpclib.const import Status
from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from greet.client import AttemptInterceptor, CallInterceptor, ClientAttempt, ClientCall, Proceed
from greet.client._pool import parse_target
from greet.span_conventions import (
    ATTEMPT_PREFIX,
    GREET_MESSAGES_RECEIVED,
    GREET_MESSAGES_SENT,
    PREVIOUS_RPC_ATTEMPTS,
    RPC_GRPC_STATUS_CODE,
    TRANSPARENT_RETRY,
    AttributeValues,
    address_attributes,
    method_attributes,
    span_name,
)
from greet.telemetry import greet_tracer, tracer_provider

__all__ = ["AttemptTracing", "CallTracing", "with_tracing"]


class _Spans:
    """What both interceptors share: the tracer (of `provider`, else as ServerTracing's default)
    and per-method and per-endpoint attributes."""

    def __init__(self, provider: trace.TracerProvider | None) -> None:
        self.tracer = greet_tracer(provider or tracer_provider() or trace.get_tracer_provider())
        self._methods: dict[str, tuple[str, AttributeValues]] = {}
        self._endpoints: dict[str, AttributeValues] = {}

    def method(self, path: str) -> tuple[str, AttributeValues]:
        """The span name and rpc.* attributes of a method path."""
        found = self._methods.get(path)
        if found is None:
            found = self._methods[path] = (span_name(path), method_attributes(path))
        return found

    def endpoint(self, name: str) -> AttributeValues:
        """server.address, server.port (and network.*) of an endpoint's `host:port`."""
        found = self._endpoints.get(name)
        if found is None:
            try:
                endpoint = parse_target(name)
            except ValueError:
                found = {}
            else:
                found = address_attributes(endpoint.host, endpoint.port)
            self._endpoints[name] = found
        return found


def _end(span: Span, outcome: ClientCall | ClientAttempt, extra: AttributeValues) -> None:
    """Record how a call or an attempt ended (a CLIENT-side outcome: every non-OK status is an
    error) and end its span."""
    if span.is_recording():
        status = outcome.status or Status.CANCELLED  # None: cancelled before it was recorded
        span.set_attributes(
            {
                RPC_GRPC_STATUS_CODE: status.value,
                GREET_MESSAGES_SENT: outcome.messages_sent,
                GREET_MESSAGES_RECEIVED: outcome.messages_received,
                **extra,
            }
        )
        if status is not Status.OK:
            error = outcome.error
            span.set_status(StatusCode.ERROR, error.message if error else status.name)
    span.end()


class CallTracing:
    """A CLIENT span around each call (see the module docstring); a call interceptor."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._spans = _Spans(tracer_provider)

    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        name, attributes = self._spans.method(call.method)
        span = self._spans.tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            await proceed()
        finally:
            context.detach(token)
            last = self._spans.endpoint(call.attempts[-1].endpoint) if call.attempts else {}
            _end(span, call, last)


class AttemptTracing:
    """A span per attempt, child of its call's, whose context the attempt sends (see the module
    docstring); an attempt interceptor."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._spans = _Spans(tracer_provider)

    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        name, attributes = self._spans.method(attempt.call.method)
        span = self._spans.tracer.start_span(
            ATTEMPT_PREFIX + name,
            kind=SpanKind.INTERNAL,
            attributes={
                **attributes,
                **self._spans.endpoint(attempt.endpoint),
                PREVIOUS_RPC_ATTEMPTS: attempt.number - 1,
                TRANSPARENT_RETRY: attempt.transparent,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        attempt_context = trace.set_span_in_context(span)
        propagate.inject(attempt.metadata, context=attempt_context)
        token = context.attach(attempt_context)
        try:
            await proceed()
        finally:
            context.detach(token)
            _end(span, attempt, {})


def with_tracing(
    interceptors: Sequence[CallInterceptor],
    attempt_interceptors: Sequence[AttemptInterceptor],
    tracer_provider: trace.TracerProvider | None = None,
) -> tuple[tuple[CallInterceptor, ...], tuple[AttemptInterceptor, ...]]:
    """The chains with CallTracing and AttemptTracing first, unless they already hold them."""
    calls, attempts = tuple(interceptors), tuple(attempt_interceptors)
    if not any(isinstance(interceptor, CallTracing) for interceptor in calls):
        calls = (CallTracing(tracer_provider), *calls)
    if not any(isinstance(interceptor, AttemptTracing) for interceptor in attempts):
        attempts = (AttemptTracing(tracer_provider), *attempts)
    return calls, attempts
