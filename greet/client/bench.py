"""`python -m greet.client bench`: load a GreetService with one call kind and measure it.

`concurrency` workers share one GreetClient (so balancing, pooling and retries apply as for any
user) and call back to back, or no faster than a load schedule (greet.client.bench_schedule)
allows, for `duration` seconds or until `requests` calls were made. The first `skip_first`
calls are a warm-up: they run first, at the same concurrency and rate, and are left out of every
figure (their time, latencies and per-endpoint counts). What each call sends comes from
greet.client.bench_data. A progress line goes to stderr while it runs (a redrawn bar on a
terminal, one plain line per interval otherwise, with the calls served per endpoint so far).
When `stop` is set (Ctrl-C) the calls in flight are cancelled and the result so far is returned,
marked `interrupted`. The report formats are in greet.client.bench_report.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from greet.client import GreetClient
from greet.client.bench_options import DEFAULT_DURATION, RPC_KINDS, BenchOptions
from greet.client.bench_result import BenchResult, CallRecord
from greet.client.bench_schedule import Pacer
from greet.errors import RpcError
from greet_service import HelloRequest, NamesList

__all__ = [
    "DEFAULT_DURATION",
    "RPC_KINDS",
    "BenchOptions",
    "BenchResult",
    "make_call",
    "run_bench",
]

BAR_WIDTH = 30

Call = Callable[[], Awaitable[int]]
"""One call of the benchmarked kind; returns the number of messages it streamed."""


def make_call(client: GreetClient, options: BenchOptions) -> Call:
    data = options.data
    names_lists = itertools.cycle([NamesList(names=list(names)) for names in data.names_lists])
    stream = [HelloRequest(name=name) for name in data.stream]

    async def unary() -> int:
        await client.say_hello()
        return 1

    async def server_stream() -> int:
        replies = 0
        async for _ in client.say_hello_server_streaming(next(names_lists)):
            replies += 1
        return replies

    async def client_stream() -> int:
        await client.say_hello_client_streaming(stream)
        return len(stream)

    async def bidi() -> int:
        replies = 0
        async for _ in client.say_hello_bidirectional_streaming(stream):
            replies += 1
        return replies

    calls: dict[str, Call] = {
        "unary": unary,
        "server-stream": server_stream,
        "client-stream": client_stream,
        "bidi": bidi,
    }
    return calls[options.rpc]


@dataclass
class Counting:
    """Where counting started: the endpoints' served counts then, and when (None: not yet)."""

    served_before: Counter[str]
    since: float | None = None


@dataclass
class Phase:
    """The warm-up (not counted, a fixed number of calls) or the counted part of a run."""

    counted: bool
    to_start: int  # calls still to start in this phase; -1: no limit
    origin: float  # clock time the phase's record start times are measured from


async def run_bench(
    client: GreetClient,
    options: BenchOptions,
    progress: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    """Run the benchmark; write progress to `progress` if given; end early when `stop` is set."""
    result = BenchResult(options)
    call = make_call(client, options)
    pacer = Pacer(options.schedule) if options.schedule is not None else None
    clock = time.perf_counter
    run_start = clock()
    end = run_start + options.duration if options.duration is not None else math.inf
    remaining = options.requests if options.requests is not None else -1
    counting = Counting(Counter(client.served))
    counted: Phase | None = None

    async def worker(phase: Phase) -> None:
        nonlocal remaining
        while remaining != 0 and phase.to_start != 0:
            remaining -= 1
            phase.to_start -= 1
            if pacer is not None and not await pacer.wait(end):
                return  # the next start the schedule allows is after the end
            began = clock()
            if began >= end:
                return
            try:
                messages = await call()
            except RpcError as error:
                status, text, messages = error.status.name, str(error), 0
            else:
                status, text = "OK", ""
            if not phase.counted:
                result.skipped += 1
                continue
            latency = clock() - began
            result.calls.append(CallRecord(began - phase.origin, latency, status, messages, text))
            if status == "OK":
                result.ok += 1
            else:
                result.failed += 1

    async def run_phases() -> None:
        nonlocal counted
        if options.skip_first:
            warm_up = Phase(counted=False, to_start=options.skip_first, origin=run_start)
            await asyncio.gather(*(worker(warm_up) for _ in range(options.concurrency)))
        counted = Phase(counted=True, to_start=-1, origin=clock())
        counting.served_before = Counter(client.served)
        counting.since = counted.origin
        await asyncio.gather(*(worker(counted) for _ in range(options.concurrency)))

    reporter = None
    if progress is not None:
        reporter = asyncio.create_task(
            report_progress(client, result, run_start, counting, pacer, progress)
        )
    try:
        result.interrupted = await run_until_stopped(run_phases(), stop)
    finally:
        finished = clock()
        if reporter is not None:
            reporter.cancel()
            if progress is not None and progress.isatty():
                progress.write("\n")
                progress.flush()
    if counted is not None:
        result.elapsed = finished - counted.origin
        result.by_target = served_since(client, counting.served_before)
    return result


async def run_until_stopped(work: Awaitable[None], stop: asyncio.Event | None) -> bool:
    """Run `work` to its end, or cancel it when `stop` is set first; True if it was stopped."""
    task = asyncio.ensure_future(work)
    if stop is None:
        await task
        return False
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():
        task.result()  # its exception, if it raised one
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


def served_since(client: GreetClient, before: Counter[str]) -> dict[str, int]:
    return {
        name: count - before[name] for name, count in client.served.items() if count > before[name]
    }


async def report_progress(
    client: GreetClient,
    result: BenchResult,
    start: float,
    counting: Counting,
    pacer: Pacer | None,
    out: TextIO,
) -> None:
    """A bar redrawn in place on a terminal; otherwise one plain line per interval."""
    options = result.options
    terminal = out.isatty()
    while True:
        await asyncio.sleep(options.progress_interval)
        now = time.perf_counter()
        elapsed = now - start
        counted_for = now - counting.since if counting.since is not None else 0.0
        made = result.skipped + result.counted
        if options.duration is not None:
            done = min(1.0, elapsed / options.duration)
            goal = f"{elapsed:5.1f}/{options.duration:g}s"
        else:
            assert options.requests is not None
            done = min(1.0, made / options.requests)
            goal = f"{made}/{options.requests}"
        rate = result.ok / counted_for if counted_for > 0 else 0.0
        notes = ""
        if pacer is not None:
            notes += f" target={pacer.target_rate():g}/s"
        if result.skipped < options.skip_first:
            notes += f" warm-up={result.skipped}/{options.skip_first}"
        if terminal:
            filled = int(done * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            out.write(
                f"\r[{bar}] {goal} ok {result.ok} failed {result.failed} {rate:.0f}/s{notes} "
            )
        else:
            served = served_since(client, counting.served_before)
            targets = "".join(f" {name}={count}" for name, count in sorted(served.items()))
            out.write(
                f"progress {elapsed:.1f}s ok={result.ok} failed={result.failed} "
                f"rps={rate:.0f}{notes}{targets}\n"
            )
        out.flush()
