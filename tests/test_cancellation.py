"""Cancellation and deadlines: when a client cancels or its deadline passes, the server stops the
call's backend work at once, and the client sees CANCELLED / DEADLINE_EXCEEDED.

The backend is a gated greeter: each greeting waits for a permit from the test, so the test knows
exactly how much work was started and finished, and waits for events, never for time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpclib.const import Status
from loopback import bound_socket

from greet.client import GreetClient
from greet.errors import RpcError
from greet.greeting import greeting_for
from greet.server import GreetServer, ServerConfig
from greet_service import HelloRequest, HelloResponse, NamesList


class GatedGreeter:
    """A backend whose every greeting waits for a permit; it counts and reports its work."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.permits = asyncio.Semaphore(0)
        self.work_cancelled = asyncio.Event()
        self._started_changed = asyncio.Event()

    async def greet(self, name: str) -> str:
        self.started += 1
        self._started_changed.set()
        try:
            await self.permits.acquire()
        except asyncio.CancelledError:
            self.work_cancelled.set()
            raise
        self.finished += 1
        return greeting_for(name)

    def allow(self, greetings: int) -> None:
        for _ in range(greetings):
            self.permits.release()

    async def wait_started(self, count: int) -> None:
        while self.started < count:
            self._started_changed.clear()
            await self._started_changed.wait()


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GreetServer, GatedGreeter]]:
    greeter = GatedGreeter()
    server = GreetServer(ServerConfig(), backend=greeter)
    await server.start(sock=bound_socket())
    yield server, greeter
    await server.stop(grace=0)


async def assert_no_more_work(server: GreetServer, greeter: GatedGreeter, started: int) -> None:
    """Release plenty of permits; after a full round trip no further greeting has started."""
    greeter.allow(100)
    async with GreetClient(server.target, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"  # SayHello does no greeting work
    assert greeter.started == started
    assert not server.drain.in_flight()


async def test_cancelled_server_stream_stops_the_work(
    gated: tuple[GreetServer, GatedGreeter],
) -> None:
    server, greeter = gated
    received: list[str] = []
    async with GreetClient(server.target, timeout=30) as client:

        async def consume() -> None:
            names = [f"n{i}" for i in range(1000)]
            async for reply in client.say_hello_server_streaming(names):
                received.append(reply.message)

        call = asyncio.create_task(consume())
        greeter.allow(3)
        await greeter.wait_started(4)  # three greetings sent, the fourth waits for a permit
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await greeter.work_cancelled.wait()  # the server cancelled the call's work
    assert greeter.finished == 3
    await assert_no_more_work(server, greeter, started=4)


async def test_grpcio_cancel_stops_bidi_work_and_client_sees_cancelled(
    gated: tuple[GreetServer, GatedGreeter],
) -> None:
    server, greeter = gated
    async with grpc.aio.insecure_channel(server.target) as channel:
        bidi = channel.stream_stream(
            "/greet_service.GreetService/SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )
        call = bidi()
        for name in ("Ann", "Bob"):
            await call.write(HelloRequest(name=name))
        greeter.allow(1)
        assert await call.read() == HelloResponse(message="Hello Ann")
        await greeter.wait_started(2)  # Bob's greeting is under way
        call.cancel()
        await greeter.work_cancelled.wait()
        assert await call.code() == grpc.StatusCode.CANCELLED
    assert greeter.finished == 1
    await assert_no_more_work(server, greeter, started=2)


async def test_deadline_stops_the_work_and_client_sees_deadline_exceeded(
    gated: tuple[GreetServer, GatedGreeter],
) -> None:
    server, greeter = gated
    async with GreetClient(server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming(["Ann", "Bob"], timeout=0.5)
    assert caught.value.status == Status.DEADLINE_EXCEEDED
    await greeter.work_cancelled.wait()  # the server's deadline cancelled the greeting
    assert greeter.finished == 0
    await assert_no_more_work(server, greeter, started=1)


async def test_grpcio_deadline_on_server_stream_is_deadline_exceeded(
    gated: tuple[GreetServer, GatedGreeter],
) -> None:
    server, greeter = gated
    async with grpc.aio.insecure_channel(server.target) as channel:
        server_stream = channel.unary_stream(
            "/greet_service.GreetService/SayHelloServerStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )
        greeter.allow(1)
        call = server_stream(NamesList(names=["Ann", "Bob", "Cy"]), timeout=0.5)
        assert await call.read() == HelloResponse(message="Hello Ann")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await greeter.work_cancelled.wait()
    assert greeter.finished == 1
    await assert_no_more_work(server, greeter, started=2)
