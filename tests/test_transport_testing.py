"""greet.transport.testing: greet's real transport in memory (ChannelFor, MemoryServer) and the
in-memory transport pair under it. No sockets: these are unit tests."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from waiting import wait_until

from greet.client import GreetClient
from greet.greeting import Limits
from greet.service import GreetService
from greet.transport import (
    Channel,
    Proceed,
    ServerCall,
    TransportConfig,
    TransportServer,
    default_engine_name,
)
from greet.transport._client import ClientConnection
from greet.transport._server import ServerConnection
from greet.transport.testing import ChannelFor, MemoryServer, MemoryTransport, memory_pipe
from greet_service import GreetServiceStub, HelloRequest, HelloResponse, NamesList, NoParam

BIDI = "/greet_service.GreetService/SayHelloBidirectionalStreaming"
ENGINE_CLASSES = {"nghttp2": "NgHttp2Engine", "h2": "H2Engine"}


async def test_channel_for_runs_greet_s_connections_on_the_configured_engine() -> None:
    channel_for = ChannelFor([GreetService()])
    async with channel_for as channel:
        assert isinstance(channel, Channel)
        reply = await GreetServiceStub(channel).say_hello(NoParam())
        assert reply.message == "Hello"
        client = channel.connection
        assert isinstance(client, ClientConnection)
        (server,) = channel_for.server.server.connections
        assert isinstance(server, ServerConnection)
        wanted = ENGINE_CLASSES[default_engine_name()]  # GREET_HTTP2_ENGINE picks both ends'
        assert type(client.engine).__name__ == type(server.engine).__name__ == wanted
        assert client.peer_name == channel_for.server.target
        assert server.peer_name.startswith("in-memory-client:")


class Refuse:
    """A server interceptor that refuses every call but SayHello."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        self.seen.append(call.method)
        if not call.method.endswith("/SayHello"):
            raise GRPCError(Status.PERMISSION_DENIED, "not this one")
        await proceed()


async def test_the_server_s_config_and_interceptors_apply() -> None:
    refuse = Refuse()
    config = TransportConfig(max_message_bytes=64)
    async with ChannelFor([GreetService()], config=config, interceptors=[refuse]) as channel:
        stub = GreetServiceStub(channel)
        assert (await stub.say_hello(NoParam())).message == "Hello"
        with pytest.raises(GRPCError) as refused:
            await stub.say_hello_server_streaming(NamesList(["a"])).__anext__()
        assert refused.value.status is Status.PERMISSION_DENIED
    assert refuse.seen == [
        "/greet_service.GreetService/SayHello",
        "/greet_service.GreetService/SayHelloServerStreaming",
    ]
    async with ChannelFor([GreetService()], config=config) as channel:
        with pytest.raises(GRPCError) as too_big:
            await GreetServiceStub(channel).say_hello_client_streaming([HelloRequest("x" * 100)])
        assert too_big.value.status is Status.RESOURCE_EXHAUSTED


async def test_greet_client_runs_over_a_memory_server() -> None:
    server = MemoryServer(TransportServer([GreetService(limits=Limits(max_name_chars=5))]))
    async with server, GreetClient(server.target, timeout=10, connector=server.connect) as client:
        assert (await client.say_hello()).message == "Hello"
        streamed = [r.message async for r in client.say_hello_server_streaming(["a", "b"])]
        assert streamed == ["Hello a", "Hello b"]
        assert (await client.say_hello_client_streaming(["c", "d"])).messages == [
            "Hello c",
            "Hello d",
        ]
        bidi = [r.message async for r in client.say_hello_bidirectional_streaming(["e"])]
        assert bidi == ["Hello e"]
        assert client.served == {server.target: 4}


async def test_closing_the_channel_ends_both_connections() -> None:
    async with MemoryServer(TransportServer([GreetService()])) as server:
        channel = server.channel()
        await GreetServiceStub(channel).say_hello(NoParam())
        client = channel.connection
        assert client is not None
        assert len(server.server.connections) == 1
        channel.close()
        await wait_until(lambda: not server.server.connections, "the server connection ended")
        assert client.closed


