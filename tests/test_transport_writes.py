"""Write batching (greet.transport._connection): one socket write per event-loop round.

Speed itself is measured in benchmarks/; these tests pin what batching changes (how many socket
writes a reply takes) and what it must not (every byte arrives, in order, also on close).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from loopback import bound_socket

from greet.client import GreetClient
from greet.service import GreetService
from greet.transport import TransportConfig, TransportServer
from greet.transport._server import ServerConnection


class RecordingTransport:
    """Sits under a server connection and counts what reaches the socket."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingServer(TransportServer):
    """A TransportServer whose connections write through a RecordingTransport."""

    def __init__(self, writes: list[bytes]) -> None:
        super().__init__([GreetService()], config=TransportConfig())
        self.writes = writes

    def connection_factory(self) -> ServerConnection:
        writes = self.writes

        class Recorded(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                real = cast(asyncio.Transport, transport)
                super().connection_made(cast(asyncio.Transport, RecordingTransport(real, writes)))

        self._all_closed.clear()
        return Recorded(self)


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[str, list[bytes]]]:
    writes: list[bytes] = []
    server = RecordingServer(writes)
    await server.start(sock=bound_socket())
    host, port = server.address
    try:
        yield f"{host}:{port}", writes
    finally:
        await server.shutdown(1.0)


async def test_a_unary_reply_goes_out_in_one_socket_write(
    recorded: tuple[str, list[bytes]],
) -> None:
    target, writes = recorded
    async with GreetClient(target, timeout=30) as client:
        await client.say_hello()  # connection set-up writes happen here
        before = len(writes)
        reply = await client.say_hello()
        after = len(writes)
    assert reply.message == "Hello"
    # HEADERS, DATA and trailers (and the flow-control update) in one send(), not three or four.
    assert after - before == 1


async def test_batched_streams_arrive_complete_and_in_order(
    recorded: tuple[str, list[bytes]],
) -> None:
    target, writes = recorded
    names = [f"name-{index}" for index in range(3000)]
    async with GreetClient(target, timeout=30) as client:
        replies = [reply.message async for reply in client.say_hello_server_streaming(names)]
        echoed = [
            reply.message async for reply in client.say_hello_bidirectional_streaming(names[:500])
        ]
    assert replies == [f"Hello {name}" for name in names]
    assert echoed == [f"Hello {name}" for name in names[:500]]
    assert len(writes) < len(names)  # many messages per write
