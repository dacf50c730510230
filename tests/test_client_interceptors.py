"""GreetClient's interceptors on real servers: the order of call and attempt interceptors around a
retried call, metadata they add reaching the server, refusals, what each attempt records
(endpoint, number, status, duration, messages) and the caller ending a stream early.

Servers: GreetService on greet's transport in memory (the `memory_server` fixture), where the
network plays no part; real GreetServers (the `start_server` fixture) where an endpoint refuses
connections; and a grpclib Server running `Flaky` (tests/support), which fails the first
attempts with UNAVAILABLE and records the metadata of every request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator

import pytest
from flaky_service import Flaky, GrpclibServers
from grpclib.const import Status
from loopback import StartServer, bound_socket

from greet.client import ClientAttempt, ClientCall, GreetClient, Proceed, RetryPolicy, RpcError
from greet.transport.testing import MemoryServer
from greet_service import (
    MessagesList,
)

QUICK = RetryPolicy(initial_backoff=0.001, max_backoff=0.002)
OK, UNAVAILABLE = Status.OK, Status.UNAVAILABLE


@pytest.fixture
async def serve() -> AsyncIterator[GrpclibServers]:
    async with GrpclibServers() as servers:
        yield servers


class Recorder:
    """Records entering and leaving, at either level."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    async def intercept(self, record: ClientCall | ClientAttempt, proceed: Proceed, /) -> None:
        label = self.name if isinstance(record, ClientCall) else f"{self.name}{record.number}"
        self.events.append(f"{label}>")
        await proceed()
        self.events.append(f"<{label} {record.status.name if record.status else None}")


@pytest.mark.parametrize("kind", ["unary", "bidi"])
async def test_call_interceptors_wrap_all_attempts_and_attempt_interceptors_each(
    serve: GrpclibServers, kind: str
) -> None:
    events: list[str] = []
    target = await serve.start(Flaky(failures=1))
    async with GreetClient(
        target,
        timeout=10,
        retry=QUICK,
        interceptors=[Recorder("outer", events), Recorder("inner", events)],
        attempt_interceptors=[Recorder("a", events), Recorder("b", events)],
    ) as client:
        if kind == "unary":
            assert (await client.say_hello()).message == "Hello"
        else:
            replies = [r.message async for r in client.say_hello_bidirectional_streaming(["x"])]
            assert replies == ["Hello x"]
    assert events == [
        "outer>",
        "inner>",
        "a1>",
        "b1>",
        "<b1 UNAVAILABLE",
        "<a1 UNAVAILABLE",
        "a2>",
        "b2>",
        "<b2 OK",
        "<a2 OK",
        "<inner OK",
        "<outer OK",
    ]


class AddMetadata:
    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        call.metadata["x-call"] = "added per call"
        await proceed()


class NumberAttempts:
    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        attempt.metadata["x-attempt"] = str(attempt.number)
        await proceed()


