"""`python -m greet.client bench` against h2load, side by side, on one greet server process.

Does bench measure the server? Each round runs h2load and then bench (the order alternates from
round to round) against the same `python -m greet.server --http2-engine nghttp2` process, unary,
128 calls in flight over 4 connections, and prints each one's rate and the server's CPU per call.
The figure is bench's rate over h2load's, per round, and its median over the rounds.

By default the server is pinned to CPU 0 and each load generator to CPU 1, as
benchmarks/compare.py does (then bench runs one process: it has one CPU); `--no-pin` pins
nothing (bench then runs one process per CPU, at most 4, beside the server). Every command is
printed before it runs.

    python benchmarks/bench_vs_h2load.py --rounds 5 --duration 5
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from h2load import Load, run_h2load  # noqa: E402
from servers import RunningServer, clean_environment, greet_spec, pinned  # noqa: E402
from workloads import WORKLOADS, write_body  # noqa: E402

WORKLOAD = WORKLOADS["unary128"]  # 4 connections x 32 streams
WIDTHS = (5, 13, 7, 7, 12, 7, 7, 13)


def h2load_command(target: str, body: Path, load: Load, cpus: str | None) -> str:
    argv = [
        "h2load", "-t1", f"-c{WORKLOAD.connections}", f"-m{WORKLOAD.streams_per_connection}",
        "-D", f"{load.duration:g}s", f"--warm-up-time={load.warmup:g}s", "-d", str(body),
        *(flag for header in WORKLOAD.headers for flag in ("-H", header)),
        f"http://{target}{WORKLOAD.path}",
    ]  # fmt: skip
    return shlex.join(pinned(argv, cpus))


def bench_argv(target: str, args: argparse.Namespace) -> list[str]:
    argv = [
        sys.executable, "-m", "greet.client", "--target", target, "bench", "--rpc", "unary",
        "--concurrency", str(WORKLOAD.in_flight), "--connections", str(WORKLOAD.connections),
        "--duration", f"{args.duration:g}", "--skip-first", str(args.skip_first),
        "--json", "--no-progress",
    ]  # fmt: skip
    if args.processes:
        argv += ["--processes", str(args.processes)]
    return pinned(argv, args.load_cpus)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_h2load_once(
    server: RunningServer, body: Path, load: Load, cpus: str | None
) -> tuple[float, float, float]:
    """h2load's rate, the server's CPU microseconds per call, h2load's own (about: its CPU over
    the warm-up and the window, over the calls of both at the window's rate)."""
    cpu = children_cpu()
    measured = run_h2load(server, WORKLOAD, load, body, cpus)
    calls = measured.calls_per_second * (load.duration + load.warmup)
    own = (children_cpu() - cpu) / max(1.0, calls) * 1e6
    return measured.calls_per_second, measured.cpu_per_call_us, own


def run_bench(server: RunningServer, args: argparse.Namespace) -> tuple[float, float, float]:
    """bench's rate, the server's CPU microseconds per call meanwhile, and bench's own."""
    argv = bench_argv(server.target, args)
    cpu = server.cpu_seconds()
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=clean_environment(), check=False
    )
    cpu = server.cpu_seconds() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    calls = result["ok"] + result["skipped"]
    return float(result["rps"]), cpu / max(1, calls) * 1e6, result["client_cpu_us_per_call"]


def shown(command: str) -> str:
    return command.replace(sys.executable, "python")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="h2load's warm-up seconds")
    parser.add_argument("--skip-first", type=int, default=2000, help="bench's warm-up calls")
    parser.add_argument("--processes", type=int, default=0, help="bench --processes (0: its own)")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true", help="pin neither server nor load")
    parser.add_argument("--engine", default="nghttp2", choices=("nghttp2", "h2"))
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        parser.error("h2load not found: install nghttp2-client")
    if args.no_pin:
        args.server_cpus = args.load_cpus = None
    load = Load(WORKLOAD.connections, WORKLOAD.streams_per_connection, args.duration, args.warmup)
    server = RunningServer(greet_spec(args.engine), args.server_cpus)
    rows: list[tuple[float, float, float, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="greet-bench-vs-h2load-") as tmp:
            body = write_body(WORKLOAD, Path(tmp))
            print(f"server: {server.command}   (PORT {server.port})")
            print(f"h2load: {h2load_command(server.target, body, load, args.load_cpus)}")
            print(f"bench:  {shown(shlex.join(bench_argv(server.target, args)))}")
            print("CPU us/call: the server's, then the load generator's own")
            heads = ("round", "h2load req/s", "server", "h2load", "bench req/s", "server", "bench",
                     "bench/h2load")  # fmt: skip
            print(" ".join(f"{head:>{width}}" for head, width in zip(heads, WIDTHS, strict=True)))
            for round_number in range(1, args.rounds + 1):
                figures: dict[str, tuple[float, float, float]] = {}
                order = ("h2load", "bench") if round_number % 2 else ("bench", "h2load")
                for tool in order:
                    if tool == "h2load":
                        figures[tool] = run_h2load_once(server, body, load, args.load_cpus)
                    else:
                        figures[tool] = run_bench(server, args)
                    time.sleep(0.2)
                h2, h2_server, h2_own = figures["h2load"]
                bench, bench_server, bench_own = figures["bench"]
                rows.append((h2, h2_server, h2_own, bench, bench_server, bench_own))
                print(f"{round_number:>5} {h2:>13.0f} {h2_server:>7.1f} {h2_own:>7.1f} "
                      f"{bench:>12.0f} {bench_server:>7.1f} {bench_own:>7.1f} "
                      f"{bench / h2:>13.2f}", flush=True)  # fmt: skip
    finally:
        server.stop()
    ratios = [row[3] / row[0] for row in rows]
    print(
        f"median: h2load {statistics.median(row[0] for row in rows):.0f} req/s, "
        f"bench {statistics.median(row[3] for row in rows):.0f} req/s "
        f"(its own CPU {statistics.median(row[5] for row in rows):.1f} us/call, the server's "
        f"{statistics.median(row[4] for row in rows):.1f}), "
        f"bench/h2load {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{ratio:.2f}" for ratio in ratios)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
