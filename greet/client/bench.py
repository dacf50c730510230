"""`python -m greet.client bench`: load a GreetService with one call kind and report on it.

`concurrency` workers share one GreetClient (so balancing, pooling and retries apply as for any
user) and call back to back for `duration` seconds or until `requests` calls were made. A progress
line goes to stderr while it runs (a redrawn bar on a terminal, one plain line per interval
otherwise, with the calls served per endpoint so far); then a summary with the rate, latency
percentiles and a latency histogram, or with `--json` one JSON object:

    {"ok": int, "failed": int, "rps": float,
     "latency_ms": {"p50": float, "p90": float, "p99": float, "max": float},
     "errors": {"STATUS": int}, "by_target": {"host:port": int}}

`rps` counts successful calls per second; latencies are of successful calls (all attempts
included); `by_target` counts successful calls per endpoint that served them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from generated.greet_service import HelloRequest, NamesList
from greet.client.core import GreetClient
from greet.errors import RpcError

__all__ = ["RPC_KINDS", "BenchOptions", "BenchResult", "format_summary", "run_bench"]

RPC_KINDS = ("unary", "server-stream", "client-stream", "bidi")
BAR_WIDTH = 30


@dataclass(frozen=True)
class BenchOptions:
    """What to run: the call kind, for how long or how many, how many at once, message counts."""

    rpc: str = "unary"
    duration: float | None = None
    requests: int | None = None
    concurrency: int = 16
    names: int = 10
    progress_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.rpc not in RPC_KINDS:
            raise ValueError(f"rpc must be one of {', '.join(RPC_KINDS)}")
        if (self.duration is None) == (self.requests is None):
            raise ValueError("give either a duration or a number of requests")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.concurrency < 1 or self.names < 0 or self.progress_interval <= 0:
            raise ValueError("concurrency >= 1, names >= 0 and progress interval > 0")


@dataclass
class BenchResult:
    """What a run measured."""

    options: BenchOptions
    elapsed: float = 0.0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    by_target: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile of the successful calls' latencies, in milliseconds."""
        ordered = self.latencies
        if not ordered:
            return 0.0
        rank = max(1, math.ceil(fraction * len(ordered)))
        return ordered[rank - 1] * 1000

    def to_json(self) -> dict[str, object]:
        self.latencies.sort()
        return {
            "ok": self.ok,
            "failed": self.failed,
            "rps": round(self.rps, 1),
            "latency_ms": {
                "p50": round(self.percentile_ms(0.50), 3),
                "p90": round(self.percentile_ms(0.90), 3),
                "p99": round(self.percentile_ms(0.99), 3),
                "max": round(self.percentile_ms(1.0), 3),
            },
            "errors": dict(sorted(self.errors.items())),
            "by_target": dict(sorted(self.by_target.items())),
        }


def make_call(client: GreetClient, options: BenchOptions) -> Callable[[], Awaitable[object]]:
    names = [f"name-{i}" for i in range(options.names)]
    names_list = NamesList(names=names)
    requests = [HelloRequest(name=name) for name in names]

    async def unary() -> object:
        return await client.say_hello()

    async def server_stream() -> object:
        async for _ in client.say_hello_server_streaming(names_list):
            pass
        return None

    async def client_stream() -> object:
        return await client.say_hello_client_streaming(requests)

    async def bidi() -> object:
        async for _ in client.say_hello_bidirectional_streaming(requests):
            pass
        return None

    calls = {
        "unary": unary,
        "server-stream": server_stream,
        "client-stream": client_stream,
        "bidi": bidi,
    }
    return calls[options.rpc]


async def run_bench(
    client: GreetClient, options: BenchOptions, progress: TextIO | None = None
) -> BenchResult:
    """Run the benchmark; write progress to `progress` if given."""
    result = BenchResult(options)
    call = make_call(client, options)
    served_before = Counter(client.served)
    latencies = result.latencies
    errors = result.errors
    clock = time.perf_counter
    start = clock()
    end = start + options.duration if options.duration is not None else math.inf
    remaining = options.requests if options.requests is not None else -1

    async def worker() -> None:
        nonlocal remaining
        while True:
            if remaining == 0:
                return
            began = clock()
            if began >= end:
                return
            remaining -= 1
            try:
                await call()
            except RpcError as error:
                result.failed += 1
                errors[error.status.name] += 1
            else:
                result.ok += 1
                latencies.append(clock() - began)

    reporter = None
    if progress is not None:
        reporter = asyncio.create_task(
            report_progress(client, result, start, served_before, progress)
        )
    try:
        await asyncio.gather(*(worker() for _ in range(options.concurrency)))
    finally:
        result.elapsed = clock() - start
        if reporter is not None:
            reporter.cancel()
            if progress is not None and progress.isatty():
                progress.write("\n")
                progress.flush()
    result.by_target = served_since(client, served_before)
    return result


