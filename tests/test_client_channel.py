"""greet.client.Channel under generated stubs: betterproto's GreetServiceStub and grpclib's own
HealthStub get the channel's balancing, retries with replayed requests, interceptors, deadline
and metadata, against real servers on loopback sockets (GreetServer, and grpclib servers running
`Flaky`). Also the stream a stub drives (metadata, peer), and BlockingGreetClient from a plain
script with no event loop of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from flaky_service import Flaky, GrpclibServers
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from loopback import StartServer

from greet.client import (
    Channel,
    ClientAttempt,
    ClientCall,
    Proceed,
    RetryPolicy,
    RpcError,
)
from greet.client._channel import calls_opened
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

QUICK = RetryPolicy(initial_backoff=0.001, max_backoff=0.002)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def serve() -> AsyncIterator[GrpclibServers]:
    async with GrpclibServers() as servers:
        yield servers


class Seen:
    """Records every call and attempt an interceptor sees."""

    def __init__(self) -> None:
        self.records: list[ClientCall | ClientAttempt] = []

    async def intercept(self, record: ClientCall | ClientAttempt, proceed: Proceed, /) -> None:
        self.records.append(record)
        await proceed()


async def test_a_generated_stub_makes_all_four_calls_over_the_channel(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with Channel(server.target, timeout=10) as channel:
        stub = GreetServiceStub(channel)
        assert (await stub.say_hello(NoParam())).message == "Hello"
        names = NamesList(names=["a", "b"])
        assert [r.message async for r in stub.say_hello_server_streaming(names)] == [
            "Hello a",
            "Hello b",
        ]
        requests = [HelloRequest(name="a"), HelloRequest(name="b")]
        reply = await stub.say_hello_client_streaming(requests)
        assert reply.messages == ["Hello a", "Hello b"]
        bidi = stub.say_hello_bidirectional_streaming(requests)
        assert [r.message async for r in bidi] == ["Hello a", "Hello b"]
        assert channel.served[server.target] == 4


async def test_a_stubs_calls_balance_over_replicas_and_leave_a_dead_one(
    start_server: StartServer,
) -> None:
    first, second = await start_server(), await start_server()
    async with Channel([first.target, second.target], retry=QUICK, timeout=10) as channel:
        stub = GreetServiceStub(channel)
        for _ in range(4):
            await stub.say_hello(NoParam())
        assert channel.served == {first.target: 2, second.target: 2}
        await second.stop()
        for _ in range(4):
            assert (await stub.say_hello(NoParam())).message == "Hello"
        assert channel.served[first.target] == 6


async def test_a_stubs_unary_call_is_retried_per_the_service_config(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky(failures=2)
    config = {
        "methodConfig": [
            {
                "name": [{"service": "greet_service.GreetService"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.001s",
                    "maxBackoff": "0.002s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    async with Channel(await serve.start(flaky), service_config=config, timeout=10) as channel:
        assert (await GreetServiceStub(channel).say_hello(NoParam())).message == "Hello"
    assert flaky.attempts == 3


async def test_a_stubs_client_stream_is_replayed_on_retry(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=1)
    pulled: list[str] = []

    async def requests() -> AsyncIterator[HelloRequest]:
        for name in ["a", "b", "c"]:
            pulled.append(name)
            yield HelloRequest(name=name)

    async with Channel(await serve.start(flaky), retry=QUICK, timeout=10) as channel:
        reply = await GreetServiceStub(channel).say_hello_client_streaming(requests())
    assert reply.messages == ["Hello a", "Hello b", "Hello c"]
    assert pulled == ["a", "b", "c"]  # read once, sent twice
    assert flaky.attempts == 2


async def test_a_stubs_calls_run_inside_the_interceptors_with_the_metadata(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky(failures=1)
    seen = Seen()
    async with Channel(
        await serve.start(flaky),
        retry=QUICK,
        timeout=10,
        token="secret",
        metadata={"x-team": "inventory"},
        interceptors=[seen],
        attempt_interceptors=[seen],
    ) as channel:
        stub = GreetServiceStub(channel, metadata={"x-call": "1"})
        await stub.say_hello(NoParam())
    call, first, second = seen.records
    assert isinstance(call, ClientCall)
    assert call.method == "/greet_service.GreetService/SayHello"
    assert (call.status, first.status, second.status) == (Status.OK, Status.UNAVAILABLE, Status.OK)
    sent = flaky.metadata[-1]
    assert sent["authorization"] == "Bearer secret"
    assert (sent["x-team"], sent["x-call"]) == ("inventory", "1")


async def test_the_deadline_covers_every_attempt_of_a_stubs_call(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=1)
    async with Channel(await serve.start(flaky), retry=QUICK) as channel:
        await GreetServiceStub(channel).say_hello(NoParam(), timeout=5)
    assert len(flaky.deadlines) == 2
    assert all(0 < left <= 5 for left in flaky.deadlines)
    assert flaky.deadlines[1] <= flaky.deadlines[0]


async def test_a_failed_stub_call_raises_its_rpc_error(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=10, status=Status.NOT_FOUND)
    async with Channel(await serve.start(flaky), retry=QUICK, timeout=10) as channel:
        with pytest.raises(RpcError) as caught:
            await GreetServiceStub(channel).say_hello(NoParam())
    assert caught.value.status is Status.NOT_FOUND
    assert flaky.attempts == 1  # NOT_FOUND is not retried


async def test_grpclibs_health_stub_runs_over_the_channel(start_server: StartServer) -> None:
    server = await start_server()
    seen = Seen()
    async with Channel(server.target, timeout=10, interceptors=[seen]) as channel:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""))
    assert reply.status == HealthCheckResponse.SERVING
    [call] = seen.records
    assert isinstance(call, ClientCall)
    assert (call.method, call.status) == ("/grpc.health.v1.Health/Check", Status.OK)


async def test_the_stream_a_stub_drives_shows_the_last_attempts_metadata_and_peer(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with Channel(server.target, timeout=10) as channel:
        path = "/greet_service.GreetService/SayHelloServerStreaming"
        request = channel.request(path, Cardinality.UNARY_STREAM, NamesList, HelloResponse)
        async with request as stream:
            await stream.send_message(NamesList(names=["a", "b"]), end=True)
            await stream.recv_initial_metadata()
            assert stream.initial_metadata is not None
            assert stream.peer is not None
            replies = [reply.message async for reply in stream]
            await stream.recv_trailing_metadata()
        assert replies == ["Hello a", "Hello b"]
        assert stream.trailing_metadata is not None


class FirstOnly(Flaky):
    """Answers a bidi call's first request and ends the call (OK), its client still sending."""

    async def say_hello_bidirectional_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> AsyncIterator[HelloResponse]:
        async for request in hello_request_iterator:
            yield HelloResponse(message=f"Hello {request.name}")
            return


