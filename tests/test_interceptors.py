"""Server interceptors (greet.middleware): the chain's order, refusing a call, and what an
interceptor observes of each call kind, seen from GreetClient and from a grpcio client, on the
HTTP/2 engine GREET_HTTP2_ENGINE names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from loopback import bound_socket
from raw_http2 import RawPeer
from server_process import ServerProcess
from waiting import wait_until

from greet.client import GreetClient
from greet.errors import RpcError
from greet.greeting import Limits, greeting_for
from greet.middleware import CallObserver, Interceptor, Proceed, ServerCall
from greet.server import GreetServer, ServerConfig
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList, NoParam

SERVICE = "/greet_service.GreetService/"
UNARY = SERVICE + "SayHello"
SERVER_STREAM = SERVICE + "SayHelloServerStreaming"
CLIENT_STREAM = SERVICE + "SayHelloClientStreaming"
BIDI = SERVICE + "SayHelloBidirectionalStreaming"
WORK_DELAY = 0.02
TOKEN = "interceptor-token-9a7b3c"
MIDDLEWARE_DOC = Path(__file__).resolve().parent.parent / "docs" / "middleware.md"


@dataclass(frozen=True)
class Seen:
    """What an observer saw of one call once it was over."""

    method: str
    kind: Cardinality
    status: Status
    status_message: str | None
    elapsed: float
    received: int
    sent: int
    peer_host: str
    user_agent: str | None
    marker: str | None  # the `x-marker` metadata the client sent


def peer_host(call: ServerCall) -> str:
    address = call.peer.addr()
    return str(address[0]) if address is not None else ""


class Recorder(CallObserver):
    """Records every call it sees end."""

    def __init__(self) -> None:
        self.calls: list[Seen] = []

    def ended(self, call: ServerCall, status: Status) -> None:
        marker = call.metadata.get("x-marker") if call.metadata is not None else None
        self.calls.append(
            Seen(
                method=call.method,
                kind=call.kind,
                status=status,
                status_message=call.status_message,
                elapsed=call.elapsed,
                received=call.messages_received,
                sent=call.messages_sent,
                peer_host=peer_host(call),
                user_agent=call.user_agent,
                marker=marker if isinstance(marker, str) else None,
            )
        )

    async def wait_for(self, count: int) -> list[Seen]:
        await wait_until(lambda: len(self.calls) >= count, f"{count} calls observed")
        return self.calls


class Tracer:
    """Notes when the chain enters and leaves it."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        self.events.append(f"{self.name}>")
        try:
            await proceed()
        finally:
            self.events.append(f"<{self.name}")


class Refuse:
    """Refuses every call of the given methods (all methods by default)."""

    def __init__(self, status: Status, message: str, methods: frozenset[str] | None = None):
        self.status = status
        self.message = message
        self.methods = methods

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        if self.methods is None or call.method in self.methods:
            raise GRPCError(self.status, self.message)
        await proceed()


class Broken:
    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        raise RuntimeError("a bug in an interceptor")


@dataclass
class RecordingGreeter:
    """The greeting backend, noting each name it greets (the handler ran)."""

    events: list[str]
    delay: float = 0.0

    async def greet(self, name: str) -> str:
        self.events.append(f"greet {name}")
        if self.delay:
            await asyncio.sleep(self.delay)  # simulated backend work, as --work-delay
        return greeting_for(name)


StartWith = Callable[..., Awaitable[GreetServer]]


@pytest.fixture
async def start_with() -> AsyncIterator[StartWith]:
    """Start an in-process GreetServer with interceptors and a recording backend."""
    servers: list[GreetServer] = []

    async def start(
        *interceptors: Interceptor,
        events: list[str] | None = None,
        delay: float = 0.0,
        **config: object,
    ) -> GreetServer:
        greeter = RecordingGreeter(events if events is not None else [], delay)
        server = GreetServer(
            ServerConfig(**config),  # type: ignore[arg-type]
            backend=greeter,
            interceptors=interceptors,
        )
        await server.start(sock=bound_socket())
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(grace=1)


# -- the two clients --------------------------------------------------------------------------


class Caller:
    """The four calls, through one kind of client; errors as (status, message)."""

    name: str

    async def unary(self) -> str:
        raise NotImplementedError

    async def server_stream(self, names: list[str]) -> list[str]:
        raise NotImplementedError

    async def client_stream(self, names: list[str]) -> list[str]:
        raise NotImplementedError

    async def bidi(self, names: list[str]) -> list[str]:
        raise NotImplementedError


