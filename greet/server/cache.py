"""A bounded, single-flight cache in front of the greeting backend (`greet.greeting.Greeter`).

`CachedGreeter(inner, size, ttl)` is itself a Greeter:

- a greeting is kept for `ttl` seconds after the backend produced it, and at most `size`
  greetings are kept; past that the least recently used one is evicted;
- single-flight: while the backend works on a name, further requests for that name wait for the
  same piece of work instead of starting their own;
- the work runs in its own task, so a caller that is cancelled (its deadline passed, its client
  went away) only stops waiting: the others still get the result. The work itself is cancelled
  only when nobody waits for it any more;
- a backend failure is given to the callers waiting for that piece of work and is never cached:
  the next request asks the backend again;
- `hits`, `misses` (= backend calls), `coalesced` (requests that joined work already under way),
  `evictions` and `expirations` are plain counters for metrics.

The clock is injectable so that TTL behaviour is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from greet.greeting import Greeter

__all__ = ["CachedGreeter", "Clock"]

Clock = Callable[[], float]
"""Seconds from an arbitrary origin that never goes backwards, like `time.monotonic`."""


@dataclass(frozen=True)
class _Entry:
    greeting: str
    expires_at: float


class _Flight:
    """One piece of backend work for one name and how many callers wait for it."""

    def __init__(self, task: asyncio.Task[str]) -> None:
        self.task = task
        self.waiters = 0


class CachedGreeter:
    """A Greeter that remembers `inner`'s greetings (see the module docstring)."""

    def __init__(
        self, inner: Greeter, *, size: int, ttl: float, clock: Clock = time.monotonic
    ) -> None:
        if size < 1:
            raise ValueError("a cache holds at least one greeting (use no cache for size 0)")
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        self.inner = inner
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.evictions = 0
        self.expirations = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def __len__(self) -> int:
        """Greetings held now (expired ones are dropped when next looked up or evicted)."""
        return len(self._entries)

    @property
    def in_flight(self) -> int:
        """Names the backend is working on right now."""
        return len(self._flights)

    async def greet(self, name: str) -> str:
        cached = self._lookup(name)
        if cached is not None:
            self.hits += 1
            return cached
        flight = self._flights.get(name)
        if flight is None:
            self.misses += 1
            flight = _Flight(asyncio.create_task(self._fill(name)))
            self._flights[name] = flight
        else:
            self.coalesced += 1
        flight.waiters += 1
        try:
            # shield: cancelling this caller must not cancel the work others wait for.
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                self._forget(name, flight)

    def _lookup(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if self.clock() >= entry.expires_at:
            del self._entries[name]
            self.expirations += 1
            return None
        self._entries.move_to_end(name)
        return entry.greeting

    async def _fill(self, name: str) -> str:
        """The backend work for one flight; stores the greeting before any waiter resumes."""
        try:
            greeting = await self.inner.greet(name)
        finally:
            flight = self._flights.get(name)
            if flight is not None and flight.task is asyncio.current_task():
                self._forget(name, flight)
        self._store(name, greeting)
        return greeting

    def _forget(self, name: str, flight: _Flight) -> None:
        if self._flights.get(name) is flight:
            del self._flights[name]

    def _store(self, name: str, greeting: str) -> None:
        self._entries[name] = _Entry(greeting, self.clock() + self.ttl)
        self._entries.move_to_end(name)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.evictions += 1