async def test_metadata_interceptors_add_reaches_the_server(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky(failures=1)
    async with GreetClient(
        await serve.start(flaky),
        timeout=10,
        retry=QUICK,
        token="s3cret",
        interceptors=[AddMetadata()],
        attempt_interceptors=[NumberAttempts()],
    ) as client:
        assert await client.say_hello_client_streaming(["x", "y"]) == MessagesList(
            messages=["Hello x", "Hello y"]
        )
    seen = [(each["x-call"], each["x-attempt"], each["authorization"]) for each in flaky.metadata]
    assert seen == [
        ("added per call", "1", "Bearer s3cret"),
        ("added per call", "2", "Bearer s3cret"),
    ]


class Refuse:
    def __init__(self, status: Status) -> None:
        self.status = status

    async def intercept(self, record: ClientCall | ClientAttempt, proceed: Proceed, /) -> None:
        raise RpcError(self.status, "refused by an interceptor")


class Outcomes:
    """Keeps every record it wrapped, once it has ended."""

    def __init__(self) -> None:
        self.calls: list[ClientCall] = []
        self.attempts: list[ClientAttempt] = []

    async def intercept(self, record: ClientCall | ClientAttempt, proceed: Proceed, /) -> None:
        await proceed()
        if isinstance(record, ClientCall):
            self.calls.append(record)
        else:
            self.attempts.append(record)


async def test_a_call_interceptor_refuses_a_call_before_it_is_sent(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky()
    outcomes = Outcomes()
    async with GreetClient(
        await serve.start(flaky),
        timeout=10,
        interceptors=[outcomes, Refuse(Status.PERMISSION_DENIED)],
    ) as client:
        with pytest.raises(RpcError) as caught:
            _ = [r async for r in client.say_hello_server_streaming(["x"])]
    assert (caught.value.status, caught.value.message) == (
        Status.PERMISSION_DENIED,
        "refused by an interceptor",
    )
    assert flaky.attempts == 0
    [call] = outcomes.calls
    assert (call.status, call.attempts) == (Status.PERMISSION_DENIED, [])


async def test_a_refused_attempt_is_not_retried(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky()
    outcomes = Outcomes()
    async with GreetClient(
        await serve.start(flaky),
        timeout=10,
        retry=QUICK,
        interceptors=[outcomes],
        attempt_interceptors=[outcomes, Refuse(Status.UNAVAILABLE)],
    ) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is UNAVAILABLE
    assert flaky.attempts == 0
    assert [(a.number, a.status) for a in outcomes.attempts] == [(1, UNAVAILABLE)]
    assert outcomes.calls[0].status is UNAVAILABLE


class RejectAfter:
    """Replaces the outcome after the call: the reply is refused."""

    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        await proceed()
        raise RpcError(Status.FAILED_PRECONDITION, f"not accepted after {call.status}")


async def test_an_rpc_error_raised_after_proceed_replaces_the_outcome(
    memory_server: MemoryServer,
) -> None:
    outcomes = Outcomes()
    async with GreetClient(
        memory_server.target,
        connector=memory_server.connect,
        timeout=10,
        interceptors=[outcomes, RejectAfter()],
    ) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert outcomes.calls[0].status is Status.FAILED_PRECONDITION
    assert outcomes.calls[0].attempts[0].status is OK


class FailedPrecondition:
    """Turns an attempt's UNAVAILABLE into FAILED_PRECONDITION."""

    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        await proceed()
        if attempt.status is UNAVAILABLE:
            raise RpcError(Status.FAILED_PRECONDITION, "no, thanks")


async def test_an_attempt_outcome_an_interceptor_replaces_is_not_retried(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky(failures=1)
    async with GreetClient(
        await serve.start(flaky),
        timeout=10,
        retry=QUICK,
        attempt_interceptors=[FailedPrecondition()],
    ) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert flaky.attempts == 1


class Broken:
    """An interceptor with a bug of its own: an OSError, as a full disk would raise."""

    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        await proceed()
        raise OSError("no space left on device")


async def test_an_interceptors_own_exception_reaches_the_caller_as_it_is(
    memory_server: MemoryServer,
) -> None:
    async with GreetClient(
        memory_server.target,
        connector=memory_server.connect,
        timeout=10,
        attempt_interceptors=[Broken()],
    ) as client:
        with pytest.raises(OSError, match="no space left on device"):
            await client.say_hello()
        assert [state.down for state in client.pool.endpoints] == [False]  # not the endpoint's
        assert client.served == {}


async def test_each_attempt_records_its_endpoint_outcome_duration_and_messages(
    start_server: StartServer,
) -> None:
    """The first endpoint refuses connections, the second serves."""
    live = await start_server()
    outcomes = Outcomes()
    with bound_socket() as dead:  # bound, not listening
        dead_target = f"127.0.0.1:{dead.getsockname()[1]}"
        async with GreetClient(
            [dead_target, live.target],
            timeout=10,
            interceptors=[outcomes],
            attempt_interceptors=[outcomes],
        ) as client:
            replies = [r.message async for r in client.say_hello_server_streaming("abc")]
    assert replies == ["Hello a", "Hello b", "Hello c"]
    first, second = outcomes.attempts
    assert (first.number, first.endpoint, first.status, first.transparent) == (
        1,
        dead_target,
        UNAVAILABLE,
        False,
    )
    assert first.error is not None
    assert first.error.message.startswith(f"cannot connect to {dead_target}")
    assert (first.messages_sent, first.messages_received) == (0, 0)
    assert (second.number, second.endpoint, second.status, second.error) == (
        2,
        live.target,
        OK,
        None,
    )
    assert (second.messages_sent, second.messages_received) == (1, 3)
    [call] = outcomes.calls
    assert call.attempts == [first, second]
    assert (call.method, call.service, call.method_name) == (
        "/greet_service.GreetService/SayHelloServerStreaming",
        "greet_service.GreetService",
        "SayHelloServerStreaming",
    )
    assert (call.status, call.messages_sent, call.messages_received) == (OK, 1, 3)
    assert first.elapsed > 0
    assert second.elapsed > 0
    assert call.elapsed >= first.elapsed + second.elapsed


class SeeCancellation:
    def __init__(self) -> None:
        self.raised: list[type[BaseException]] = []
        self.records: list[ClientCall | ClientAttempt] = []

    async def intercept(self, record: ClientCall | ClientAttempt, proceed: Proceed, /) -> None:
        self.records.append(record)
        try:
            await proceed()
        except BaseException as error:
            self.raised.append(type(error))
            raise


async def test_a_stream_the_caller_stops_reading_ends_cancelled_for_its_interceptors(
    memory_server: MemoryServer,
) -> None:
    seen = SeeCancellation()
    async with GreetClient(
        memory_server.target,
        connector=memory_server.connect,
        timeout=10,
        interceptors=[seen],
        attempt_interceptors=[seen],
    ) as client:
        replies = client.say_hello_bidirectional_streaming(["a", "b", "c"])
        async for reply in replies:
            assert reply.message == "Hello a"
            break
        await replies.aclose()  # type: ignore[attr-defined]
        assert (await client.say_hello()).message == "Hello"  # the client carries on
    call, attempt = seen.records[:2]
    assert (call.status, attempt.status) == (Status.CANCELLED, Status.CANCELLED)
    assert seen.raised == [asyncio.CancelledError, asyncio.CancelledError]


TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


class SetTenant:
    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        TENANT.set("acme")
        await proceed()


class TenantToMetadata:
    async def intercept(self, attempt: ClientAttempt, proceed: Proceed, /) -> None:
        attempt.metadata["x-tenant"] = TENANT.get()
        await proceed()


async def test_a_context_variable_a_call_interceptor_sets_is_seen_by_attempt_interceptors(
    serve: GrpclibServers,
) -> None:
    flaky = Flaky()
    async with GreetClient(
        await serve.start(flaky),
        timeout=10,
        interceptors=[SetTenant()],
        attempt_interceptors=[TenantToMetadata()],
    ) as client:
        await client.say_hello()
    assert flaky.metadata[0]["x-tenant"] == "acme"
    assert TENANT.get() == "none"  # the caller's context is its own


class Forgetful:
    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        return


async def test_an_interceptor_that_neither_proceeds_nor_raises_is_an_error(
    memory_server: MemoryServer,
) -> None:
    async with GreetClient(
        memory_server.target,
        connector=memory_server.connect,
        timeout=10,
        interceptors=[Forgetful()],
    ) as client:
        with pytest.raises(RuntimeError, match="without awaiting proceed"):
            await client.say_hello()


async def test_interceptors_keep_streams_flowing_and_concurrent_calls_apart(
    memory_server: MemoryServer,
) -> None:
    """A bidi caller that sends its next name only after the reply to the last one, through
    both levels of interceptors, and 50 calls at once."""
    outcomes = Outcomes()
    names = ["a", "b", "c"]
    replied = [asyncio.Event() for _ in names]

    async def requests() -> AsyncIterator[str]:
        for index, name in enumerate(names):
            yield name
            await replied[index].wait()

    async with GreetClient(
        memory_server.target,
        connector=memory_server.connect,
        timeout=10,
        interceptors=[outcomes],
        attempt_interceptors=[outcomes],
    ) as client:
        received = []
        async for reply in client.say_hello_bidirectional_streaming(requests()):
            received.append(reply.message)
            replied[len(received) - 1].set()
        assert received == ["Hello a", "Hello b", "Hello c"]
        results = await asyncio.gather(
            *(client.say_hello_client_streaming([str(i)]) for i in range(50))
        )
    assert [result.messages for result in results] == [[f"Hello {i}"] for i in range(50)]
    assert len(outcomes.calls) == len(outcomes.attempts) == 51
    assert {call.status for call in outcomes.calls} == {OK}
