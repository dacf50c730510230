"""Every call kind through GreetClient against a GreetServer on a real loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from loopback import StartServer

from greet.client import GreetClient, RpcError
from greet.server import GreetServer
from greet.transport import TransportConfig
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList

NAMES = ["Akhil", "Alice", "Bob"]
UNICODE_NAMES = ["Zoë", "Łukasz", "世界", "🙂", "Ærøskøbing"]


async def test_say_hello_returns_the_generated_type(client: GreetClient) -> None:
    reply = await client.say_hello()
    assert isinstance(reply, HelloResponse)
    assert reply.message == "Hello"


async def test_server_streaming_in_order(client: GreetClient) -> None:
    replies = [r.message async for r in client.say_hello_server_streaming(NAMES)]
    assert replies == [f"Hello {name}" for name in NAMES]


async def test_server_streaming_accepts_a_names_list(client: GreetClient) -> None:
    replies = [r.message async for r in client.say_hello_server_streaming(NamesList(["x"]))]
    assert replies == ["Hello x"]


async def test_client_streaming_in_order(client: GreetClient) -> None:
    reply = await client.say_hello_client_streaming(NAMES)
    assert isinstance(reply, MessagesList)
    assert reply.messages == [f"Hello {name}" for name in NAMES]


async def test_client_streaming_accepts_messages_and_async_iterables(
    client: GreetClient,
) -> None:
    async def names() -> AsyncIterator[str | HelloRequest]:
        yield "plain"
        yield HelloRequest(name="message")

    reply = await client.say_hello_client_streaming(names())
    assert reply.messages == ["Hello plain", "Hello message"]


async def test_bidi_in_order(client: GreetClient) -> None:
    replies = [r.message async for r in client.say_hello_bidirectional_streaming(NAMES)]
    assert replies == [f"Hello {name}" for name in NAMES]


async def test_bidi_answers_each_request_before_the_next_is_sent(client: GreetClient) -> None:
    """A reply arrives while the client still holds back its next request (true streaming)."""
    sent: list[str] = []
    reply_seen = [asyncio.Event() for _ in NAMES]

    async def requests() -> AsyncIterator[str]:
        for index, name in enumerate(NAMES):
            sent.append(name)
            yield name
            await reply_seen[index].wait()

    received: list[str] = []
    async for reply in client.say_hello_bidirectional_streaming(requests()):
        received.append(reply.message)
        assert len(sent) == len(received)
        reply_seen[len(received) - 1].set()
    assert received == [f"Hello {name}" for name in NAMES]


@pytest.mark.parametrize("kind", ["server", "client", "bidi"])
async def test_empty_list_gives_no_greetings(client: GreetClient, kind: str) -> None:
    assert await collect(client, kind, []) == []


@pytest.mark.parametrize("kind", ["server", "client", "bidi"])
async def test_empty_and_unicode_names(client: GreetClient, kind: str) -> None:
    names = ["", *UNICODE_NAMES, ""]
    assert await collect(client, kind, names) == [f"Hello {name}" for name in names]


@pytest.mark.parametrize("kind", ["server", "client", "bidi"])
async def test_ten_thousand_names_in_order(client: GreetClient, kind: str) -> None:
    names = [f"name-{i}" for i in range(10_000)]
    assert await collect(client, kind, names) == [f"Hello {name}" for name in names]


async def test_concurrent_calls_of_every_kind(client: GreetClient) -> None:
    async def one(i: int) -> None:
        names = [f"{i}-{j}" for j in range(20)]
        expected = [f"Hello {name}" for name in names]
        assert (await client.say_hello()).message == "Hello"
        for kind in ("server", "client", "bidi"):
            assert await collect(client, kind, names) == expected

    await asyncio.gather(*(one(i) for i in range(50)))


async def test_many_clients_at_once(server: GreetServer) -> None:
    async def one(i: int) -> str:
        async with GreetClient(server.target, timeout=30) as own:
            return (await own.say_hello()).message

    assert await asyncio.gather(*(one(i) for i in range(30))) == ["Hello"] * 30


async def test_connection_refused_is_unavailable(server: GreetServer) -> None:
    await server.stop()
    async with GreetClient(server.target, timeout=5) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is Status.UNAVAILABLE


async def collect(client: GreetClient, kind: str, names: list[str]) -> list[str]:
    if kind == "server":
        return [r.message async for r in client.say_hello_server_streaming(names)]
    if kind == "client":
        return list((await client.say_hello_client_streaming(names)).messages)
    return [r.message async for r in client.say_hello_bidirectional_streaming(names)]


async def test_deadline_is_deadline_exceeded(start_server: StartServer) -> None:
    slow = await start_server(work_delay=5.0)
    async with GreetClient(slow.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming(["slow"], timeout=0.2)
    assert caught.value.status is Status.DEADLINE_EXCEEDED


@pytest.mark.parametrize("eager", [True, False], ids=["eager-calls", "a-task-per-call"])
async def test_every_call_kind_with_and_without_eager_calls(
    start_server: StartServer, eager: bool
) -> None:
    """Handlers run in the callback that completed their request (eager) or each in its own
    Task from the start; with a backend that waits (--work-delay), eager calls turn into Tasks
    where they first wait. Same answers either way."""
    server = await start_server(transport=TransportConfig(eager_calls=eager), work_delay=0.001)
    names = [f"n{index}" for index in range(20)]
    async with GreetClient(server.target, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        for kind in ("server", "client", "bidi"):
            assert await collect(client, kind, names) == [f"Hello {name}" for name in names]
