"""OpenTelemetry tracing: server and client spans, propagation, retries, set-up from OTEL_*.

In-process tests hand ServerTracing, CallTracing and AttemptTracing a provider of their own
whose spans go to the SDK's in-memory exporter (the test process runs with tracing off by its
environment, tests/conftest.py). Process tests run `python -m greet.server` (and GreetClient) with
the OTEL_* environment a user would set: the console exporter, whose JSON they read from stdout,
an OTLP/HTTP collector of the test's own, and `none`; real grpcio and grpc-go clients send the
trace context.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpcio_calls import say_hello
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from loopback import bound_socket
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from server_process import ServerProcess
from waiting import wait_until

from greet.client import GreetClient, RetryPolicy, RpcError
from greet.client.tracing import AttemptTracing, CallTracing, with_tracing
from greet.greeting import Greeter
from greet.middleware import Interceptor, Proceed, ServerCall
from greet.middleware.tracing import ServerTracing
from greet.server import GreetServer, ServerConfig
from greet.span_conventions import SEMCONV_VERSION
from greet.telemetry import TracingEnvironment, build_tracer_provider
from greet.transport import TransportConfig
from greet_service import NoParam

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
TRACESTATE = "greet=interop"
SAY_HELLO = "greet_service.GreetService/SayHello"
SERVICE = "greet_service.GreetService"
REPO = Path(__file__).resolve().parent.parent
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}  # ms: batches leave at once (the SDK reads it)


# -- in-process: spans in the SDK's in-memory exporter ----------------------------------------


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


class Refuse:
    """A server interceptor that refuses the first `times` calls with `status`."""

    def __init__(self, status: Status, times: int = 1_000_000) -> None:
        self.status = status
        self.times = times

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        if self.times > 0:
            self.times -= 1
            raise GRPCError(self.status, f"refused with {self.status.name}")
        await proceed()


@dataclass
class SpanningGreeter:
    """A backend that makes a span of its own for every greeting, after a wait (so the handler
    goes on as a Task)."""

    tracer: trace.Tracer

    async def greet(self, name: str) -> str:
        await asyncio.sleep(0.001)
        with self.tracer.start_as_current_span(f"greet {name}"):
            return f"Hello {name}"


class Traced:
    """GreetServers and GreetClients that trace to one provider; all closed at the end."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter
        self.stack = AsyncExitStack()

    async def server(
        self,
        *interceptors: Interceptor,
        backend: Greeter | None = None,
        **config: Any,
    ) -> GreetServer:
        server = GreetServer(
            ServerConfig(**config),
            backend=backend,
            interceptors=[ServerTracing(self.provider), *interceptors],
        )
        await server.start(sock=bound_socket())
        self.stack.push_async_callback(server.stop)
        return server

    def client(self, targets: str | Sequence[str], **options: Any) -> GreetClient:
        client = GreetClient(
            targets,
            timeout=30,
            interceptors=[CallTracing(self.provider)],
            attempt_interceptors=[AttemptTracing(self.provider)],
            **options,
        )
        self.stack.callback(client.close)
        return client

    async def spans(self, count: int) -> list[ReadableSpan]:
        """The finished spans, once there are `count` (a server span may end after the
        client's call did)."""
        await wait_until(
            lambda: len(self.exporter.get_finished_spans()) >= count, f"{count} finished spans"
        )
        spans = list(self.exporter.get_finished_spans())
        assert len(spans) == count, [span.name for span in spans]
        return spans


@pytest.fixture
async def traced(provider: TracerProvider, exporter: InMemorySpanExporter) -> AsyncIterator[Traced]:
    traced = Traced(provider, exporter)
    async with traced.stack:
        yield traced


