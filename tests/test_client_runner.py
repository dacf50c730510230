"""The attempt runner on real servers, for every call kind: a call whose server goes away is tried
again on another endpoint, unless a reply had reached the caller; an attempt the server did not
process is retried at once, even without a retry policy and after requests were sent; a service
config's per-method policy and its throttling decide the rest.

Servers: real GreetServers on loopback sockets (the `start_server` fixture), a grpclib Server
running `Flaky` (tests/support: fails the first attempts of each method with a chosen status), and
`RefusingServer`, a raw HTTP/2 server that answers every call with REFUSED_STREAM or with a
GOAWAY that leaves it out. Attempts are seen through an attempt interceptor (`AttemptLog`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from flaky_service import Flaky, GrpclibServers
from grpclib.const import Status
from hyperframe.frame import GoAwayFrame, SettingsFrame
from loopback import StartServer, bound_socket
from raw_http2 import PREFACE, rst, settings

from greet.client import (
    ClientAttempt,
    GreetClient,
    Proceed,
    RetryPolicy,
    RpcError,
    ServiceConfig,
)
from greet.greeting import greeting_for
from greet.server import GreetServer, ServerConfig

KINDS = ["unary", "server_stream", "client_stream", "bidi"]
GREETING_KINDS = ["server_stream", "client_stream", "bidi"]  # SayHello does no greeting work
QUICK = RetryPolicy(initial_backoff=0.001, max_backoff=0.002)
SERVICE = "greet_service.GreetService"
REFUSED_STREAM = 0x7
OK, UNAVAILABLE = Status.OK, Status.UNAVAILABLE


async def call(client: GreetClient, kind: str, names: tuple[str, ...] = ("a", "b")) -> list[str]:
    """One call of `kind`; the greetings it got."""
    if kind == "unary":
        return [(await client.say_hello()).message]
    if kind == "server_stream":
        return [r.message async for r in client.say_hello_server_streaming(names)]
    if kind == "client_stream":
        return list((await client.say_hello_client_streaming(list(names))).messages)
    return [r.message async for r in client.say_hello_bidirectional_streaming(list(names))]


def greetings(kind: str, names: tuple[str, ...] = ("a", "b")) -> list[str]:
    return ["Hello"] if kind == "unary" else [f"Hello {name}" for name in names]


class AttemptLog:
    """An attempt interceptor that keeps every attempt once it has ended."""

    def __init__(self) -> None:
        self.attempts: list[ClientAttempt] = []

    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        await proceed()
        self.attempts.append(attempt)

    def outcomes(self) -> list[tuple[str, Status | None]]:
        return [(attempt.endpoint, attempt.status) for attempt in self.attempts]


class GatedGreeter:
    """A backend whose greetings wait for permits, so a call can be caught in flight."""

    def __init__(self) -> None:
        self.permits = asyncio.Semaphore(0)
        self.started = 0
        self._changed = asyncio.Event()

    async def greet(self, name: str) -> str:
        self.started += 1
        self._changed.set()
        await self.permits.acquire()
        return greeting_for(name)

    async def wait_started(self, count: int) -> None:
        while self.started < count:
            self._changed.clear()
            await self._changed.wait()


@pytest.fixture
async def gated_server() -> AsyncIterator[tuple[GreetServer, GatedGreeter]]:
    greeter = GatedGreeter()
    server = GreetServer(ServerConfig(), backend=greeter)
    await server.start(sock=bound_socket())
    yield server, greeter
    await server.stop(grace=0)


# -- a server that goes away ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_each_call_kind_is_retried_when_its_server_has_gone(
    start_server: StartServer, kind: str
) -> None:
    going, staying = await start_server(), await start_server()
    log = AttemptLog()
    targets = [going.target, staying.target]
    async with GreetClient(targets, timeout=10, attempt_interceptors=[log]) as client:
        assert await call(client, kind) == greetings(kind)  # on `going`: connected
        assert await call(client, kind) == greetings(kind)  # on `staying`
        await going.stop()
        assert await call(client, kind) == greetings(kind)  # `going` first, then `staying`
    assert log.outcomes() == [
        (going.target, OK),
        (staying.target, OK),
        (going.target, UNAVAILABLE),
        (staying.target, OK),
    ]
    assert client.served == Counter({staying.target: 2, going.target: 1})


@pytest.mark.parametrize("kind", GREETING_KINDS)
async def test_a_call_in_flight_is_retried_when_its_server_goes_away_before_replying(
    gated_server: tuple[GreetServer, GatedGreeter], start_server: StartServer, kind: str
) -> None:
    going, greeter = gated_server
    staying = await start_server()
    log = AttemptLog()
    targets = [going.target, staying.target]
    async with GreetClient(targets, timeout=10, attempt_interceptors=[log]) as client:
        in_flight = asyncio.create_task(call(client, kind))
        await greeter.wait_started(1)  # the call waits in `going`'s backend
        await going.stop(grace=0)
        assert await in_flight == greetings(kind)
    assert log.outcomes() == [(going.target, UNAVAILABLE), (staying.target, OK)]


@pytest.mark.parametrize("kind", ["server_stream", "bidi"])
async def test_a_stream_is_not_retried_once_a_reply_reached_the_caller(
    gated_server: tuple[GreetServer, GatedGreeter], start_server: StartServer, kind: str
) -> None:
    going, greeter = gated_server
    staying = await start_server()
    log = AttemptLog()
    received: list[str] = []
    first_reply = asyncio.Event()

    async def consume(client: GreetClient) -> None:
        replies = (
            client.say_hello_server_streaming(["a", "b"])
            if kind == "server_stream"
            else client.say_hello_bidirectional_streaming(["a", "b"])
        )
        async for reply in replies:
            received.append(reply.message)
            first_reply.set()

    targets = [going.target, staying.target]
    async with GreetClient(targets, timeout=10, attempt_interceptors=[log]) as client:
        greeter.permits.release()  # "Hello a" only
        consuming = asyncio.create_task(consume(client))
        await first_reply.wait()
        await going.stop(grace=0)
        with pytest.raises(RpcError) as caught:
            await consuming
    assert caught.value.status is UNAVAILABLE
    assert received == ["Hello a"]  # not "Hello a" again from a second attempt
    assert log.outcomes() == [(going.target, UNAVAILABLE)]


# -- attempts the server did not process ------------------------------------------------------


class RefusingServer:
    """A raw HTTP/2 server that processes no call: once a request has been sent in full, it
    answers RST_STREAM(REFUSED_STREAM) (`how="refuse"`) or a GOAWAY whose last stream id is
    below the request's (`how="goaway"`); it counts the requests and their DATA bytes."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.requests = 0
        self.request_bytes = 0
        self.target = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = bound_socket()
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.target = f"127.0.0.1:{sock.getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(settings())
        try:
            await reader.readexactly(len(PREFACE))
            while True:
                header = await reader.readexactly(9)
                kind, flags = header[3], header[4]
                stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                payload = await reader.readexactly(int.from_bytes(header[:3], "big"))
                if kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
                    writer.write(SettingsFrame(0, flags=["ACK"]).serialize())
                if kind == 0x0:
                    self.request_bytes += len(payload)
                if kind in (0x0, 0x1) and flags & 0x1:  # END_STREAM: the request is complete
                    self.requests += 1
                    if self.how == "refuse":
                        writer.write(rst(stream_id, REFUSED_STREAM))
                    else:
                        last = max(stream_id - 2, 0)
                        writer.write(GoAwayFrame(0, last_stream_id=last).serialize())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def refusing() -> AsyncIterator[Callable[[str], Awaitable[RefusingServer]]]:
    servers: list[RefusingServer] = []

    async def start(how: str) -> RefusingServer:
        server = RefusingServer(how)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.mark.parametrize("how", ["refuse", "goaway"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_unprocessed_attempt_is_retried_at_once_even_without_a_retry_policy(
    refusing: Callable[[str], Awaitable[RefusingServer]],
    start_server: StartServer,
    kind: str,
    how: str,
) -> None:
    """No method has a retry policy (an empty service config), and the requests of the client
    and bidi streams were all sent before the refusal: the attempt is still retried."""
    refuser = await refusing(how)
    server = await start_server()
    log = AttemptLog()
    async with GreetClient(
        [refuser.target, server.target],
        timeout=10,
        service_config=ServiceConfig(),
        attempt_interceptors=[log],
    ) as client:
        assert await call(client, kind) == greetings(kind)
    assert log.outcomes() == [(refuser.target, UNAVAILABLE), (server.target, OK)]
    assert [attempt.transparent for attempt in log.attempts] == [False, True]
    assert refuser.requests == 1
    assert log.attempts[0].messages_sent == (1 if kind in ("unary", "server_stream") else 2)
    assert refuser.request_bytes > 0


async def test_one_transparent_retry_per_call_then_the_policy(
    refusing: Callable[[str], Awaitable[RefusingServer]],
) -> None:
    first, second = await refusing("refuse"), await refusing("refuse")
    log = AttemptLog()
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
    async with GreetClient(
        [first.target, second.target], timeout=10, retry=policy, attempt_interceptors=[log]
    ) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is UNAVAILABLE
    # the first attempt, its transparent retry, then the policy's one retry
    assert [(a.number, a.transparent) for a in log.attempts] == [(1, False), (2, True), (3, False)]
    assert first.requests + second.requests == 3


@pytest.mark.parametrize("how", ["refuse", "goaway"])
async def test_an_unprocessed_unary_attempt_is_retried_without_interceptors_too(
    refusing: Callable[[str], Awaitable[RefusingServer]], start_server: StartServer, how: str
) -> None:
    """A client with no interceptors runs a unary call's first attempt on its own (no records
    made); when that attempt fails, the call goes on as any other: here a transparent retry on
    the next endpoint, with no retry policy, counted where it succeeded."""
    refuser = await refusing(how)
    server = await start_server()
    targets = [refuser.target, server.target]
    async with GreetClient(targets, timeout=10, service_config=ServiceConfig()) as client:
        assert (await client.say_hello()).message == "Hello"
        assert client.served == Counter({server.target: 1})
    assert refuser.requests == 1


async def test_one_transparent_retry_then_the_policy_without_interceptors(
    refusing: Callable[[str], Awaitable[RefusingServer]],
) -> None:
    """The first attempt, its transparent retry (no token), then the policy's one retry (each
    failure the policy saw took a token)."""
    first, second = await refusing("refuse"), await refusing("refuse")
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
    async with GreetClient([first.target, second.target], timeout=10, retry=policy) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
        assert client.budget.tokens == pytest.approx(100 - 2)
    assert caught.value.status is UNAVAILABLE
    assert first.requests + second.requests == 3


# -- per-method policies and throttling -------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[GrpclibServers]:
    async with GrpclibServers() as servers:
        yield servers


def retry_policy_json(max_attempts: int, codes: list[str]) -> dict[str, Any]:
    return {
        "maxAttempts": max_attempts,
        "initialBackoff": "0.001s",
        "maxBackoff": "0.002s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": codes,
    }


async def test_a_per_method_policy_applies_to_that_method_only(
    serve: GrpclibServers,
) -> None:
    failing = Flaky(failures=2)
    config = json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": SERVICE, "method": "SayHello"}],
                    "retryPolicy": retry_policy_json(3, ["UNAVAILABLE"]),
                }
            ]
        }
    )
    async with GreetClient(await serve.start(failing), timeout=10, service_config=config) as client:
        assert (await client.say_hello()).message == "Hello"
        for kind in ("server_stream", "client_stream", "bidi"):
            with pytest.raises(RpcError) as caught:
                await call(client, kind)
            assert caught.value.status is UNAVAILABLE
    assert failing.attempts_by_method == Counter(
        {
            "SayHello": 3,
            "SayHelloServerStreaming": 1,
            "SayHelloClientStreaming": 1,
            "SayHelloBidirectionalStreaming": 1,
        }
    )


