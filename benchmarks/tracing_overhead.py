"""What tracing costs per unary call: a GreetServer and a GreetClient in one process, off and on.

    python benchmarks/tracing_overhead.py [--calls 5000] [--rounds 5]

Each round runs every mode once, in a fresh process configured only by the OTEL_* environment,
as a user would configure it; the modes alternate within a round so that a busy moment of a
shared machine does not land on one mode alone:

    off        OTEL_TRACES_EXPORTER=none: no interceptor, opentelemetry never imported
    seam       tracing off, but a no-op server interceptor, call interceptor and attempt
               interceptor in the chains where tracing's go: what greet's interceptor chains
               themselves cost (the client runs each chain in a task of its own), for reference
    header     the seam, and its attempt interceptor adds a `traceparent` of its own to each
               attempt: what sending a different header value per call costs the transport
    unsampled  OTEL_TRACES_EXPORTER=console, OTEL_TRACES_SAMPLER=always_off: the interceptors
               run and the trace context is sent, but no span is recorded
    memory     tracing on, the application's own TracerProvider (set before greet's first server
               and client, so greet uses it) batching to the SDK's in-memory exporter: all three
               spans of a call (client call, attempt, server) recorded, export costs ~nothing
    console    OTEL_TRACES_EXPORTER=console with stdout to /dev/null: the three spans recorded,
               batched and exported as indented JSON (a background thread: its CPU counts)

Each process makes `--calls` SayHello calls one after another (after 200 warm-up calls) over
one loopback connection, on uvloop where it is installed, as `python -m greet.server` runs.
Figures are medians over the rounds: microseconds of wall time per call, and of CPU time per
call (`time.process_time`: every thread of the process, the span exporter's included). Both
the server's and the client's work are in each figure. A speed measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from greet.client import ClientAttempt

MODES: dict[str, dict[str, str]] = {
    "off": {"OTEL_TRACES_EXPORTER": "none"},
    "seam": {"OTEL_TRACES_EXPORTER": "none"},
    "header": {"OTEL_TRACES_EXPORTER": "none"},
    "unsampled": {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"},
    "memory": {"OTEL_TRACES_EXPORTER": "console"},
    "console": {"OTEL_TRACES_EXPORTER": "console"},
}
CHILD_FLAGS = {
    "seam": ["--noop"],
    "header": ["--noop", "--header"],
    "memory": ["--memory-provider"],
}


class Noop:
    """An interceptor that only proceeds (server, call or attempt alike)."""

    async def intercept(self, record: object, proceed: Callable[[], Awaitable[None]], /) -> None:
        await proceed()


class TraceparentHeader:
    """An attempt interceptor that sends a new traceparent-shaped value with every attempt."""

    def __init__(self) -> None:
        self.sent = 0

    async def intercept(
        self, attempt: ClientAttempt, proceed: Callable[[], Awaitable[None]], /
    ) -> None:
        self.sent += 1
        attempt.metadata["traceparent"] = f"00-{self.sent:032x}-00f067aa0ba902b7-01"
        await proceed()


WARMUP_CALLS = 200


async def measure(calls: int, noop: bool, header: bool) -> dict[str, float | bool]:
    """In this process: `calls` unary calls through a GreetClient to a GreetServer (with no-op
    interceptors in each chain if `noop`, the attempt's sending a traceparent if `header`)."""
    from greet.client import GreetClient
    from greet.server import GreetServer, ServerConfig
    from greet.telemetry import tracing_enabled

    chain = [Noop()] if noop else []
    attempt_chain = [TraceparentHeader()] if header else chain
    server = GreetServer(ServerConfig(port=0), interceptors=chain)
    await server.start()
    try:
        client = GreetClient(
            server.target, timeout=30, interceptors=chain, attempt_interceptors=attempt_chain
        )
        async with client:
            for _ in range(WARMUP_CALLS):
                await client.say_hello()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await client.say_hello()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await server.stop()
    return {
        "wall_us": wall / calls * 1e6,
        "cpu_us": cpu / calls * 1e6,
        "traced": tracing_enabled(),
        "opentelemetry_imported": "opentelemetry.trace" in sys.modules,
    }


def set_memory_provider() -> None:
    """The application's own global provider: batches to an in-memory exporter."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)


def run_child(mode: str, calls: int, result: Path) -> dict[str, float | bool]:
    env = {**os.environ, **MODES[mode]}
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(result),
            "--calls",
            str(calls),
            *CHILD_FLAGS.get(mode, []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,  # where the console exporter writes
        check=True,
        cwd=ROOT,
    )
    figures: dict[str, float | bool] = json.loads(result.read_text())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--noop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--header", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-provider", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        from greet.server.run import run_event_loop

        if args.memory_provider:
            set_memory_provider()
        args.child.write_text(
            json.dumps(run_event_loop(measure(args.calls, args.noop, args.header)))
        )
        return

    runs: dict[str, list[dict[str, float | bool]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "figures.json"
        for round_number in range(args.rounds):
            for mode in MODES:
                runs[mode].append(run_child(mode, args.calls, result))
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)

    def median(mode: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[mode])

    print(f"{args.calls} unary calls per run, medians over {args.rounds} rounds; load average at")
    print(f"the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print("| mode | traced | opentelemetry imported | wall us/call | CPU us/call | CPU +us |")
    print("|---|---|---|---|---|---|")
    base = median("off", "cpu_us")
    for mode in MODES:
        first = runs[mode][0]
        print(
            f"| {mode} | {first['traced']} | {first['opentelemetry_imported']} "
            f"| {median(mode, 'wall_us'):.1f} | {median(mode, 'cpu_us'):.1f} "
            f"| {median(mode, 'cpu_us') - base:+.1f} |"
        )


if __name__ == "__main__":
    main()