class GreetCaller(Caller):
    name = "greet"

    def __init__(self, client: GreetClient) -> None:
        self.client = client

    async def unary(self) -> str:
        return (await self.client.say_hello()).message

    async def server_stream(self, names: list[str]) -> list[str]:
        return [r.message async for r in self.client.say_hello_server_streaming(names)]

    async def client_stream(self, names: list[str]) -> list[str]:
        return list((await self.client.say_hello_client_streaming(names)).messages)

    async def bidi(self, names: list[str]) -> list[str]:
        return [r.message async for r in self.client.say_hello_bidirectional_streaming(names)]


class GrpcioCaller(Caller):
    """grpcio's synchronous API, in a thread. (Its asyncio API can report a server's early
    status on a client-streaming call as INTERNAL "Internal error from Core" when a write races
    the trailers: grpc/grpc#36066; the synchronous API reports the server's status.)"""

    name = "grpcio"

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self.channel = channel
        self.metadata = metadata

    async def unary(self) -> str:
        call = self.channel.unary_unary(
            UNARY, request_serializer=bytes, response_deserializer=HelloResponse.FromString
        )
        reply = await asyncio.to_thread(call, NoParam(), metadata=self.metadata, timeout=30)
        return reply.message

    async def server_stream(self, names: list[str]) -> list[str]:
        call = self.channel.unary_stream(
            SERVER_STREAM, request_serializer=bytes, response_deserializer=HelloResponse.FromString
        )

        def replies() -> list[str]:
            stream = call(NamesList(names=names), metadata=self.metadata, timeout=30)
            return [reply.message for reply in stream]

        return await asyncio.to_thread(replies)

    async def client_stream(self, names: list[str]) -> list[str]:
        call = self.channel.stream_unary(
            CLIENT_STREAM, request_serializer=bytes, response_deserializer=MessagesList.FromString
        )
        requests = iter([HelloRequest(name=name) for name in names])
        reply = await asyncio.to_thread(call, requests, metadata=self.metadata, timeout=30)
        return list(reply.messages)

    async def bidi(self, names: list[str]) -> list[str]:
        call = self.channel.stream_stream(
            BIDI, request_serializer=bytes, response_deserializer=HelloResponse.FromString
        )

        def replies() -> list[str]:
            requests = iter([HelloRequest(name=name) for name in names])
            return [reply.message for reply in call(requests, metadata=self.metadata, timeout=30)]

        return await asyncio.to_thread(replies)


@dataclass(frozen=True)
class Failure:
    status: Status
    message: str


async def failure_of(call: Awaitable[object]) -> Failure:
    """The status and message a call failed with, from either client."""
    with pytest.raises((RpcError, grpc.RpcError)) as raised:
        await call
    error = raised.value
    if isinstance(error, RpcError):
        return Failure(error.status, error.message)
    assert isinstance(error, grpc.Call)
    return Failure(Status(error.code().value[0]), error.details() or "")


