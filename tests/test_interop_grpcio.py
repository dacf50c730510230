"""Interop with grpcio (Google's C-core client): all four call kinds, metadata both ways, status
and trailers, deadlines and cancellation.

grpcio calls go through its generic multi-callables with the betterproto messages' own bytes
(`bytes(message)` / `Message().parse(data)`), so no second codegen is needed. Blocking grpcio calls
run in a worker thread while the in-process server serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import betterproto
import grpc
import pytest
from grpclib.events import RecvRequest, listen
from loopback import StartServer

from greet.greeting import Limits
from greet.server import GreetServer
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList, NoParam

SERVICE = "/greet_service.GreetService/"
M = TypeVar("M", bound=betterproto.Message)


def parser(message_type: type[M]) -> Callable[[bytes], M]:
    return lambda data: message_type().parse(data)


class GreetCallables:
    """The four GreetService methods on a grpcio channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.say_hello = channel.unary_unary(
            SERVICE + "SayHello",
            request_serializer=bytes,
            response_deserializer=parser(HelloResponse),
        )
        self.server_streaming = channel.unary_stream(
            SERVICE + "SayHelloServerStreaming",
            request_serializer=bytes,
            response_deserializer=parser(HelloResponse),
        )
        self.client_streaming = channel.stream_unary(
            SERVICE + "SayHelloClientStreaming",
            request_serializer=bytes,
            response_deserializer=parser(MessagesList),
        )
        self.bidi = channel.stream_stream(
            SERVICE + "SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=parser(HelloResponse),
        )


class Calls:
    """What the server saw: each call's method and invocation metadata (a RecvRequest listener)."""

    def __init__(self, server: GreetServer) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        listen(server.grpc_server, RecvRequest, self.on_request)

    async def on_request(self, event: RecvRequest) -> None:
        self.seen.append((event.method_name, dict(event.metadata)))
        self.arrived.set()


@pytest.fixture
def channel(server: GreetServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as grpc_channel:
        yield grpc_channel


@pytest.fixture
def greet(channel: grpc.Channel) -> GreetCallables:
    return GreetCallables(channel)


def names(count: int) -> list[str]:
    return [f"name-{index}" for index in range(count)]


async def test_unary_with_metadata_status_and_trailers(
    server: GreetServer, greet: GreetCallables
) -> None:
    calls = Calls(server)
    metadata = (("x-request-id", "req-42"), ("x-trace-bin", b"\x00\xffbinary"))
    reply, call = await asyncio.to_thread(
        greet.say_hello.with_call, NoParam(), metadata=metadata, timeout=10
    )
    assert reply.message == "Hello"
    assert call.code() == grpc.StatusCode.OK
    assert call.details() in ("", None)
    assert call.trailing_metadata() == ()  # no extra trailers; grpc-status was read as OK
    [(method, received)] = calls.seen
    assert method == SERVICE + "SayHello"
    assert received["x-request-id"] == "req-42"
    assert received["x-trace-bin"] == b"\x00\xffbinary"


async def test_server_streaming_keeps_order(greet: GreetCallables) -> None:
    request = NamesList(names=names(200))

    def call() -> list[str]:
        return [reply.message for reply in greet.server_streaming(request, timeout=30)]

    assert await asyncio.to_thread(call) == [f"Hello {name}" for name in names(200)]


async def test_client_streaming_collects_in_order(greet: GreetCallables) -> None:
    requests = [HelloRequest(name=name) for name in names(200)]
    reply = await asyncio.to_thread(greet.client_streaming, iter(requests), timeout=30)
    assert reply.messages == [f"Hello {name}" for name in names(200)]


async def test_bidi_answers_each_request_as_it_arrives(greet: GreetCallables) -> None:
    """Lock-step: the next name is sent only after the reply to the previous one came back."""
    outbox: queue.Queue[HelloRequest | None] = queue.Queue()

    def requests() -> Iterator[HelloRequest]:
        while (request := outbox.get()) is not None:
            yield request

    def converse() -> list[str]:
        replies = greet.bidi(requests(), timeout=30)
        heard = []
        for name in names(20):
            outbox.put(HelloRequest(name=name))
            heard.append(next(replies).message)
        outbox.put(None)
        assert list(replies) == []
        return heard

    assert await asyncio.to_thread(converse) == [f"Hello {name}" for name in names(20)]


async def test_error_status_and_message_reach_grpcio(start_server: StartServer) -> None:
    server = await start_server(
        limits=Limits(max_name_chars=1024)
    )  # names are unlimited by default
    too_long = HelloRequest(name="x" * 5000)
    with grpc.insecure_channel(server.target) as channel:
        greet = GreetCallables(channel)
        with pytest.raises(grpc.RpcError) as raised:
            await asyncio.to_thread(greet.client_streaming, iter([too_long]), timeout=10)
        assert isinstance(raised.value, grpc.Call)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "(--max-name-chars)" in raised.value.details()
        # the server goes on serving the same channel
        assert (await asyncio.to_thread(greet.say_hello, NoParam(), timeout=10)).message == "Hello"


@pytest.fixture
async def slow_server(start_server: StartServer) -> GreetServer:
    """A server whose backend takes 30 s per greeting: calls outlive any deadline in the test."""
    return await start_server(work_delay=30.0, grace=2.0)


async def test_deadline_exceeded(slow_server: GreetServer) -> None:
    with grpc.insecure_channel(slow_server.target) as channel:
        greet = GreetCallables(channel)
        calls: list[Callable[[], object]] = [
            lambda: list(greet.server_streaming(NamesList(names=["late"]), timeout=0.5)),
            lambda: greet.client_streaming(iter([HelloRequest(name="late")]), timeout=0.5),
            lambda: list(greet.bidi(iter([HelloRequest(name="late")]), timeout=0.5)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as raised:
                await asyncio.to_thread(call)
            assert isinstance(raised.value, grpc.Call)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        reply = await asyncio.to_thread(greet.say_hello, NoParam(), timeout=10)
        assert reply.message == "Hello"


async def test_cancelled_call_is_cancelled_and_the_server_stays_healthy(
    slow_server: GreetServer,
) -> None:
    calls = Calls(slow_server)
    with grpc.insecure_channel(slow_server.target) as channel:
        greet = GreetCallables(channel)
        future = greet.client_streaming.future(iter([HelloRequest(name="Akhil")]), timeout=60)
        await asyncio.wait_for(calls.arrived.wait(), 10)  # the server is working on it
        assert future.cancel()
        assert future.cancelled()
        assert isinstance(future, grpc.Call)
        assert future.code() == grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        reply = await asyncio.to_thread(greet.say_hello, NoParam(), timeout=10)
        assert reply.message == "Hello"
