"""The standard process_* and python_* metrics, in one process and across worker processes.

(prometheus_client is imported here: import this module only where metrics are on.)

One serving process (`--metrics-port` without `--workers`): prometheus_client's own collectors,
unlabelled, as every Python exporter writes them: process_cpu_seconds_total,
process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
process_max_fds, process_start_time_seconds (from /proc: Linux only), python_info and
python_gc_{objects_collected,objects_uncollectable,collections}_total{generation}.

Several workers (`--workers N`): prometheus_client's multiprocess mode carries none of these,
so the supervisor's /metrics has them for every process, each series with a `pid` label:

- process_*: the supervisor reads /proc/<pid> of itself and of each live worker at scrape time,
  so a worker's figures are current even while its event loop is busy;
- python_gc_*: a worker cannot be read from outside, so each publishes its `gc.get_stats()` at
  start and every second (WorkerGcGauges) into the multiprocess directory; the supervisor
  exports them as the usual counters, with its own;
- python_info: once (every process runs the same interpreter).

The series of a worker that exited disappear with it (its pid is no longer live); its calls
stay counted in the grpc_server_* sums. `sum(process_resident_memory_bytes)` is the memory of
the whole server in both modes.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = [
    "GC_FAMILIES",
    "PerProcessCollector",
    "WorkerGcGauges",
    "add_standard_collectors",
]

GC_FAMILIES = {
    "python_gc_objects_collected": "Objects collected during gc",
    "python_gc_objects_uncollectable": "Uncollectable objects found during GC",
    "python_gc_collections": "Number of times this generation was collected",
}
"""The python_gc_* counter families (without `_total`) and their help, as prometheus_client's
GCCollector writes them."""

GC_STATS = {
    "python_gc_objects_collected": "collected",
    "python_gc_objects_uncollectable": "uncollectable",
    "python_gc_collections": "collections",
}
"""Family -> its key in `gc.get_stats()`."""


def add_standard_collectors(registry: CollectorRegistry) -> None:
    """process_*, python_info and python_gc_* of this process, into `registry`."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class WorkerGcGauges:
    """In a worker process: this process's gc statistics, published into the multiprocess
    directory as gauges of mode "all" (one series per pid), for PerProcessCollector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauges = {
            family: Gauge(
                f"{family}_total", doc, ["generation"], multiprocess_mode="all", registry=registry
            )
            for family, doc in GC_FAMILIES.items()
        }

    def publish(self) -> None:
        for generation, stats in enumerate(gc.get_stats()):
            for family, gauge in self.gauges.items():
                gauge.labels(str(generation)).set(stats[GC_STATS[family]])


class PerProcessCollector(Collector):
    """The supervisor's collector: the workers' samples (prometheus_client's
    MultiProcessCollector over `directory`) plus process_* and python_* per pid (see the module
    docstring). `worker_pids()` names the live workers."""

    def __init__(self, directory: str, worker_pids: Callable[[], Iterable[int]]) -> None:
        self.workers = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self.worker_pids = worker_pids
        self.platform = PlatformCollector(registry=None)
        self._process_collectors: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterator[Metric]:
        pids = [os.getpid(), *self.worker_pids()]
        live = {str(pid) for pid in pids}
        gc_families = {
            family: Metric(family, doc, "counter") for family, doc in GC_FAMILIES.items()
        }
        for metric in self.workers.collect():  # type: ignore[no-untyped-call]
            family = metric.name.removesuffix("_total")
            if metric.type == "gauge" and family in gc_families:
                for sample in metric.samples:
                    if sample.labels.get("pid") in live:
                        gc_families[family].add_sample(sample.name, sample.labels, sample.value)
            else:
                yield metric
        own = str(os.getpid())
        for generation, stats in enumerate(gc.get_stats()):
            labels = {"generation": str(generation), "pid": own}
            for family, metric in gc_families.items():
                metric.add_sample(f"{family}_total", labels, stats[GC_STATS[family]])
        yield from gc_families.values()
        yield from self._process_metrics(pids)
        yield from self.platform.collect()

    def _process_metrics(self, pids: list[int]) -> Iterable[Metric]:
        """process_* of each pid, from /proc, merged into one family per name."""
        for gone in self._process_collectors.keys() - set(pids):
            del self._process_collectors[gone]
        families: dict[str, Metric] = {}
        for pid in pids:
            collector = self._process_collectors.get(pid)
            if collector is None:
                collector = self._process_collectors[pid] = ProcessCollector(
                    pid=functools.partial(int, pid), registry=None
                )
            for metric in collector.collect():
                merged = families.get(metric.name)
                if merged is None:
                    merged = families[metric.name] = Metric(
                        metric.name, metric.documentation, metric.type
                    )
                for sample in metric.samples:
                    merged.add_sample(sample.name, with_pid(sample, pid), sample.value)
        return families.values()


def with_pid(sample: Sample, pid: int) -> dict[str, str]:
    return {**sample.labels, "pid": str(pid)}