@pytest.fixture(params=["greet", "grpcio"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Callers:
    """Opens a Caller of the parametrized kind for a server."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._closers: list[Callable[[], Awaitable[object]]] = []

    async def to(self, server: GreetServer, metadata: dict[str, str] | None = None) -> Caller:
        if self.kind == "greet":
            client = GreetClient(server.target, timeout=30, metadata=metadata)
            await client.__aenter__()
            self._closers.append(lambda: client.__aexit__(None, None, None))
            return GreetCaller(client)
        channel = grpc.insecure_channel(server.target)
        self._closers.append(lambda: asyncio.to_thread(channel.close))
        return GrpcioCaller(channel, tuple((metadata or {}).items()))

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()


@pytest.fixture
async def callers(client_kind: str) -> AsyncIterator[Callers]:
    opened = Callers(client_kind)
    yield opened
    await opened.close()


# -- the tests --------------------------------------------------------------------------------


async def test_the_chain_runs_in_the_order_given(start_with: StartWith, callers: Callers) -> None:
    events: list[str] = []
    server = await start_with(Tracer("a", events), Tracer("b", events), events=events)
    caller = await callers.to(server)
    assert await caller.server_stream(["Ann"]) == ["Hello Ann"]
    await wait_until(lambda: "<a" in events, "the outermost interceptor finished")
    assert events == ["a>", "b>", "greet Ann", "<b", "<a"]


async def test_an_observer_sees_every_call_kind(start_with: StartWith, callers: Callers) -> None:
    recorder = Recorder()
    server = await start_with(recorder, delay=WORK_DELAY, limits=Limits(max_name_chars=5))
    caller = await callers.to(server, {"x-marker": "seen"})

    assert await caller.unary() == "Hello"
    assert await caller.server_stream(["A", "B", "C"]) == ["Hello A", "Hello B", "Hello C"]
    assert await caller.client_stream(["A", "B"]) == ["Hello A", "Hello B"]
    assert await caller.bidi(["A", "B", "C"]) == ["Hello A", "Hello B", "Hello C"]
    invalid = await failure_of(caller.server_stream(["much too long"]))
    assert invalid.status is Status.INVALID_ARGUMENT

    calls = await recorder.wait_for(5)
    outcomes = [(c.method, c.kind, c.status, c.received, c.sent) for c in calls]
    assert outcomes == [
        (UNARY, Cardinality.UNARY_UNARY, Status.OK, 1, 1),
        (SERVER_STREAM, Cardinality.UNARY_STREAM, Status.OK, 1, 3),
        (CLIENT_STREAM, Cardinality.STREAM_UNARY, Status.OK, 2, 1),
        (BIDI, Cardinality.STREAM_STREAM, Status.OK, 3, 3),
        (SERVER_STREAM, Cardinality.UNARY_STREAM, Status.INVALID_ARGUMENT, 1, 0),
    ]
    assert calls[-1].status_message == invalid.message
    assert "--max-name-chars" in invalid.message
    # The duration covers the handler's work: one WORK_DELAY per greeting.
    assert calls[0].elapsed > 0
    greetings = (3, 2, 3)
    assert all(c.elapsed >= n * WORK_DELAY for c, n in zip(calls[1:4], greetings, strict=True))
    assert {c.peer_host for c in calls} == {"127.0.0.1"}
    assert {c.marker for c in calls} == {"seen"}
    agent = "grpc-python" if callers.kind == "grpcio" else "grpc-python-grpclib"
    assert all(c.user_agent is not None and agent in c.user_agent for c in calls)


async def test_a_refusing_interceptor_answers_the_client_and_the_handler_never_runs(
    start_with: StartWith, callers: Callers
) -> None:
    events: list[str] = []
    outer = Recorder()
    refuse = Refuse(Status.PERMISSION_DENIED, "no entry for you")
    server = await start_with(outer, refuse, Tracer("after", events), events=events)
    caller = await callers.to(server)

    failures = [
        await failure_of(caller.unary()),
        await failure_of(caller.server_stream(["Ann"])),
        await failure_of(caller.client_stream(["Ann"])),
        await failure_of(caller.bidi(["Ann"])),
    ]
    assert failures == [Failure(Status.PERMISSION_DENIED, "no entry for you")] * 4
    calls = await outer.wait_for(4)
    assert [c.status for c in calls] == [Status.PERMISSION_DENIED] * 4
    assert [c.method for c in calls] == [UNARY, SERVER_STREAM, CLIENT_STREAM, BIDI]
    assert events == []  # neither the interceptor after it nor the handler ran


async def test_greet_s_interceptors_come_before_the_user_s(
    start_with: StartWith, callers: Callers, tmp_path: Path
) -> None:
    """Auth refuses before a user's interceptor runs; metrics (outermost) count calls refused
    by auth and by the user's interceptor."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    events: list[str] = []
    refuse_unary = Refuse(Status.RESOURCE_EXHAUSTED, "slow down", frozenset({UNARY}))
    server = await start_with(
        Tracer("user", events),
        refuse_unary,
        events=events,
        auth_token_file=tokens,
        metrics_port=0,
    )
    anonymous = await callers.to(server)
    refused = await failure_of(anonymous.server_stream(["Ann"]))
    assert refused.status is Status.UNAUTHENTICATED
    assert events == []

    caller = await callers.to(server, {"authorization": f"Bearer {TOKEN}"})
    assert (await failure_of(caller.unary())).status is Status.RESOURCE_EXHAUSTED
    assert await caller.server_stream(["Ann"]) == ["Hello Ann"]
    await wait_until(lambda: events.count("<user") == 2, "both calls left the user's chain")

    assert server.metrics is not None
    registry = server.metrics.registry

    def handled(method: str, kind: str, code: str) -> float | None:
        labels = {"grpc_service": "greet_service.GreetService", "grpc_method": method}
        labels |= {"grpc_type": kind, "grpc_code": code}
        return registry.get_sample_value("grpc_server_handled_total", labels)

    await wait_until(lambda: handled("SayHelloServerStreaming", "server_stream", "OK") == 1)
    assert handled("SayHelloServerStreaming", "server_stream", "Unauthenticated") == 1
    assert handled("SayHello", "unary", "ResourceExhausted") == 1


async def test_a_failing_interceptor_is_unknown_to_the_client(
    start_with: StartWith, callers: Callers
) -> None:
    outer = Recorder()
    server = await start_with(outer, Broken())
    caller = await callers.to(server)
    assert (await failure_of(caller.unary())).status is Status.UNKNOWN
    [call] = await outer.wait_for(1)
    assert call.status is Status.UNKNOWN


async def test_an_observer_sees_a_call_the_client_cancels(start_with: StartWith) -> None:
    recorder = Recorder()
    started = asyncio.Event()
    events = Started(started)
    server = await start_with(events, recorder, delay=30)
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = channel.unary_stream(
            SERVER_STREAM, request_serializer=bytes, response_deserializer=HelloResponse.FromString
        )(NamesList(names=["Ann"]), timeout=60)
        await asyncio.wait_for(started.wait(), 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call.read()
    [seen] = await recorder.wait_for(1)
    assert (seen.method, seen.status, seen.received, seen.sent) == (
        SERVER_STREAM,
        Status.CANCELLED,
        1,
        0,
    )


class Started:
    """Sets an event once a call has entered the chain."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        self.event.set()
        await proceed()


async def test_an_observer_sees_the_server_end_a_call_at_its_deadline(
    start_with: StartWith,
) -> None:
    """The deadline travels as grpc-timeout; this raw client does not time out itself, so it
    is the server that ends the call."""
    recorder = Recorder()
    server = await start_with(recorder, delay=30)
    peer = await RawPeer.connect(server.target)
    try:
        stream = peer.request(
            "SayHelloServerStreaming",
            bytes(NamesList(names=["Ann"])),
            extra=[("grpc-timeout", "100m")],
        )
        response = await peer.response(stream)
    finally:
        await peer.close()
    assert response.grpc_status == Status.DEADLINE_EXCEEDED.value
    [seen] = await recorder.wait_for(1)
    assert seen.status is Status.DEADLINE_EXCEEDED
    assert seen.elapsed >= 0.1


async def test_the_rate_limit_example_refuses_calls_over_the_limit() -> None:
    """`python -m greet.examples.rate_limit`, as a user runs it, with a grpcio client."""
    args = ["--burst", "3", "--per-second", "0.001"]  # no new token during the test
    async with ServerProcess(args, module="greet.examples.rate_limit") as server:
        channel = grpc.insecure_channel(server.target)
        try:
            caller = GrpcioCaller(channel, ())
            assert [await caller.unary() for _ in range(3)] == ["Hello"] * 3
            refused = await failure_of(caller.unary())
            assert refused.status is Status.RESOURCE_EXHAUSTED
            assert refused.message.startswith(f"rate limit of {UNARY}: 3 calls")
            assert await caller.server_stream(["Ann"]) == ["Hello Ann"]  # its own bucket
        finally:
            await asyncio.to_thread(channel.close)
        assert await server.stop() == 0
    assert "Traceback" not in "\n".join(server.log_lines)


def documented_interceptor_example() -> str:
    doc = MIDDLEWARE_DOC.read_text()
    section = doc.split("\n## Example: refuse a call by its metadata\n")[1].split("\n## ")[0]
    return section.split("```python\n")[1].split("```")[0]


async def test_the_documented_interceptor_example_works_as_written() -> None:
    code = documented_interceptor_example()
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/middleware.md", "exec"), namespace)
    server = namespace["server"]
    assert isinstance(server, GreetServer)
    await server.start(sock=bound_socket())
    try:
        async with GreetClient(server.target, timeout=30, metadata={"x-deny": "yes"}) as denied:
            refused = await failure_of(denied.say_hello())
        async with GreetClient(server.target, timeout=30) as client:
            assert (await client.say_hello()).message == "Hello"
    finally:
        await server.stop(grace=1)
    assert refused == Failure(Status.PERMISSION_DENIED, "denied")