def served_since(client: GreetClient, before: Counter[str]) -> dict[str, int]:
    return {
        name: count - before[name] for name, count in client.served.items() if count > before[name]
    }


async def report_progress(
    client: GreetClient,
    result: BenchResult,
    start: float,
    served_before: Counter[str],
    out: TextIO,
) -> None:
    """A bar redrawn in place on a terminal; otherwise one plain line per interval."""
    options = result.options
    terminal = out.isatty()
    while True:
        await asyncio.sleep(options.progress_interval)
        elapsed = time.perf_counter() - start
        if options.duration is not None:
            done = min(1.0, elapsed / options.duration)
            goal = f"{elapsed:5.1f}/{options.duration:g}s"
        else:
            assert options.requests is not None
            done = min(1.0, (result.ok + result.failed) / options.requests)
            goal = f"{result.ok + result.failed}/{options.requests}"
        rate = result.ok / elapsed if elapsed > 0 else 0.0
        if terminal:
            filled = int(done * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            out.write(f"\r[{bar}] {goal} ok {result.ok} failed {result.failed} {rate:.0f}/s ")
        else:
            served = served_since(client, served_before)
            targets = " ".join(f"{name}={count}" for name, count in sorted(served.items()))
            out.write(
                f"progress {elapsed:.1f}s ok={result.ok} failed={result.failed} "
                f"rps={rate:.0f} {targets}\n"
            )
        out.flush()


def histogram_lines(latencies: list[float], buckets: int = 10) -> list[str]:
    """A text histogram of latencies (sorted, seconds) over log-spaced millisecond buckets."""
    if not latencies:
        return []
    low, high = latencies[0] * 1000, latencies[-1] * 1000
    low = max(low, 0.001)
    if high <= low * 1.0001:
        return [f"  {low:9.3f} ms | {'#' * 40} {len(latencies)}"]
    ratio = (high / low) ** (1 / buckets)
    edges = [low * ratio**i for i in range(buckets + 1)]
    counts = [0] * buckets
    for latency in latencies:
        ms = latency * 1000
        index = min(buckets - 1, max(0, int(math.log(max(ms, low) / low, ratio))))
        counts[index] += 1
    widest = max(counts)
    lines = []
    for index, count in enumerate(counts):
        bar = "#" * (round(40 * count / widest) if widest else 0)
        lines.append(f"  {edges[index]:9.3f} - {edges[index + 1]:9.3f} ms | {bar} {count}")
    return lines


def messages_rate(result: BenchResult) -> str:
    """`, N messages/s` for streaming kinds: the names streamed per call, either way."""
    if result.options.rpc == "unary":
        return ""
    return f", {result.rps * result.options.names:.0f} messages/s"


def format_summary(result: BenchResult, connections: int) -> str:
    """The human-readable report."""
    result.latencies.sort()
    options = result.options
    summary = result.to_json()
    latency = summary["latency_ms"]
    assert isinstance(latency, dict)
    lines = [
        f"Summary: {options.rpc}, {result.elapsed:.2f} s, concurrency {options.concurrency}, "
        f"{connections} connection(s) per endpoint",
        f"  ok:      {result.ok}",
        f"  failed:  {result.failed}",
        f"  rate:    {result.rps:.1f} calls/s" + messages_rate(result),
        "Latency (ms): " + "  ".join(f"{key} {value:.3f}" for key, value in latency.items()),
        "Histogram:",
        *histogram_lines(result.latencies),
    ]
    if result.errors:
        lines.append("Errors:")
        lines += [f"  {status}: {count}" for status, count in sorted(result.errors.items())]
    lines.append("Served by:")
    lines += [f"  {name}: {count}" for name, count in sorted(result.by_target.items())]
    return "\n".join(lines)


def to_json_line(result: BenchResult) -> str:
    return json.dumps(result.to_json())
