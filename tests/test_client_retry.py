"""GreetClient retries: which statuses, how many attempts, the budget, the overall deadline, and
streaming calls (retried only before the first reply, client/bidi only while replayable).

The server is a real grpclib server on a loopback socket running `Flaky` (tests/support), a
GreetService double that fails a chosen number of attempts with a chosen status; attempts are
counted at the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from flaky_service import Flaky, GrpclibServers
from grpclib.const import Status
from grpclib.events import RecvRequest
from loopback import bound_socket

from greet.client import GreetClient, RetryPolicy, RetryThrottling, RpcError
from greet_service import HelloRequest

QUICK = RetryPolicy(initial_backoff=0.001, max_backoff=0.002)


@pytest.fixture
async def serve() -> AsyncIterator[GrpclibServers]:
    async with GrpclibServers() as servers:
        yield servers


async def test_unavailable_is_retried_until_it_succeeds(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=3)
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        assert (await client.say_hello()).message == "Hello"
    assert flaky.attempts == 4


async def test_attempts_stop_at_max_attempts(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=100)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
    async with GreetClient(await serve.start(flaky), retry=policy, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is Status.UNAVAILABLE
    assert flaky.attempts == 3


@pytest.mark.parametrize(
    "status",
    [
        Status.DEADLINE_EXCEEDED,
        Status.RESOURCE_EXHAUSTED,
        Status.INTERNAL,
        Status.UNKNOWN,
        Status.INVALID_ARGUMENT,
        Status.UNAUTHENTICATED,
    ],
)
async def test_other_statuses_are_not_retried(serve: GrpclibServers, status: Status) -> None:
    flaky = Flaky(failures=1, status=status)
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert caught.value.status is status
    assert flaky.attempts == 1


async def test_budget_exhaustion_stops_retries(serve: GrpclibServers) -> None:
    """10 tokens, retries only above 5: the first failing call is tried 5 times, later ones
    once each, until successes have earned tokens back (0.1 per success)."""
    flaky = Flaky(failures=7)
    policy = RetryPolicy(
        max_attempts=100,
        initial_backoff=0.001,
        max_backoff=0.001,
        throttling=RetryThrottling(max_tokens=10, token_ratio=0.1),
    )
    async with GreetClient(await serve.start(flaky), retry=policy, timeout=10) as client:
        for _ in range(3):
            with pytest.raises(RpcError):
                await client.say_hello()
        assert flaky.attempts == 5 + 1 + 1
        assert (await client.say_hello()).message == "Hello"  # the server has recovered
        assert client.budget.tokens == pytest.approx(10 - 7 + 0.1)


async def test_one_deadline_spans_every_attempt(serve: GrpclibServers) -> None:
    """With attempts to spare, the call still ends at its deadline, and each attempt is sent
    with what is left of that one deadline (grpc-timeout seen by the server shrinks)."""
    flaky = Flaky(failures=10_000)
    policy = RetryPolicy(
        max_attempts=10_000,
        initial_backoff=0.02,
        max_backoff=0.02,
        jitter=0,
        throttling=RetryThrottling(max_tokens=1000, token_ratio=1),
    )
    async with GreetClient(await serve.start(flaky), retry=policy) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello(timeout=0.5)
    # (the deadline ends either during a backoff or during the last attempt)
    assert caught.value.status is Status.DEADLINE_EXCEEDED
    assert 2 <= flaky.attempts < 100
    assert flaky.attempts <= len(flaky.deadlines) <= flaky.attempts + 1
    assert all(d <= 0.5 for d in flaky.deadlines)
    assert flaky.deadlines == sorted(flaky.deadlines, reverse=True)
    assert flaky.deadlines[0] - flaky.deadlines[-1] >= 0.02 * (flaky.attempts - 1)


async def test_server_stream_is_retried_before_the_first_reply(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=2)
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        replies = [r.message async for r in client.say_hello_server_streaming(["a", "b"])]
    assert replies == ["Hello a", "Hello b"]
    assert flaky.attempts == 3


async def test_server_stream_is_not_retried_after_a_reply(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=1, after_first_reply=True)
    received: list[str] = []
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            async for reply in client.say_hello_server_streaming(["a", "b", "c"]):
                received.append(reply.message)
    assert caught.value.status is Status.UNAVAILABLE
    assert received == ["Hello a"]  # no duplicate "Hello a" from a second attempt
    assert flaky.attempts == 1


async def test_bidi_is_not_retried_after_a_reply(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=1, after_first_reply=True)
    received: list[str] = []
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        with pytest.raises(RpcError):
            async for reply in client.say_hello_bidirectional_streaming(["a", "b", "c"]):
                received.append(reply.message)
    assert received == ["Hello a"]
    assert flaky.attempts == 1


async def test_client_stream_from_a_list_is_replayed(serve: GrpclibServers) -> None:
    flaky = Flaky(failures=2)
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        reply = await client.say_hello_client_streaming(["a", HelloRequest(name="b")])
    assert reply.messages == ["Hello a", "Hello b"]
    assert flaky.attempts == 3


async def test_client_stream_from_a_generator_is_replayed_from_its_buffer(
    serve: GrpclibServers,
) -> None:
    pulled: list[str] = []

    def names() -> Iterator[str]:
        for name in ["a", "b", "c"]:
            pulled.append(name)
            yield name

    flaky = Flaky(failures=1)
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        reply = await client.say_hello_client_streaming(names())
    assert reply.messages == ["Hello a", "Hello b", "Hello c"]
    assert pulled == ["a", "b", "c"]  # read once, sent twice
    assert flaky.attempts == 2


async def test_stream_longer_than_the_replay_buffer_is_not_retried(serve: GrpclibServers) -> None:
    async def names() -> AsyncIterator[str]:
        for name in ["a", "b", "c"]:
            yield name

    flaky = Flaky(failures=1)
    policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.001, replay_buffer_messages=2)
    async with GreetClient(await serve.start(flaky), retry=policy, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming(names())
    assert caught.value.status is Status.UNAVAILABLE
    assert flaky.attempts == 1


async def test_bidi_from_an_async_generator_waiting_for_replies_is_replayed(
    serve: GrpclibServers,
) -> None:
    """The first attempt fails while the generator waits for the reply to its first name; the
    second attempt resends that name from the buffer and the same generator carries on."""
    names = ["a", "b", "c"]
    replied = [asyncio.Event() for _ in names]
    pulled: list[str] = []

    async def requests() -> AsyncIterator[str]:
        for index, name in enumerate(names):
            pulled.append(name)
            yield name
            await replied[index].wait()

    flaky = Flaky(failures=1)
    received: list[str] = []
    async with GreetClient(await serve.start(flaky), retry=QUICK, timeout=10) as client:
        async for reply in client.say_hello_bidirectional_streaming(requests()):
            received.append(reply.message)
            replied[len(received) - 1].set()
    assert received == ["Hello a", "Hello b", "Hello c"]
    assert pulled == names
    assert flaky.attempts == 2


async def test_connection_refused_everywhere_is_unavailable_after_the_attempts() -> None:
    with bound_socket() as dead:
        target = f"127.0.0.1:{dead.getsockname()[1]}"
        async with GreetClient(target, retry=QUICK, timeout=10) as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello()
    assert caught.value.status is Status.UNAVAILABLE
    assert "cannot connect" in caught.value.message


async def test_token_is_sent_as_a_bearer_authorization(serve: GrpclibServers) -> None:
    seen: list[str | None] = []

    class Recording(Flaky):
        async def on_request(self, event: RecvRequest) -> None:
            value = event.metadata.get("authorization")
            seen.append(value if isinstance(value, str) else None)

    async with GreetClient(await serve.start(Recording()), token="s3cret", timeout=10) as c:
        await c.say_hello()
    assert seen == ["Bearer s3cret"]


def test_backoff_grows_exponentially_within_the_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.2)
    for failed, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        pauses = [policy.backoff(failed) for _ in range(200)]
        assert all(base * 0.8 <= pause <= base * 1.2 for pause in pauses)
        assert len(set(pauses)) > 1  # jittered, not in lockstep


@pytest.mark.parametrize(
    "settings",
    [{"max_attempts": 0}, {"initial_backoff": 2.0, "max_backoff": 1.0}, {"jitter": 1.0}],
)
def test_bad_retry_policies_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**settings)  # type: ignore[arg-type]