async def endless() -> AsyncIterator[HelloRequest]:
    for index in itertools.count():
        yield HelloRequest(name=str(index))


def stub_send_tasks() -> list[asyncio.Task[Any]]:
    """betterproto's send tasks (`_send_messages`) that are running."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("_send_messages")
    ]


async def end_quietly(senders: list[asyncio.Task[Any]]) -> None:
    """Each of `senders` ends cancelled or well, never with an exception nobody reads ("Task
    exception was never retrieved")."""
    assert senders
    await asyncio.wait(senders)
    assert [task.cancelled() or task.exception() for task in senders] == [True] * len(senders)


@pytest.mark.parametrize("how", ["server ends", "caller closes", "caller cancels"])
async def test_a_stubs_bidi_send_side_ends_quietly_when_the_call_ends_early(
    serve: GrpclibServers, how: str
) -> None:
    target = await serve.start(FirstOnly())
    async with Channel(target, retry=QUICK, timeout=10) as channel:
        stub = GreetServiceStub(channel)
        with calls_opened() as opened:
            replies = stub.say_hello_bidirectional_streaming(endless())
            first = await anext(replies)
        assert first.message == "Hello 0"
        senders = stub_send_tasks()
        if how == "server ends":
            assert [reply async for reply in replies] == []
        elif how == "caller closes":
            await cast(AsyncGenerator[HelloResponse, None], replies).aclose()
        else:
            [stream] = opened
            await stream.cancel()
            assert [reply async for reply in replies] == []
        await end_quietly(senders)
        assert (await stub.say_hello(NoParam())).message == "Hello"


class RefusesFirst(Flaky):
    """Fails a client stream at its first request, its client still sending."""

    async def say_hello_client_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> MessagesList:
        async for request in hello_request_iterator:
            raise GRPCError(Status.INVALID_ARGUMENT, f"not {request.name}")
        return MessagesList()


async def test_a_stubs_client_stream_failing_midway_raises_its_status(
    serve: GrpclibServers,
) -> None:
    target = await serve.start(RefusesFirst())
    async with Channel(target, retry=QUICK, timeout=10) as channel:
        with pytest.raises(RpcError) as raised:
            await GreetServiceStub(channel).say_hello_client_streaming(endless())
    assert (raised.value.status, raised.value.message) == (Status.INVALID_ARGUMENT, "not 0")


BLOCKING_SCRIPT = """
import sys
from greet.client import BlockingGreetClient

with BlockingGreetClient(sys.argv[1], timeout=10) as client:
    print(client.say_hello().message)
    print([reply.message for reply in client.say_hello_server_streaming(["a", "b"])])
    print(list(client.say_hello_client_streaming(["c", "d"]).messages))
    print([reply.message for reply in client.say_hello_bidirectional_streaming(["e"])])
"""


async def test_the_blocking_client_runs_from_a_plain_script(start_server: StartServer) -> None:
    server = await start_server()
    script = textwrap.dedent(BLOCKING_SCRIPT)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, server.target],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    result = await asyncio.to_thread(run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Hello",
        "['Hello a', 'Hello b']",
        "['Hello c', 'Hello d']",
        "['Hello e']",
    ]
