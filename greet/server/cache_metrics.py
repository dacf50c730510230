"""The greeting cache's counters (`--cache-size`) as Prometheus counters.

    greet_cache_hits_total         greetings answered from the cache
    greet_cache_misses_total       greetings the backend had to produce
    greet_cache_coalesced_total    requests that joined backend work under way (single-flight)
    greet_cache_evictions_total    greetings evicted to stay within --cache-size
    greet_cache_expirations_total  greetings dropped after --cache-ttl

The cache (greet.server.cache.CachedGreeter) keeps plain running totals, which cost nothing on
its hot path; `sync()` adds what it counted since the last sync to the exported counters, before
each scrape (or every second in a worker process, see greet.server.metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CACHE_COUNTERS", "CacheCounters", "CacheMetrics"]


class CacheCounters(Protocol):
    """What metrics read from a cache (greet.server.cache.CachedGreeter): running totals."""

    hits: int
    misses: int
    coalesced: int
    evictions: int
    expirations: int


CACHE_COUNTERS = {
    "hits": ("greet_cache_hits_total", "Greetings answered from the cache."),
    "misses": ("greet_cache_misses_total", "Greetings the backend produced (not cached)."),
    "coalesced": (
        "greet_cache_coalesced_total",
        "Requests that joined backend work already under way for the same name.",
    ),
    "evictions": ("greet_cache_evictions_total", "Greetings evicted to stay within the size."),
    "expirations": ("greet_cache_expirations_total", "Greetings dropped after their TTL."),
}
"""CacheCounters attribute -> (metric name, help)."""


class CacheMetrics:
    """The greet_cache_* counters of one cache, in `registry`."""

    def __init__(self, registry: CollectorRegistry, cache: CacheCounters) -> None:
        from prometheus_client import Counter

        self.cache = cache
        self.counters = {
            attribute: Counter(name, doc, registry=registry)
            for attribute, (name, doc) in CACHE_COUNTERS.items()
        }
        self._seen = dict.fromkeys(CACHE_COUNTERS, 0)

    def sync(self) -> None:
        """Add what the cache counted since the last sync to the exported counters."""
        for attribute, counter in self.counters.items():
            total = getattr(self.cache, attribute)
            new = total - self._seen[attribute]
            if new > 0:
                counter.inc(new)
                self._seen[attribute] = total
