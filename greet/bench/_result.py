"""What a `bench` run measured, and the figures every report format is made of.

Each counted call leaves a `CallRecord`. Latency figures are of the successful calls (all
attempts of a retried call included); `rps` is successful calls per second; `messages` counts
the messages streamed: the replies of server-stream and bidi calls, the requests of client-stream
calls, one per unary call.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from greet.bench._options import BenchOptions

__all__ = [
    "HISTOGRAM_BUCKETS",
    "BenchResult",
    "CallLog",
    "CallRecord",
    "HistogramBucket",
    "LatencySummary",
    "latency_histogram",
]

HISTOGRAM_BUCKETS = 20


class CallRecord(NamedTuple):
    """One counted call: when it started (seconds after counting began), how long it took,
    its status name (`OK` or the error's), the messages it streamed, and the error text."""

    start: float
    latency: float
    status: str
    messages: int
    error: str = ""


class CallLog:
    """The counted calls, some 30 bytes each (a long run at thousands of calls per second
    keeps every call for the CSV report): columns of numbers, and each status name and error
    text stored once."""

    def __init__(self) -> None:
        self._starts = array("d")
        self._latencies = array("d")
        self._statuses = array("B")
        self._messages = array("L")
        self._errors = array("L")
        self._status_names: list[str] = []
        self._error_texts: list[str] = [""]
        self._status_index: dict[str, int] = {}
        self._error_index: dict[str, int] = {"": 0}

    def append(self, call: CallRecord) -> None:
        self.add(call.start, call.latency, call.status, call.messages, call.error)

    def add(self, start: float, latency: float, status: str, messages: int, error: str) -> None:
        """`append` without a CallRecord to build: one call's fields."""
        status_index = self._status_index.get(status)
        if status_index is None:
            status_index = self._index_of_status(status)
        self._starts.append(start)
        self._latencies.append(latency)
        self._statuses.append(status_index)
        self._messages.append(messages)
        self._errors.append(self._index_of_error(error) if error else 0)

    def extend(self, other: CallLog) -> None:
        """Add `other`'s calls after these."""
        statuses = [self._index_of_status(name) for name in other._status_names]
        errors = [self._index_of_error(text) for text in other._error_texts]
        self._starts.extend(other._starts)
        self._latencies.extend(other._latencies)
        self._statuses.extend(statuses[index] for index in other._statuses)
        self._messages.extend(other._messages)
        self._errors.extend(errors[index] for index in other._errors)

    def _index_of_status(self, name: str) -> int:
        status = self._status_index.get(name)
        if status is None:
            status = self._status_index[name] = len(self._status_names)
            self._status_names.append(name)
        return status

    def _index_of_error(self, text: str) -> int:
        error = self._error_index.get(text)
        if error is None:
            error = self._error_index[text] = len(self._error_texts)
            self._error_texts.append(text)
        return error

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: int) -> CallRecord:
        return CallRecord(
            self._starts[index],
            self._latencies[index],
            self._status_names[self._statuses[index]],
            self._messages[index],
            self._error_texts[self._errors[index]],
        )

    def __iter__(self) -> Iterator[CallRecord]:
        """The calls in the order they ended."""
        return (self[index] for index in range(len(self)))

    def in_start_order(self) -> Iterator[CallRecord]:
        starts = self._starts
        return (self[index] for index in sorted(range(len(self)), key=starts.__getitem__))

    def ok_latencies(self) -> list[float]:
        """The successful calls' latencies in seconds, sorted."""
        ok = self._status_index.get("OK")
        statuses, latencies = self._statuses, self._latencies
        return sorted(latencies[i] for i in range(len(self)) if statuses[i] == ok)


@dataclass
class BenchResult:
    """A run's counted calls (`ok` and `failed` kept live for the progress line); `skipped` is
    how many warm-up calls (`--skip-first`) were made and left out; `interrupted` is set when
    the run was stopped (Ctrl-C) before its end."""

    options: BenchOptions
    elapsed: float = 0.0
    cpu: float = 0.0  # CPU seconds the bench's own processes spent while counting
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    calls: CallLog = field(default_factory=CallLog)
    by_target: dict[str, int] = field(default_factory=dict)

    @property
    def counted(self) -> int:
        return self.ok + self.failed

    @property
    def rps(self) -> float:
        """Successful calls per second."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_per_call(self) -> float:
        """The bench's own CPU seconds per counted call: what a call costs the load generator
        (near the server's cost, the bench is measuring itself)."""
        return self.cpu / self.counted if self.counted else 0.0

    @property
    def messages_per_second(self) -> float:
        messages = sum(call.messages for call in self.calls if call.status == "OK")
        return messages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def status_codes(self) -> Counter[str]:
        """Calls by status, OK included."""
        return Counter(call.status for call in self.calls)

    @property
    def errors(self) -> Counter[str]:
        """Failed calls by status."""
        return Counter(call.status for call in self.calls if call.status != "OK")

    @property
    def error_messages(self) -> Counter[str]:
        """Failed calls by error text (`STATUS: details`)."""
        return Counter(call.error for call in self.calls if call.status != "OK")

    def ok_latencies(self) -> list[float]:
        """The successful calls' latencies in seconds, sorted."""
        return self.calls.ok_latencies()


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures of the successful calls, in milliseconds (`count` 0 when there are none:
    then the figures are not available, and `as_dict` gives None for each).

    Percentiles are nearest-rank; `stddev` is the population standard deviation."""

    count: int
    min: float
    mean: float
    stddev: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies: list[float]) -> LatencySummary:
        """From sorted latencies in seconds."""
        if not latencies:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ms = [latency * 1000 for latency in latencies]

        def rank(fraction: float) -> float:
            return ms[max(1, math.ceil(fraction * len(ms))) - 1]

        return cls(
            count=len(ms),
            min=ms[0],
            mean=statistics.fmean(ms),
            stddev=statistics.pstdev(ms),
            p50=rank(0.50),
            p90=rank(0.90),
            p95=rank(0.95),
            p99=rank(0.99),
            max=ms[-1],
        )

    def as_dict(self) -> dict[str, float | None]:
        """The figures, rounded to microseconds, in the order of the `--json` `latency_ms`;
        None for each when no call succeeded."""
        figures = {
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
            "min": self.min,
            "mean": self.mean,
            "stddev": self.stddev,
        }
        if not self.count:
            return dict.fromkeys(figures)
        return {name: round(value, 3) for name, value in figures.items()}


class HistogramBucket(NamedTuple):
    """The number of successful `calls` with `low_ms <= latency < high_ms` (the last bucket
    includes its top)."""

    low_ms: float
    high_ms: float
    calls: int


def latency_histogram(
    latencies: list[float], buckets: int = HISTOGRAM_BUCKETS
) -> list[HistogramBucket]:
    """Log-spaced buckets from the fastest to the slowest call (sorted latencies, seconds);
    every call is in exactly one bucket, empty buckets included."""
    if not latencies:
        return []
    low = max(latencies[0] * 1000, 0.001)
    high = latencies[-1] * 1000
    if high <= low * 1.0001:
        return [HistogramBucket(low, high, len(latencies))]
    ratio = (high / low) ** (1 / buckets)
    edges = [low * ratio**index for index in range(buckets)] + [high]
    counts = [0] * buckets
    for latency in latencies:
        index = bisect.bisect_right(edges, latency * 1000) - 1
        counts[min(buckets - 1, max(0, index))] += 1
    return [HistogramBucket(edges[i], edges[i + 1], counts[i]) for i in range(buckets)]