def of_kind(spans: Sequence[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


def only(spans: Sequence[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    (span,) = of_kind(spans, kind)
    return span


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_ids(spans: Sequence[ReadableSpan]) -> set[int]:
    return {span.context.trace_id for span in spans if span.context is not None}


async def test_a_unary_call_is_one_trace_call_attempt_and_server_span(traced: Traced) -> None:
    server = await traced.server()
    reply = await traced.client(server.target).say_hello()
    assert reply.message == "Hello"

    spans = await traced.spans(3)
    call = only(spans, SpanKind.CLIENT)
    attempt = only(spans, SpanKind.INTERNAL)
    served = only(spans, SpanKind.SERVER)
    assert len(trace_ids(spans)) == 1
    assert call.parent is None
    assert parent_id(attempt) == span_id(call)
    assert parent_id(served) == span_id(attempt)  # the traceparent sent is the attempt's
    assert served.parent is not None
    assert served.parent.is_remote

    host, port = server.address
    method = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "SayHello"}
    assert call.name == served.name == SAY_HELLO
    assert attempt.name == f"Attempt.{SAY_HELLO}"
    assert attributes(call) == {
        **method,
        "rpc.grpc.status_code": 0,
        "server.address": host,
        "server.port": port,
        "network.transport": "tcp",
        "network.type": "ipv4",
        "greet.messages.sent": 1,
        "greet.messages.received": 1,
    }
    assert attributes(attempt) == {
        **attributes(call),
        "previous-rpc-attempts": 0,
        "transparent-retry": False,
    }
    served_attributes = attributes(served)
    client_port = served_attributes.pop("network.peer.port")
    assert isinstance(client_port, int)
    assert client_port != port
    assert served_attributes == {
        **method,
        "rpc.grpc.status_code": 0,
        "server.address": host,
        "server.port": port,
        "network.transport": "tcp",
        "network.type": "ipv4",
        "network.peer.address": "127.0.0.1",
        "greet.messages.received": 1,
        "greet.messages.sent": 1,
    }
    assert {span.status.status_code for span in spans} == {StatusCode.UNSET}
    scope = served.instrumentation_scope
    assert scope is not None
    assert scope.name == "greet"
    assert scope.schema_url == f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"


async def test_each_call_kind_is_traced_with_its_message_counts(traced: Traced) -> None:
    server = await traced.server()
    client = traced.client(server.target)
    names = ["Akhil", "Alice", "Bob"]
    assert len([reply async for reply in client.say_hello_server_streaming(names)]) == 3
    await client.say_hello_client_streaming(names)
    assert len([reply async for reply in client.say_hello_bidirectional_streaming(names)]) == 3

    spans = await traced.spans(9)
    counts = {
        (span.name, span.kind): (
            attributes(span)["greet.messages.sent"],
            attributes(span)["greet.messages.received"],
        )
        for span in spans
    }
    assert counts == {
        (f"{SERVICE}/SayHelloServerStreaming", SpanKind.CLIENT): (1, 3),
        (f"Attempt.{SERVICE}/SayHelloServerStreaming", SpanKind.INTERNAL): (1, 3),
        (f"{SERVICE}/SayHelloServerStreaming", SpanKind.SERVER): (3, 1),
        (f"{SERVICE}/SayHelloClientStreaming", SpanKind.CLIENT): (3, 1),
        (f"Attempt.{SERVICE}/SayHelloClientStreaming", SpanKind.INTERNAL): (3, 1),
        (f"{SERVICE}/SayHelloClientStreaming", SpanKind.SERVER): (1, 3),
        (f"{SERVICE}/SayHelloBidirectionalStreaming", SpanKind.CLIENT): (3, 3),
        (f"Attempt.{SERVICE}/SayHelloBidirectionalStreaming", SpanKind.INTERNAL): (3, 3),
        (f"{SERVICE}/SayHelloBidirectionalStreaming", SpanKind.SERVER): (3, 3),
    }
    assert len(trace_ids(spans)) == 3  # one trace per call


@pytest.mark.parametrize(
    ("status", "server_error"),
    [
        (Status.INVALID_ARGUMENT, False),
        (Status.NOT_FOUND, False),
        (Status.PERMISSION_DENIED, False),
        (Status.RESOURCE_EXHAUSTED, False),
        (Status.UNAUTHENTICATED, False),
        (Status.UNKNOWN, True),
        (Status.DEADLINE_EXCEEDED, True),
        (Status.UNIMPLEMENTED, True),
        (Status.INTERNAL, True),
        (Status.UNAVAILABLE, True),
        (Status.DATA_LOSS, True),
    ],
)
async def test_a_failed_call_is_an_error_on_the_client_and_on_the_server_as_the_conventions_say(
    traced: Traced, status: Status, server_error: bool
) -> None:
    server = await traced.server(Refuse(status))
    client = traced.client(server.target, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RpcError) as raised:
        await client.say_hello()
    assert raised.value.status is status

    spans = await traced.spans(3)
    assert {attributes(span)["rpc.grpc.status_code"] for span in spans} == {status.value}
    for span in of_kind(spans, SpanKind.CLIENT) + of_kind(spans, SpanKind.INTERNAL):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"refused with {status.name}"
    served = only(spans, SpanKind.SERVER)
    if server_error:
        assert served.status.status_code is StatusCode.ERROR
        assert served.status.description == f"refused with {status.name}"
    else:
        assert served.status.status_code is StatusCode.UNSET


async def test_a_handler_failure_is_an_unknown_error_on_both_sides(traced: Traced) -> None:
    class Failing:
        async def greet(self, name: str) -> str:
            raise RuntimeError("backend broke")

    server = await traced.server(backend=Failing())
    client = traced.client(server.target, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RpcError):
        await client.say_hello_client_streaming(["Ann"])

    spans = await traced.spans(3)
    served = only(spans, SpanKind.SERVER)
    assert attributes(served)["rpc.grpc.status_code"] == Status.UNKNOWN.value
    assert served.status.status_code is StatusCode.ERROR
    assert only(spans, SpanKind.CLIENT).status.status_code is StatusCode.ERROR


async def test_retries_are_attempts_under_one_call_span(traced: Traced) -> None:
    server = await traced.server(Refuse(Status.UNAVAILABLE, times=2))
    reply = await traced.client(server.target).say_hello()
    assert reply.message == "Hello"

    spans = await traced.spans(7)  # one call, three attempts, three server spans
    assert len(trace_ids(spans)) == 1
    call = only(spans, SpanKind.CLIENT)
    assert call.status.status_code is StatusCode.UNSET
    assert attributes(call)["rpc.grpc.status_code"] == 0
    attempts = sorted(
        of_kind(spans, SpanKind.INTERNAL), key=lambda s: attributes(s)["previous-rpc-attempts"]
    )
    assert [attributes(a)["previous-rpc-attempts"] for a in attempts] == [0, 1, 2]
    assert {parent_id(attempt) for attempt in attempts} == {span_id(call)}
    assert [attributes(a)["rpc.grpc.status_code"] for a in attempts] == [14, 14, 0]
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    served = {parent_id(span): span for span in of_kind(spans, SpanKind.SERVER)}
    assert set(served) == {span_id(attempt) for attempt in attempts}  # one each
    for attempt in attempts:
        code = attributes(served[span_id(attempt)])["rpc.grpc.status_code"]
        assert code == attributes(attempt)["rpc.grpc.status_code"]


async def test_retried_attempts_name_the_endpoint_each_went_to(traced: Traced) -> None:
    down = await traced.server(Refuse(Status.UNAVAILABLE))
    up = await traced.server()
    client = traced.client([down.target, up.target])
    for _ in range(4):  # round-robin: calls that start on `down` are retried on `up`
        await client.say_hello()

    attempts = of_kind(list(traced.exporter.get_finished_spans()), SpanKind.INTERNAL)
    spans = await traced.spans(4 + 2 * len(attempts))  # calls, attempts, one server span each
    port = {span_id(attempt): attributes(attempt)["server.port"] for attempt in attempts}
    for served in of_kind(spans, SpanKind.SERVER):  # the server each attempt named served it
        assert port[parent_id(served)] == attributes(served)["server.port"]  # type: ignore[index]
    outcomes = {
        (attributes(a)["previous-rpc-attempts"], attributes(a)["server.port"]) for a in attempts
    }
    assert (0, down.address[1]) in outcomes, "no call started on the refusing server"
    assert (1, up.address[1]) in outcomes, "no call was retried on the other server"
    for call in of_kind(spans, SpanKind.CLIENT):
        assert attributes(call)["server.port"] == up.address[1]  # where its last attempt went
        assert attributes(call)["rpc.grpc.status_code"] == 0


async def test_the_span_current_where_a_call_is_made_is_its_parent(traced: Traced) -> None:
    server = await traced.server()
    client = traced.client(server.target)
    with traced.provider.get_tracer("app").start_as_current_span("application") as outer:
        await client.say_hello()

    spans = await traced.spans(4)
    assert parent_id(only(spans, SpanKind.CLIENT)) == outer.get_span_context().span_id
    assert len(trace_ids(spans)) == 1


async def test_spans_the_handler_makes_are_children_of_the_server_span(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = traced.provider.get_tracer("backend")
    server = await traced.server(backend=SpanningGreeter(tracer))
    client = traced.client(server.target)
    assert [r.message async for r in client.say_hello_server_streaming(["Ann", "Bo"])] == [
        "Hello Ann",
        "Hello Bo",
    ]

    spans = await traced.spans(5)
    served = only(spans, SpanKind.SERVER)
    greetings = [span for span in spans if span.name.startswith("greet ")]
    assert [span.name for span in greetings] == ["greet Ann", "greet Bo"]
    assert {parent_id(span) for span in greetings} == {span_id(served)}
    assert "Failed to detach context" not in caplog.text


class AwaitingInsideItsSpan:
    """A backend whose span is current across an await."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    async def greet(self, name: str) -> str:
        with self.tracer.start_as_current_span(f"greet {name}"):
            await asyncio.sleep(0.001)
            return f"Hello {name}"


async def test_without_eager_calls_a_handler_span_may_be_current_across_an_await(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    # With eager calls (the default) on Python < 3.12 a handler goes on in a copy of its
    # context after its first wait, where such a span cannot be detached (docs/tracing.md).
    tracer = traced.provider.get_tracer("backend")
    server = await traced.server(
        backend=AwaitingInsideItsSpan(tracer), transport=TransportConfig(eager_calls=False)
    )
    client = traced.client(server.target)
    assert [r.message async for r in client.say_hello_server_streaming(["Ann"])] == ["Hello Ann"]

    spans = await traced.spans(4)
    (greeting,) = [span for span in spans if span.name == "greet Ann"]
    assert parent_id(greeting) == span_id(only(spans, SpanKind.SERVER))
    assert "Failed to detach context" not in caplog.text


async def test_a_stream_the_caller_stops_reading_is_cancelled_on_both_sides(
    traced: Traced,
) -> None:
    server = await traced.server(work_delay=0.05)
    client = traced.client(server.target)
    async for _ in client.say_hello_server_streaming(["Ann", "Bo", "Cy", "Di"]):
        break

    spans = await traced.spans(3)
    call = only(spans, SpanKind.CLIENT)
    assert attributes(call)["rpc.grpc.status_code"] == Status.CANCELLED.value
    assert call.status.status_code is StatusCode.ERROR
    served = only(spans, SpanKind.SERVER)
    assert attributes(served)["rpc.grpc.status_code"] == Status.CANCELLED.value
    assert served.status.status_code is StatusCode.UNSET  # not the server's error


async def test_a_grpcio_callers_trace_context_goes_on_in_the_server_span(traced: Traced) -> None:
    server = await traced.server()
    async with grpc.aio.insecure_channel(server.target) as channel:
        metadata = (("traceparent", TRACEPARENT), ("tracestate", TRACESTATE))
        reply = await say_hello(channel)(NoParam(), metadata=metadata)
        assert reply.message == "Hello"
        await say_hello(channel)(NoParam())  # no trace context: a trace of its own

    with_parent, without = sorted(await traced.spans(2), key=lambda span: span.parent is None)
    assert with_parent.context is not None
    assert with_parent.parent is not None
    assert f"{with_parent.context.trace_id:032x}" == TRACE_ID
    assert f"{with_parent.parent.span_id:016x}" == PARENT_SPAN_ID
    assert with_parent.context.trace_state.to_header() == TRACESTATE
    assert without.parent is None
    assert without.context is not None
    assert f"{without.context.trace_id:032x}" != TRACE_ID


async def test_a_malformed_traceparent_starts_a_new_trace(traced: Traced) -> None:
    server = await traced.server()
    async with grpc.aio.insecure_channel(server.target) as channel:
        await say_hello(channel)(NoParam(), metadata=(("traceparent", "00-zz-not-a-context"),))

    (served,) = await traced.spans(1)
    assert served.parent is None
    assert attributes(served)["rpc.grpc.status_code"] == 0


def test_with_tracing_puts_tracing_first_and_never_twice(provider: TracerProvider) -> None:
    own = CallTracing(provider)
    calls, attempts = with_tracing([own], [])
    assert calls == (own,)
    (attempt,) = attempts
    assert isinstance(attempt, AttemptTracing)
    again = with_tracing(calls, attempts)
    assert again == (calls, attempts)


# -- the OTEL_* environment --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "exporters", "protocol"),
    [
        ({}, ("otlp",), "http/protobuf"),  # the specification's default exporter and protocol
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",), "http/protobuf"),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ("otlp", "console"), "http/protobuf"),
        ({"OTEL_TRACES_EXPORTER": "none"}, (), "http/protobuf"),
        ({"OTEL_TRACES_EXPORTER": "console,none"}, (), "http/protobuf"),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"}, (), "http/protobuf"),
        ({"OTEL_SDK_DISABLED": "false"}, ("otlp",), "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("otlp",), "grpc"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ("otlp",),
            "http/protobuf",
        ),
    ],
)
def test_the_environment_chooses_the_exporters(
    environ: dict[str, str], exporters: tuple[str, ...], protocol: str
) -> None:
    environment = TracingEnvironment.read(environ)
    assert environment.exporters == exporters
    assert environment.on is bool(exporters)
    assert environment.otlp_protocol == protocol
    assert environment.warnings == ()


def test_unknown_values_are_ignored_with_a_warning() -> None:
    environment = TracingEnvironment.read(
        {"OTEL_TRACES_EXPORTER": "jaeger,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    )
    assert environment.exporters == ("console",)
    assert environment.otlp_protocol == "http/protobuf"
    assert environment.warnings == (
        "OTEL_TRACES_EXPORTER: unknown exporter 'jaeger' ignored (greet sets up otlp, console "
        "or none)",
    )
    assert TracingEnvironment.read({"OTEL_TRACES_EXPORTER": "zipkin"}).on is False


@pytest.mark.parametrize(
    ("environ", "service_name"),
    [
        ({}, "greet"),
        ({"OTEL_SERVICE_NAME": "greeter-eu"}, "greeter-eu"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,team=a"}, "from-attributes"),
    ],
)
def test_the_resource_names_the_service_and_the_process(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], service_name: str
) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    provider = build_tracer_provider(TracingEnvironment(exporters=("console",)))
    assert provider is not None
    try:
        resource = provider.resource.attributes
        assert resource["service.name"] == service_name
        assert resource["process.pid"] == os.getpid()
    finally:
        provider.shutdown()


# -- processes: python -m greet.server and GreetClient as users run them -----------------------

MODULES_AT_EXIT = """
import atexit, runpy, sys
atexit.register(lambda: print(
    "opentelemetry modules:",
    sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry"),
    file=sys.stderr, flush=True,
))
runpy.run_module("greet.server", run_name="__main__", alter_sys=True)
"""
MODULES_LINE = re.compile(r"opentelemetry modules: (\[.*\])")


class ConsoleServer(ServerProcess):
    """`python -m greet.server --port 0 ARGS` (or `code` run as it), its stdout (where the
    console exporter writes) in the file `out`, its stderr lines in `log_lines`."""

    def __init__(
        self,
        out: Path,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        code: str | None = None,
    ) -> None:
        super().__init__(args, env=env, cwd=str(REPO), code=code, stdout=out)
        self.out = out

    def spans(self) -> list[dict[str, Any]]:
        """The spans the console exporter printed so far (one JSON object each)."""
        return json_objects(self.out.read_text())

    async def span_with_trace_id(self, trace_id: str) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [s for s in self.spans() if s["context"]["trace_id"] == f"0x{trace_id}"]

        await wait_until(lambda: bool(found()), f"a span of trace {trace_id} on stdout")
        (span,) = found()
        return span


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of `text`, one after another; an incomplete last one is left out."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    index = 0
    while (start := text.find("{", index)) != -1:
        try:
            value, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            break  # still being written
        objects.append(value)
    return objects


def console_env(**extra: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "console", **FAST_EXPORT, **extra}


async def grpcio_say_hello(target: str, traceparent: str | None = TRACEPARENT) -> None:
    metadata = () if traceparent is None else (("traceparent", traceparent),)
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await say_hello(channel)(NoParam(), metadata=metadata)
    assert reply.message == "Hello"


def assert_server_span_of(span: dict[str, Any], trace_id: str, parent: str) -> None:
    assert span["name"] == SAY_HELLO
    assert span["kind"] == "SpanKind.SERVER"
    assert span["context"]["trace_id"] == f"0x{trace_id}"
    assert span["parent_id"] == f"0x{parent}"
    assert span["attributes"]["rpc.system"] == "grpc"
    assert span["attributes"]["rpc.grpc.status_code"] == 0
    assert span["status"]["status_code"] == "UNSET"


async def test_the_console_exporter_prints_the_trace_id_a_grpcio_client_sent(
    tmp_path: Path,
) -> None:
    env = console_env(OTEL_SERVICE_NAME="greet-traced")
    async with ConsoleServer(tmp_path / "stdout", env) as server:
        await grpcio_say_hello(server.target)
        span = await server.span_with_trace_id(TRACE_ID)
        assert_server_span_of(span, TRACE_ID, PARENT_SPAN_ID)
        assert span["resource"]["attributes"]["service.name"] == "greet-traced"
        assert await server.stop() == 0


async def test_the_console_exporter_prints_the_trace_id_a_grpc_go_client_sent(
    tmp_path: Path, go_client_binary: Path
) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with ConsoleServer(tmp_path / "stdout", console_env()) as server:
        go = await asyncio.create_subprocess_exec(
            str(go_client_binary),
            "-addr",
            server.target,
            "-mode",
            "unary",
            "-metadata",
            f"traceparent=00-{trace_id}-{parent}-01",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(go.communicate(), 60)
        assert go.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[0]) == {"call": "unary", "message": "Hello"}
        span = await server.span_with_trace_id(trace_id)
        assert_server_span_of(span, trace_id, parent)
        assert span["resource"]["attributes"]["service.name"] == "greet"


@pytest.mark.parametrize(
    ("exporter", "imported"), [("none", False), ("console", True)], ids=["off", "on"]
)
async def test_a_server_with_tracing_off_never_imports_opentelemetry(
    tmp_path: Path, exporter: str, imported: bool
) -> None:
    env = {**FAST_EXPORT, "OTEL_TRACES_EXPORTER": exporter}
    async with ConsoleServer(tmp_path / "stdout", env, code=MODULES_AT_EXIT) as server:
        await grpcio_say_hello(server.target)
        assert await server.stop() == 0
        modules = ast.literal_eval((await server.wait_for_log(MODULES_LINE)).group(1))
    assert bool(modules) is imported
    assert ("opentelemetry.sdk.trace" in modules) is imported
    printed = [span["context"]["trace_id"] for span in server.spans()]
    assert printed == ([f"0x{TRACE_ID}"] if imported else [])


CLIENT_AND_SERVER = """
import asyncio, sys
from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig

async def main() -> None:
    async with GreetServer(ServerConfig(port=0)) as server:
        async with GreetClient(server.target, timeout=30) as client:
            await client.say_hello()
    loaded = [
        name for name, module in sys.modules.items()
        if module is not None and name.partition(".")[0] == "opentelemetry"
    ]
    print("tracing:", bool(loaded), file=sys.stderr)

PRELUDE
asyncio.run(main())
"""
APPLICATION_PROVIDER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
own = TracerProvider()
own.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(own)
import atexit
atexit.register(lambda: print(
    "application spans:", sorted(s.kind.name for s in exporter.get_finished_spans()),
    file=sys.stderr,
))
"""
WITHOUT_THE_EXTRA = """
sys.modules["opentelemetry"] = None  # as if greet[otel] were not installed: import fails
"""


async def run_script(code: str, env: Mapping[str, str]) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_greet_client_and_server_set_up_tracing_from_the_environment() -> None:
    out, err = await run_script(CLIENT_AND_SERVER.replace("PRELUDE", ""), console_env())
    assert "tracing: True" in err
    spans = json_objects(out)
    assert sorted(span["kind"] for span in spans) == [
        "SpanKind.CLIENT",
        "SpanKind.INTERNAL",
        "SpanKind.SERVER",
    ]
    assert len({span["context"]["trace_id"] for span in spans}) == 1
    by_kind = {span["kind"].removeprefix("SpanKind."): span for span in spans}
    assert by_kind["SERVER"]["parent_id"] == by_kind["INTERNAL"]["context"]["span_id"]
    assert by_kind["INTERNAL"]["parent_id"] == by_kind["CLIENT"]["context"]["span_id"]
    assert by_kind["CLIENT"]["parent_id"] is None


async def test_a_tracer_provider_the_application_set_is_used_as_it_is() -> None:
    code = CLIENT_AND_SERVER.replace("PRELUDE", APPLICATION_PROVIDER)
    out, err = await run_script(code, console_env())
    assert "application spans: ['CLIENT', 'INTERNAL', 'SERVER']" in err
    assert json_objects(out) == []  # greet set up no console exporter of its own


@pytest.mark.parametrize(
    ("environ", "warned"),
    [({}, False), ({"OTEL_TRACES_EXPORTER": "console"}, True)],
    ids=["default", "console"],
)
async def test_without_the_extra_tracing_is_off(environ: dict[str, str], warned: bool) -> None:
    env = {"OTEL_TRACES_EXPORTER": "", **environ}
    out, err = await run_script(CLIENT_AND_SERVER.replace("PRELUDE", WITHOUT_THE_EXTRA), env)
    assert "tracing: False" in err
    assert out == ""
    assert ("pip install 'greet[otel]'" in err) is warned
    assert "Traceback" not in err


# -- OTLP over HTTP, with --workers --------------------------------------------------------------


class Collector:
    """An OTLP/HTTP trace receiver on a loopback port: the requests its exporters sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.paths.append(self.path)
                collector.requests.append(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def server_spans(self) -> dict[str, int]:
        """trace id -> the pid (process.pid of the resource) of the process that exported it."""
        found: dict[str, int] = {}
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found[span.trace_id.hex()] = resource["process.pid"].int_value
        return found

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


async def test_every_worker_exports_its_own_spans_over_otlp(tmp_path: Path) -> None:
    calls = 24  # each on a connection of its own: the kernel spreads them over both workers
    with Collector() as collector:
        env = {
            **FAST_EXPORT,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "NO_PROXY": "127.0.0.1",
        }
        async with ConsoleServer(tmp_path / "stdout", env, ["--workers", "2"]) as server:
            sent = [f"{index:032x}" for index in range(1, calls + 1)]
            for trace_id in sent:
                await grpcio_say_hello(server.target, f"00-{trace_id}-{PARENT_SPAN_ID}-01")
            await wait_until(
                lambda: set(collector.server_spans()) >= set(sent), "every call's span exported"
            )
            exporters = set(collector.server_spans().values())
            assert server.process is not None
            assert len(exporters) == 2
            assert server.process.pid not in exporters
            assert await server.stop() == 0
    assert set(collector.paths) == {"/v1/traces"}
