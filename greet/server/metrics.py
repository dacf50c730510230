"""ServingMetrics: what one serving process records, and how a scraper gets it.

GreetServer has one when `--metrics-port` is given, or in a worker whose supervisor serves the
metrics (multiprocess mode, greet.server.multiprocess_metrics); with neither, nothing here runs
and no interceptor is added, which keeps the call path free of metric work. It holds

- the registry, with the grpc_server_* metrics (greet.middleware.metrics.ServerMetrics, the
  interceptor GreetServer puts first in its chain) and the cache's greet_cache_* counters;
- with `--metrics-port`: the HTTP endpoint (greet.server.metrics_endpoint) and the standard
  process_* and python_* collectors (greet.server.process_metrics);
- in a worker: nothing listens; the samples go to files the supervisor reads, and this
  process's gc statistics are published with them.

The counters that are brought up to date rather than counted as they happen (the messages of
streams in flight, the cache's totals, a worker's gc statistics) are refreshed before every
scrape, and in a worker every REFRESH_INTERVAL seconds and when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from greet.middleware.metrics import ServerMetrics
from greet.server.cache_metrics import CacheCounters, CacheMetrics
from greet.server.metrics_endpoint import MetricsEndpoint
from greet.server.multiprocess_metrics import in_worker_process

__all__ = ["REFRESH_INTERVAL", "ServingMetrics", "metrics_wanted"]

REFRESH_INTERVAL = 1.0
"""Seconds between a worker's refreshes of the counters that are not counted as they happen."""


def metrics_wanted(metrics_port: int | None) -> bool:
    """Whether a serving process records metrics: `--metrics-port`, or a supervised worker."""
    return metrics_port is not None or in_worker_process()


class ServingMetrics:
    """The metrics of one serving process (see the module docstring)."""

    def __init__(self, *, host: str, port: int | None, cache: CacheCounters | None = None) -> None:
        from prometheus_client import CollectorRegistry

        from greet.server.process_metrics import WorkerGcGauges, add_standard_collectors

        self.registry = CollectorRegistry(auto_describe=True)
        self.grpc = ServerMetrics(self.registry)  # GreetServer initializes its methods
        self._refreshers: list[Callable[[], None]] = [self.grpc.flush]
        if cache is not None:
            self._refreshers.append(CacheMetrics(self.registry, cache).sync)
        self.in_worker = in_worker_process()
        if self.in_worker:
            self._refreshers.append(WorkerGcGauges(self.registry).publish)
        self.endpoint: MetricsEndpoint | None = None
        if port is not None:
            add_standard_collectors(self.registry)
            self.endpoint = MetricsEndpoint(self.registry, host, port, before_scrape=self.refresh)
        self._timer: asyncio.TimerHandle | None = None

    def refresh(self) -> None:
        """Bring the counters that are not counted as they happen up to date."""
        for refresh in self._refreshers:
            refresh()

    async def start(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.start()
        if self.in_worker:
            self._refresh_periodically()

    def _refresh_periodically(self) -> None:
        self.refresh()
        self._timer = asyncio.get_running_loop().call_later(
            REFRESH_INTERVAL, self._refresh_periodically
        )

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.refresh()
        if self.endpoint is not None:
            await self.endpoint.close()
