"""A whole `bench` run: its load loops (greet.bench._load) in this process or in several, the
progress line, and their results merged into one.

With `processes` > 1 the run is split: each worker process (started with `spawn`) gets a share
of the concurrency, of `--requests`, of `--skip-first` and of the load schedule's rate, connects
on its own, and starts when every process is ready. Their call logs are merged, so every figure
(the percentiles and histogram among them) is of all the calls, exactly as from one process.
Ctrl-C: the processes ignore SIGINT and stop when this one tells them; what they did so far is
reported.

A progress line goes to stderr while it runs: a bar redrawn in place on a terminal, one plain
line per interval otherwise (`progress 1.5s ok=... failed=... rps=... host:port=N ...`). When the
run ends one last update is written: the bar stands at 100% after a run that was not stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, TextIO, TypeVar

from greet.bench._load import Connect, Load, Snapshot, shares
from greet.bench._options import BenchOptions
from greet.bench._result import BenchResult
from greet.bench._schedule import LoadSchedule

__all__ = [
    "BAR_WIDTH",
    "MAX_DEFAULT_PROCESSES",
    "default_processes",
    "merge_results",
    "run_bench",
    "run_loop",
    "split_run",
]

T = TypeVar("T")

BAR_WIDTH = 30
MAX_DEFAULT_PROCESSES = 4


def default_processes(concurrency: int) -> int:
    """One per CPU this process may run on, at most MAX_DEFAULT_PROCESSES and `concurrency`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_PROCESSES, concurrency))


def split_run(options: BenchOptions, parts: int) -> list[BenchOptions]:
    """`options` as `parts` shares (fewer when there is not enough to share)."""
    while parts > 1:
        try:
            return [
                replace(
                    options,
                    concurrency=concurrency,
                    requests=requests,
                    skip_first=skip_first,
                    schedule=scaled(options.schedule, parts),
                )
                for concurrency, requests, skip_first in zip(
                    shares(options.concurrency, parts),
                    shares(options.requests, parts) if options.requests else [None] * parts,
                    shares(options.skip_first, parts),
                    strict=True,
                )
            ]
        except ValueError:  # a share with no calls to count: fewer processes
            parts -= 1
    return [options]


def scaled(schedule: LoadSchedule | None, parts: int) -> LoadSchedule | None:
    if schedule is None:
        return None
    return replace(
        schedule,
        start=schedule.start / parts,
        step=schedule.step / parts,
        end=None if schedule.end is None else schedule.end / parts,
    )


def merge_results(options: BenchOptions, results: list[BenchResult]) -> BenchResult:
    """The processes' results as one run's."""
    merged = BenchResult(options)
    by_target: Counter[str] = Counter()
    for result in results:
        merged.ok += result.ok
        merged.failed += result.failed
        merged.skipped += result.skipped
        merged.interrupted = merged.interrupted or result.interrupted
        merged.elapsed = max(merged.elapsed, result.elapsed)
        merged.cpu += result.cpu
        merged.calls.extend(result.calls)
        by_target.update(result.by_target)
    merged.by_target = dict(by_target)
    return merged


@dataclass
class Progress:
    """Where the progress line reads the figures so far."""

    read: Callable[[], Snapshot]