async def test_a_drain_lets_the_call_in_flight_finish_then_refuses_connections() -> None:
    server = MemoryServer(TransportServer([GreetService()]))
    channel = server.channel()
    try:
        stream = channel.request(BIDI, Cardinality.STREAM_STREAM, HelloRequest, HelloResponse)
        async with stream:
            await stream.send_message(HelloRequest("before"))
            assert (await stream.recv_message()) == HelloResponse("Hello before")
            draining = asyncio.create_task(server.shutdown(grace=10))
            connection = channel.connection
            assert connection is not None
            await wait_until(lambda: connection.goaway_received, "the drain's GOAWAY")
            await stream.send_message(HelloRequest("during"), end=True)
            assert (await stream.recv_message()) == HelloResponse("Hello during")
            assert await stream.recv_message() is None
        await asyncio.wait_for(draining, 5)
        assert connection.closed
        with pytest.raises(ConnectionRefusedError):
            await channel.__connect__()
    finally:
        channel.close()


# -- the transport pair ------------------------------------------------------------------------


class Recording(asyncio.Protocol):
    """Keeps what an end of the pair was told, in order."""

    def __init__(self, *, keep_open_on_eof: bool = False) -> None:
        self.events: list[object] = []
        self.keep_open_on_eof = keep_open_on_eof
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(None)


def pair(client: Recording, server: Recording) -> tuple[MemoryTransport, MemoryTransport]:
    return memory_pipe(
        client, server, client_address=("in-memory-client", 1), server_address=("in-memory", 1)
    )


async def test_writes_arrive_in_order_a_callback_later_and_close_ends_both() -> None:
    client, server = Recording(), Recording()
    client_end, server_end = pair(client, server)
    assert client_end.get_extra_info("peername") == ("in-memory", 1)
    assert server_end.get_extra_info("peername") == ("in-memory-client", 1)
    assert client_end.get_extra_info("socket") is None
    client_end.write(b"one")
    client_end.write(b"two")
    assert server.events == ["made"]  # not delivered inside write()
    client_end.close()
    assert client_end.is_closing()
    await asyncio.wait_for(asyncio.gather(client.lost, server.lost), 5)
    assert server.events == ["made", b"one", b"two", "eof", ("lost", None)]
    assert client.events == ["made", ("lost", None)]


async def test_write_eof_is_a_half_close() -> None:
    client, server = Recording(), Recording(keep_open_on_eof=True)
    client_end, server_end = pair(client, server)
    assert client_end.can_write_eof()
    client_end.write_eof()
    with pytest.raises(RuntimeError):
        client_end.write(b"more")
    await wait_until(lambda: "eof" in server.events, "the end of file")
    server_end.write(b"answer")  # the other direction is still open
    server_end.close()
    await asyncio.wait_for(asyncio.gather(client.lost, server.lost), 5)
    assert server.events == ["made", "eof", ("lost", None)]
    assert client.events == ["made", b"answer", "eof", ("lost", None)]


async def test_abort_resets_the_peer() -> None:
    client, server = Recording(), Recording()
    client_end, _ = pair(client, server)
    client_end.abort()
    await asyncio.wait_for(asyncio.gather(client.lost, server.lost), 5)
    assert client.events[-1] == ("lost", None)
    assert server.events[-1] == ("lost", "ConnectionResetError")


async def test_writing_pauses_above_the_high_mark_until_delivered() -> None:
    client, server = Recording(), Recording()
    client_end, _ = pair(client, server)
    client_end.set_write_buffer_limits(high=10)
    assert client_end.get_write_buffer_limits() == (2, 10)
    client_end.write(b"x" * 11)
    assert client.events[-1] == "pause"
    assert client_end.get_write_buffer_size() == 11
    client_end.close()
    await asyncio.wait_for(server.lost, 5)
    assert client.events == ["made", "pause", "resume", ("lost", None)]
    assert client_end.get_write_buffer_size() == 0
