"""Graceful shutdown of `python -m greet.server` on SIGTERM/SIGINT: stop accepting at once,
GOAWAY on open connections, in-flight calls finish within --grace, the rest are cancelled, exit 0.

The in-flight calls use grpcio (Google's C-core client), which, like grpc-go, keeps its running
streams going after a GOAWAY; so does greet.transport.Channel (grpclib's own client drops them).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, RemoteSettingsChanged
from loopback import bound_socket
from server_process import ServerProcess
from waiting import wait_until

from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig
from greet.transport import Channel
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NoParam,
)

SERVICE = "/greet_service.GreetService/"
SHUTTING_DOWN = re.compile(r"shutting down")


def host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def request_bytes(name: str) -> bytes:
    return bytes(HelloRequest(name=name))


def assert_clean_log(process: ServerProcess) -> None:
    assert not any("Traceback" in line for line in process.log_lines), "\n".join(process.log_lines)


async def goaway_on_idle_connection(target: str, accepted: asyncio.Event) -> ConnectionTerminated:
    """Open a plain HTTP/2 connection, set `accepted` once the server's SETTINGS arrive, stay
    idle, and return the GOAWAY the server sends."""
    reader, writer = await asyncio.open_connection(*host_port(target))
    h2 = H2Connection(H2Configuration(client_side=True))
    h2.initiate_connection()
    writer.write(h2.data_to_send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed without GOAWAY")
            for event in h2.receive_data(data):
                if isinstance(event, RemoteSettingsChanged):
                    accepted.set()
                if isinstance(event, ConnectionTerminated):
                    return event
            writer.write(h2.data_to_send())
    finally:
        writer.close()


def open_bidi(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall[bytes, HelloResponse]:
    """Start a SayHelloBidirectionalStreaming call on a grpcio channel (raw request bytes)."""
    bidi = channel.stream_stream(
        SERVICE + "SayHelloBidirectionalStreaming",
        request_serializer=lambda raw: raw,
        response_deserializer=HelloResponse.FromString,
    )
    return bidi()


async def names_sent_through_the_drain(
    process: ServerProcess, names: list[str], first_sent: asyncio.Event
) -> AsyncIterator[str]:
    """Yield "before", set `first_sent`, then once the server logs that it is shutting down keep
    yielding names for two more seconds; every name yielded is appended to `names`."""
    names.append("before")
    yield "before"
    first_sent.set()
    await process.wait_for_log(SHUTTING_DOWN)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.0
    while loop.time() < until:
        names.append(f"n{len(names)}")
        yield names[-1]
        await asyncio.sleep(0.05)  # a client that keeps sending at its own pace


async def test_sigterm_drains_a_client_stream_that_keeps_sending() -> None:
    async with ServerProcess(["--grace", "10"]) as process:
        accepted = asyncio.Event()
        idle_goaway = asyncio.create_task(goaway_on_idle_connection(process.target, accepted))
        await asyncio.wait_for(accepted.wait(), 30)
        async with grpc.aio.insecure_channel(process.target) as channel:
            client_stream = channel.stream_unary(
                SERVICE + "SayHelloClientStreaming",
                request_serializer=lambda raw: raw,
                response_deserializer=MessagesList.FromString,
            )
            sent_before = asyncio.Event()
            names: list[str] = []

            async def requests() -> AsyncIterator[bytes]:
                async for name in names_sent_through_the_drain(process, names, sent_before):
                    yield request_bytes(name)

            call = client_stream(requests())
            await sent_before.wait()
            await channel.unary_unary(
                SERVICE + "SayHello",
                request_serializer=lambda raw: raw,
                response_deserializer=HelloResponse.FromString,
            )(b"")  # the connection and the stream are up on the server
            process.send_signal(signal.SIGTERM)
            await process.wait_for_log(SHUTTING_DOWN)

            # Idle connections are told to go away; new connections are refused at once.
            goaway = await asyncio.wait_for(idle_goaway, 30)
            assert goaway.error_code == ErrorCodes.NO_ERROR
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(*host_port(process.target))

            reply = await call
            assert list(reply.messages) == [f"Hello {name}" for name in names]
            assert len(names) > 10
        assert await process.wait() == 0
    assert_clean_log(process)
    assert not any("cancelling" in line for line in process.log_lines)


async def test_call_still_running_after_grace_is_cancelled_and_process_exits_0() -> None:
    async with (
        ServerProcess(["--grace", "3"]) as process,
        grpc.aio.insecure_channel(process.target) as channel,
    ):
        call = open_bidi(channel)
        await call.write(request_bytes("Ann"))
        assert await call.read() == HelloResponse(message="Hello Ann")  # running
        process.send_signal(signal.SIGTERM)
        await process.wait_for_log(SHUTTING_DOWN)
        await call.write(request_bytes("Bob"))  # still served while draining
        assert await call.read() == HelloResponse(message="Hello Bob")
        # The client never ends its stream: after the grace period the call is cancelled.
        assert await process.wait() == 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert any("grace period over: cancelling 1 calls" in line for line in process.log_lines)
    assert_clean_log(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_with_nothing_in_flight_exits_0_at_once(signum: signal.Signals) -> None:
    async with ServerProcess(["--grace", "600"]) as process:
        process.send_signal(signum)
        assert await process.wait() == 0  # did not wait for the 600 s grace
    assert any("stopped" in line for line in process.log_lines)
    assert_clean_log(process)


async def test_transport_channel_finishes_its_call_during_a_drain() -> None:
    server = GreetServer(ServerConfig())
    await server.start(sock=bound_socket())
    channel = Channel(*host_port(server.target))  # greet's Channel, under a generated stub
    stub = GreetServiceStub(channel)
    try:
        first_sent = asyncio.Event()
        goaway_seen = asyncio.Event()

        async def requests() -> AsyncIterator[HelloRequest]:
            yield HelloRequest(name="before")
            first_sent.set()
            await goaway_seen.wait()
            for name in ("during", "the", "drain"):
                yield HelloRequest(name=name)

        call = asyncio.create_task(stub.say_hello_client_streaming(requests()))
        await first_sent.wait()
        connection = await channel.__connect__()
        await wait_until(lambda: bool(server.drain.in_flight()), "call on the server")
        stopping = asyncio.create_task(server.stop(grace=30))
        await wait_until(lambda: connection.goaway_received, "the client saw GOAWAY")
        goaway_seen.set()
        reply = await call
        assert reply.messages == ["Hello before", "Hello during", "Hello the", "Hello drain"]
        await stopping
        # New calls go to a new connection, which the stopped server refuses.
        with pytest.raises(ConnectionRefusedError):
            await stub.say_hello(NoParam())
    finally:
        channel.close()
        await server.stop(grace=0)


async def test_second_stop_signal_ends_the_grace_period_at_once() -> None:
    async with (
        ServerProcess(["--grace", "600"]) as process,
        grpc.aio.insecure_channel(process.target) as channel,
    ):
        call = open_bidi(channel)
        await call.write(request_bytes("Ann"))
        assert await call.read() == HelloResponse(message="Hello Ann")
        process.send_signal(signal.SIGTERM)
        await process.wait_for_log(re.compile("draining"))
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 0  # long before the 600 s grace period
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()
    assert any("cancelling 1 calls" in line for line in process.log_lines)
    assert_clean_log(process)


async def test_greet_client_stream_that_keeps_sending_completes_during_a_drain() -> None:
    """GreetClient's connections tolerate GOAWAY: its in-flight stream finishes on SIGTERM."""
    async with ServerProcess(["--grace", "10"]) as process:
        async with GreetClient(process.target, timeout=60) as client:
            sent_before = asyncio.Event()
            names: list[str] = []

            call = asyncio.create_task(
                client.say_hello_client_streaming(
                    names_sent_through_the_drain(process, names, sent_before)
                )
            )
            await sent_before.wait()
            assert (await client.say_hello()).message == "Hello"  # the connection is up
            process.send_signal(signal.SIGTERM)
            reply = await call
        assert list(reply.messages) == [f"Hello {name}" for name in names]
        assert len(names) > 10
        assert await process.wait() == 0
    assert_clean_log(process)