async def run_bench(
    options: BenchOptions,
    connect: Connect,
    *,
    processes: int = 1,
    progress: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    """Run the benchmark in `processes` processes; progress to `progress` if given; end early
    (the result marked `interrupted`) when `stop` is set."""
    parts = split_run(options, processes)
    if len(parts) == 1:
        return await run_here(options, connect, progress, stop)
    return await run_in_processes(options, parts, connect, progress, stop)


async def run_here(
    options: BenchOptions, connect: Connect, out: TextIO | None, stop: asyncio.Event | None
) -> BenchResult:
    load = Load(options, connect, tls_context(connect))
    progress = Progress(load.snapshot)
    start = time.perf_counter()
    reporter = start_reporter(options, progress, start, out)
    try:
        result = await load.run(stop)
    finally:
        await end_reporter(reporter)
    if out is not None:
        write_progress(options, progress, start, out, final=not result.interrupted)
    return result


def tls_context(connect: Connect) -> Any:
    from greet.client.tls_flags import ssl_context_from_flags

    return ssl_context_from_flags(connect.tls_ca, connect.tls_cert, connect.tls_key)


def start_reporter(
    options: BenchOptions, progress: Progress, start: float, out: TextIO | None
) -> asyncio.Task[None] | None:
    if out is None:
        return None

    async def report() -> None:
        while True:
            await asyncio.sleep(options.progress_interval)
            write_progress(options, progress, start, out, final=False)

    return asyncio.create_task(report())


async def end_reporter(reporter: asyncio.Task[None] | None) -> None:
    if reporter is not None:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter


def write_progress(
    options: BenchOptions, progress: Progress, start: float, out: TextIO, *, final: bool
) -> None:
    """One progress update: the bar redrawn (a terminal) or a plain line. The `final` one, after
    a run that ran to its end, shows it complete."""
    figures = progress.read()
    now = time.perf_counter()
    elapsed = now - start
    since = figures.counting_since
    counted_for = now - since if since is not None else 0.0
    made = figures.skipped + figures.ok + figures.failed
    if options.duration is not None:
        done = 1.0 if final else min(1.0, elapsed / options.duration)
        shown = min(elapsed, options.duration) if final else elapsed
        goal = f"{shown:5.1f}/{options.duration:g}s"
    else:
        assert options.requests is not None
        done = 1.0 if final else min(1.0, made / options.requests)
        goal = f"{made}/{options.requests}"
    rate = figures.ok / counted_for if counted_for > 0 else 0.0
    notes = ""
    if options.schedule is not None:
        notes += f" target={options.schedule.rate_at(elapsed):g}/s"
    if figures.skipped < options.skip_first:
        notes += f" warm-up={figures.skipped}/{options.skip_first}"
    if out.isatty():
        filled = int(done * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        out.write(
            f"\r[{bar}] {done:4.0%} {goal} ok {figures.ok} failed {figures.failed} "
            f"{rate:.0f}/s{notes} "
        )
        if final:
            out.write("\n")
    else:
        targets = "".join(f" {name}={count}" for name, count in sorted(figures.by_target.items()))
        out.write(
            f"progress {elapsed:.1f}s ok={figures.ok} failed={figures.failed} "
            f"rps={rate:.0f}{notes}{targets}\n"
        )
    out.flush()


# --------------------------------------------------------------------------------------------
# Several processes


def process_main(conn: Connection, options: BenchOptions, connect: Connect) -> None:
    """A worker process: its share of the run, on its own event loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    try:
        run_loop(process_run(conn, options, connect))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (a cheaper loop: more calls per CPU second)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def process_run(conn: Connection, options: BenchOptions, connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            message = "stop"
            loop.remove_reader(conn.fileno())
        if message == "stop":
            stop.set()
        go.set()

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking: whole messages
    load = Load(options, connect, tls_context(connect))
    conn.send(("ready", None))
    await go.wait()

    async def report() -> None:
        while True:
            await asyncio.sleep(options.progress_interval / 2)
            conn.send(("progress", load.snapshot()))

    reporter = asyncio.create_task(report())
    try:
        result = await load.run(stop)
    finally:
        await end_reporter(reporter)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
    conn.send(("done", result))


class Worker:
    """The parent's end of a worker process: its messages, in order, and its last snapshot."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.messages: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.snapshot = Snapshot()
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), self._readable)
        os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking: whole messages

    def _readable(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            message = ("gone", None)
        if message[0] == "progress":
            self.snapshot = message[1]
            return
        self.messages.put_nowait(message)

    async def next(self, expected: str) -> Any:
        kind, value = await self.messages.get()
        if kind == expected:
            return value
        if kind == "error":
            raise RuntimeError(f"a bench process failed:\n{value}")
        code = self.process.exitcode
        raise RuntimeError(f"a bench process ended before its {expected} (exit code {code})")

    def send(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(message)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self.conn.close()


def merged_snapshot(workers: list[Worker]) -> Snapshot:
    total = Snapshot()
    by_target: Counter[str] = Counter()
    for worker in workers:
        figures = worker.snapshot
        total.ok += figures.ok
        total.failed += figures.failed
        total.skipped += figures.skipped
        if figures.counting_since is not None:
            since = total.counting_since
            total.counting_since = (
                min(since, figures.counting_since) if since else figures.counting_since
            )
        by_target.update(figures.by_target)
    total.by_target = dict(by_target)
    return total


async def run_in_processes(
    options: BenchOptions,
    parts: list[BenchOptions],
    connect: Connect,
    out: TextIO | None,
    stop: asyncio.Event | None,
) -> BenchResult:
    context = multiprocessing.get_context("spawn")
    workers: list[Worker] = []
    try:
        for share in parts:
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=process_main, args=(child_end, share, connect), daemon=True
            )
            process.start()
            child_end.close()
            workers.append(Worker(process, parent_end))
        for worker in workers:
            await worker.next("ready")
        for worker in workers:
            worker.send("go")
        progress = Progress(lambda: merged_snapshot(workers))
        start = time.perf_counter()
        reporter = start_reporter(options, progress, start, out)
        try:
            results = await gather_results(workers, stop)
        finally:
            await end_reporter(reporter)
        result = merge_results(options, results)
        if out is not None:
            for worker, share_result in zip(workers, results, strict=True):
                worker.snapshot = Snapshot(
                    share_result.ok,
                    share_result.failed,
                    share_result.skipped,
                    share_result.by_target,
                    worker.snapshot.counting_since,
                )
            write_progress(options, progress, start, out, final=not result.interrupted)
        return result
    finally:
        for worker in workers:
            worker.close()
        for worker in workers:
            await asyncio.to_thread(worker.process.join, 5)
            if worker.process.exitcode is None:
                worker.process.kill()


async def gather_results(workers: list[Worker], stop: asyncio.Event | None) -> list[BenchResult]:
    """Every process's result; when `stop` is set first, each is told to stop and report."""
    done = asyncio.ensure_future(asyncio.gather(*(worker.next("done") for worker in workers)))
    if stop is not None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not done.done():
            for worker in workers:
                worker.send("stop")
    results: list[BenchResult] = await done
    return results
