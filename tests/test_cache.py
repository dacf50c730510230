"""The greeting cache: TTL and LRU limits, single-flight, counters; counted in backend calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable

import pytest
from loopback import bound_socket
from waiting import wait_until

from greet.client import GreetClient
from greet.greeting import greeting_for
from greet.server import GreetServer, ServerConfig
from greet.server.cache import CachedGreeter


class CountingGreeter:
    """A backend that counts its calls per name; `gate` (when given) holds every call."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.gate = gate
        self.fail_next = False

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def greet(self, name: str) -> str:
        self.calls[name] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("backend down")
        return greeting_for(name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def started(coroutine: Awaitable[str]) -> asyncio.Task[str]:
    return asyncio.ensure_future(coroutine)


async def test_repeated_names_reach_the_backend_once() -> None:
    backend = CountingGreeter()
    cache = CachedGreeter(backend, size=10, ttl=60)
    replies = [await cache.greet(name) for name in ["Ann", "Bob", "Ann", "Ann", "Bob"]]
    assert replies == ["Hello Ann", "Hello Bob", "Hello Ann", "Hello Ann", "Hello Bob"]
    assert backend.calls == {"Ann": 1, "Bob": 1}
    assert (cache.hits, cache.misses) == (3, 2)


async def test_entries_expire_after_ttl() -> None:
    backend, clock = CountingGreeter(), FakeClock()
    cache = CachedGreeter(backend, size=10, ttl=30, clock=clock)
    await cache.greet("Ann")
    clock.now += 29.9
    await cache.greet("Ann")
    assert backend.calls["Ann"] == 1
    clock.now += 0.1
    await cache.greet("Ann")
    assert backend.calls["Ann"] == 2
    assert cache.expirations == 1


async def test_least_recently_used_name_is_evicted_at_the_size_limit() -> None:
    backend = CountingGreeter()
    cache = CachedGreeter(backend, size=2, ttl=60)
    await cache.greet("Ann")
    await cache.greet("Bob")
    await cache.greet("Ann")  # Ann is now more recent than Bob
    await cache.greet("Cid")  # evicts Bob
    assert len(cache) == 2
    assert cache.evictions == 1
    await cache.greet("Ann")
    assert backend.calls["Ann"] == 1
    await cache.greet("Bob")
    assert backend.calls["Bob"] == 2


async def test_concurrent_requests_for_one_name_share_one_backend_call() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    cache = CachedGreeter(backend, size=10, ttl=60)
    waiting = [started(cache.greet("Ann")) for _ in range(50)]
    other = started(cache.greet("Bob"))
    await wait_until(lambda: cache.coalesced == 49 and backend.total == 2)
    gate.set()
    assert await asyncio.gather(*waiting) == ["Hello Ann"] * 50
    assert await other == "Hello Bob"
    assert backend.calls == {"Ann": 1, "Bob": 1}
    assert (cache.misses, cache.coalesced, cache.in_flight) == (2, 49, 0)


async def test_cancelled_first_caller_does_not_cancel_the_others() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    cache = CachedGreeter(backend, size=10, ttl=60)
    leader = started(cache.greet("Ann"))
    followers = [started(cache.greet("Ann")) for _ in range(3)]
    await wait_until(lambda: cache.coalesced == 3)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    gate.set()
    assert await asyncio.gather(*followers) == ["Hello Ann"] * 3
    assert backend.calls["Ann"] == 1
    assert await cache.greet("Ann") == "Hello Ann"
    assert backend.calls["Ann"] == 1


async def test_leader_deadline_does_not_reach_the_followers() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    cache = CachedGreeter(backend, size=10, ttl=60)
    leader = started(asyncio.wait_for(cache.greet("Ann"), timeout=0.01))
    follower = started(cache.greet("Ann"))
    with pytest.raises(asyncio.TimeoutError):
        await leader
    gate.set()
    assert await follower == "Hello Ann"
    assert backend.calls["Ann"] == 1


async def test_work_nobody_waits_for_is_cancelled_and_not_cached() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    cache = CachedGreeter(backend, size=10, ttl=60)
    callers = [started(cache.greet("Ann")) for _ in range(2)]
    await wait_until(lambda: cache.coalesced == 1)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert cache.in_flight == 0
    gate.set()
    assert await cache.greet("Ann") == "Hello Ann"
    assert backend.calls["Ann"] == 2
    assert len(cache) == 1


async def test_backend_failure_reaches_its_waiters_and_is_not_cached() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    backend.fail_next = True
    cache = CachedGreeter(backend, size=10, ttl=60)
    callers = [started(cache.greet("Ann")) for _ in range(3)]
    await wait_until(lambda: cache.coalesced == 2)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert await cache.greet("Ann") == "Hello Ann"
    assert backend.calls["Ann"] == 2
    assert cache.in_flight == 0


async def test_zero_ttl_still_coalesces_but_keeps_nothing() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    cache = CachedGreeter(backend, size=10, ttl=0, clock=FakeClock())
    callers = [started(cache.greet("Ann")) for _ in range(5)]
    await wait_until(lambda: cache.coalesced == 4)
    gate.set()
    await asyncio.gather(*callers)
    await cache.greet("Ann")
    assert backend.calls["Ann"] == 2
    assert cache.hits == 0


@pytest.mark.parametrize(("size", "ttl"), [(0, 60.0), (10, -1.0)])
def test_bad_limits_are_rejected(size: int, ttl: float) -> None:
    with pytest.raises(ValueError, match=r"cache holds|ttl"):
        CachedGreeter(CountingGreeter(), size=size, ttl=ttl)


async def test_server_without_cache_size_calls_the_backend_every_time() -> None:
    backend = CountingGreeter()
    server = GreetServer(ServerConfig(cache_size=0), backend=backend)
    assert server.cache is None
    await server.start(sock=bound_socket())
    try:
        async with GreetClient(server.target, timeout=30) as client:
            for _ in range(3):
                await client.say_hello_client_streaming(["Ann"])
    finally:
        await server.stop()
    assert backend.calls["Ann"] == 3


async def test_one_hundred_concurrent_calls_through_a_server_reach_the_backend_once() -> None:
    gate = asyncio.Event()
    backend = CountingGreeter(gate)
    server = GreetServer(ServerConfig(cache_size=100, cache_ttl=60), backend=backend)
    await server.start(sock=bound_socket())
    try:
        cache = server.cache
        assert cache is not None
        async with GreetClient(server.target, timeout=30) as client:

            async def one_call() -> list[str]:
                return [r.message async for r in client.say_hello_server_streaming(["Ann"])]

            calls = [asyncio.ensure_future(one_call()) for _ in range(100)]
            await wait_until(lambda: cache.misses + cache.coalesced == 100)
            gate.set()
            assert await asyncio.gather(*calls) == [["Hello Ann"]] * 100
            assert backend.calls["Ann"] == 1
            reply = await client.say_hello_client_streaming(["Ann", "Bob", "Ann"])
            assert reply.messages == ["Hello Ann", "Hello Bob", "Hello Ann"]
    finally:
        await server.stop()
    assert backend.calls == {"Ann": 1, "Bob": 1}
    assert cache.hits == 2