async def test_a_policy_retries_the_statuses_it_names_and_no_others(
    serve: GrpclibServers,
) -> None:
    exhausted = Flaky(failures=1, status=Status.RESOURCE_EXHAUSTED)
    unavailable = Flaky(failures=1, status=Status.UNAVAILABLE)
    config = {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": retry_policy_json(2, ["RESOURCE_EXHAUSTED"]),
            }
        ]
    }
    async with GreetClient(
        await serve.start(exhausted), timeout=10, service_config=config
    ) as client:
        assert await call(client, "bidi") == greetings("bidi")
    async with GreetClient(
        await serve.start(unavailable), timeout=10, service_config=config
    ) as client:
        with pytest.raises(RpcError) as caught:
            await call(client, "bidi")
    assert caught.value.status is UNAVAILABLE
    assert exhausted.attempts_by_method["SayHelloBidirectionalStreaming"] == 2
    assert unavailable.attempts_by_method["SayHelloBidirectionalStreaming"] == 1


async def test_the_service_configs_throttling_stops_retries(
    serve: GrpclibServers,
) -> None:
    """4 tokens, retries only above 2: the first failing call is tried twice (4 -> 3 -> 2),
    the next once; a success gives back 0.5."""
    failing = Flaky(failures=3)
    config = {
        "methodConfig": [{"name": [{}], "retryPolicy": retry_policy_json(5, ["UNAVAILABLE"])}],
        "retryThrottling": {"maxTokens": 4, "tokenRatio": 0.5},
    }
    async with GreetClient(await serve.start(failing), timeout=10, service_config=config) as client:
        for _ in range(2):
            with pytest.raises(RpcError):
                await client.say_hello()
        assert failing.attempts_by_method["SayHello"] == 3
        assert (await client.say_hello()).message == "Hello"
        assert client.budget.tokens == pytest.approx(4 - 3 + 0.5)
