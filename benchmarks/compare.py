"""Side-by-side benchmark: greet (grpclib + betterproto) against grpcio's asyncio server.

    python benchmarks/compare.py --rounds 5 --duration 5

Each server runs pinned to one core (`taskset -c 0`), the load generator (h2load, replaying gRPC
request bodies) to the other; the servers are driven in alternation (greet, grpcio, [grpc-go],
greet, ...) for every workload in every round, and the medians over the rounds are compared.
Then, unless switched off: bidi ping-pong (a client waiting for each reply, which h2load cannot
do), peak RSS idle and with 1,000 open bidi streams, and `--workers 2` against grpcio on the whole
machine (nothing pinned). Writes a Markdown report (default benchmarks/RESULTS.md).

Benchmark-only dependencies: the `bench` dependency group (grpcio, grpcio-tools) and h2load
(Debian package nghttp2-client). Not part of the test suite; tests/test_benchmarks_smoke.py runs a
tiny configuration only to prove this script works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from workloads import WORKLOADS, Workload, write_body  # noqa: E402

READY = re.compile(r"listening on (\S+:\d+)")
GO_SERVER_DIR = HERE / "go_server"


# --------------------------------------------------------------------------------------------
# Servers


@dataclass
class ServerSpec:
    """How to start one of the compared servers."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class RunningServer:
    """A server child process, started and ready (its readiness line was read)."""

    def __init__(self, spec: ServerSpec, cpus: str | None) -> None:
        self.spec = spec
        prefix = ["taskset", "-c", cpus] if cpus else []
        self.command = prefix + spec.argv
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **spec.env},
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.target = self._wait_ready()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_ready(self, timeout: float = 60.0) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if match := READY.search(line):
                return match.group(1).replace("0.0.0.0", "127.0.0.1")
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError(f"{self.spec.name} did not start:\n" + "\n".join(self.lines[-30:]))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if len(self.lines) < 1000:
                self.lines.append(line.rstrip())

    def pids(self) -> list[int]:
        """The server process and its descendants (workers)."""
        found = [self.process.pid]
        index = 0
        while index < len(found):
            children = Path(f"/proc/{found[index]}/task/{found[index]}/children")
            if children.exists():
                found += [int(pid) for pid in children.read_text().split()]
            index += 1
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its workers so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def memory_kib(self, key: str) -> int:
        """Sum of a /proc status field (VmHWM = peak RSS, VmRSS) over the server's processes."""
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
            total += int(match.group(1)) if match else 0
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def greet_spec(workers: int = 1, extra: Sequence[str] = ()) -> ServerSpec:
    return ServerSpec(
        "greet",
        [sys.executable, "-m", "greet.server", "--port", "0", "--workers", str(workers), *extra],
    )


def grpcio_spec() -> ServerSpec:
    return ServerSpec("grpcio", [sys.executable, str(HERE / "grpcio_server.py"), "--port", "0"])


def go_spec(build_dir: Path) -> ServerSpec | None:
    """grpc-go (benchmarks/go_server/), built offline with tests/interop/build_go.sh; None when
    it cannot be built here (no Go toolchain or Go gRPC sources)."""
    script = ROOT / "tests" / "interop" / "build_go.sh"
    if not (GO_SERVER_DIR / "main.go").exists() or not script.exists():
        return None
    built = subprocess.run(["sh", str(script), str(build_dir)], capture_output=True, text=True)
    binary = build_dir / "greet-go-server"
    if built.returncode != 0 or not binary.exists():
        print(f"grpc-go server not built:\n{built.stderr[-2000:]}", file=sys.stderr)
        return None
    # One core per server: Go would otherwise run on every core.
    return ServerSpec("grpc-go", [str(binary), "-addr", "127.0.0.1:0"], {"GOMAXPROCS": "1"})


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class Measurement:
    """One h2load run against one server."""

    rate: float  # calls/s (req/s) or messages/s, see Workload.unit
    calls_per_second: float
    failed: int
    cpu_per_call_us: float
    p50_ms: float | None = None
    p99_ms: float | None = None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def run_h2load(
    server: RunningServer,
    workload: Workload,
    body: Path,
    duration: float,
    warmup: float,
    load_cpus: str | None,
    connections: int | None = None,
    streams: int | None = None,
) -> Measurement:
    connections = connections or workload.connections
    streams = streams or workload.streams_per_connection
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command = [
            *(["taskset", "-c", load_cpus] if load_cpus else []),
            "h2load",
            "-t1",
            f"-c{connections}",
            f"-m{streams}",
            "-D",
            f"{int(duration * 1000)}ms",
            *([f"--warm-up-time={int(warmup * 1000)}ms"] if warmup > 0 else []),
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log.name}",
            f"http://{server.target}{workload.path}",
        ]
        cpu_before = server.cpu_seconds()
        output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        cpu_used = server.cpu_seconds() - cpu_before
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored", output)  # fmt: skip
        if done is None:
            raise RuntimeError(f"unexpected h2load output for {shlex.join(command)}:\n{output}")
        durations = sorted(
            int(line.split("\t")[2]) / 1000.0
            for line in Path(log.name).read_text().splitlines()
            if line.count("\t") >= 2
        )
    succeeded = int(done.group(2))
    failed = int(done.group(3)) + int(done.group(4))
    finished = re.search(r"finished in ([\d.]+)(m?s)", output)
    assert finished is not None
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    # h2load's "finished in" covers the measurement window (after warm-up) for -D runs.
    calls_per_second = succeeded / seconds if seconds else 0.0
    return Measurement(
        rate=calls_per_second * workload.messages_per_call,
        calls_per_second=calls_per_second,
        failed=failed,
        cpu_per_call_us=cpu_used / max(1, len(durations)) * 1e6,
        p50_ms=percentile(durations, 0.50) if durations else None,
        p99_ms=percentile(durations, 0.99) if durations else None,
    )


def run_driver(args: Sequence[str], load_cpus: str | None, **kwargs: Any) -> str:
    command = [
        *(["taskset", "-c", load_cpus] if load_cpus else []),
        sys.executable,
        str(HERE / "drivers.py"),
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return str(result.stdout)


def bench_tool_available() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "greet.client", "bench", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result.returncode == 0 and "--json" in result.stdout


def pingpong(server: RunningServer, duration: float, load_cpus: str | None) -> float:
    """Bidi ping-pong round trips per second on one stream (benchmarks/drivers.py)."""
    output = run_driver(["pingpong", server.target, "--duration", str(duration)], load_cpus)
    return float(json.loads(output)["rps"])


def bench_tool(server: RunningServer, duration: float, load_cpus: str | None) -> dict[str, Any]:
    """`python -m greet.client bench --rpc bidi --names 1 --concurrency 1 --json`: one bidi
    call (a new stream) per round trip, back to back."""
    command = [
        *(["taskset", "-c", load_cpus] if load_cpus else []),
        sys.executable, "-m", "greet.client", "--target", server.target, "bench",
        "--rpc", "bidi", "--names", "1", "--concurrency", "1", "--duration", str(duration),
        "--json", "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def rss_with_open_streams(
    spec: ServerSpec, cpus: str | None, load_cpus: str | None, streams: int
) -> tuple[int, int]:
    """(peak RSS idle, peak RSS after `streams` bidi streams are open) in KiB, fresh process."""
    server = RunningServer(spec, cpus)
    try:
        idle = server.memory_kib("VmHWM")
        command = [
            *(["taskset", "-c", load_cpus] if load_cpus else []),
            sys.executable,
            str(HERE / "drivers.py"),
            "hold",
            server.target,
            "--streams",
            str(streams),
            "--connections",
            str(max(1, streams // 100)),
        ]
        holder = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert holder.stdout is not None
        assert holder.stdin is not None
        line = holder.stdout.readline()
        if not line.startswith("holding"):
            holder.kill()
            raise RuntimeError(f"could not open {streams} streams on {spec.name}: {line!r}")
        loaded = server.memory_kib("VmHWM")
        holder.stdin.close()
        holder.wait(60)
        return idle, loaded
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Results:
    """Everything measured, keyed by workload key, then server name."""

    per_core: dict[str, dict[str, list[Measurement]]] = field(default_factory=dict)
    pingpong: dict[str, list[float]] = field(default_factory=dict)
    bench_tool: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rss: dict[str, tuple[int, int]] = field(default_factory=dict)
    workers: dict[str, list[Measurement]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> Results:
    results = Results()
    server_cpu, load_cpu = ("0", "1") if args.pin else (None, None)
    specs = [greet_spec(1, args.greet_args), grpcio_spec()]
    workloads = [WORKLOADS[key] for key in args.workloads]
    with tempfile.TemporaryDirectory(prefix="greet-bench-") as tmp:
        if args.go and (go := go_spec(Path(tmp) / "go")) is not None:
            specs.append(go)
        elif args.go:
            results.notes.append("grpc-go column left out: its server could not be built here.")
        bodies = {w.key: write_body(w, Path(tmp)) for w in workloads}
        servers = [RunningServer(spec, server_cpu) for spec in specs]
        tool_ready = args.pingpong and bench_tool_available()
        if args.pingpong and not tool_ready:
            results.notes.append(
                "`python -m greet.client bench --json` was not available: no bench-tool figures."
            )
        try:
            for server in servers:
                run_driver(["check", server.target], load_cpu)
            for round_number in range(1, args.rounds + 1):
                for workload in workloads:
                    for server in servers:
                        measured = run_h2load(
                            server, workload, bodies[workload.key], args.duration, args.warmup,
                            load_cpu,
                        )  # fmt: skip
                        by_server = results.per_core.setdefault(workload.key, {})
                        by_server.setdefault(server.spec.name, []).append(measured)
                        print(
                            f"round {round_number} {workload.key:14} {server.spec.name:8} "
                            f"{measured.rate:10.0f} {workload.unit} failed={measured.failed}",
                            file=sys.stderr,
                            flush=True,
                        )
                if args.pingpong:
                    for server in servers:
                        rps = pingpong(server, args.duration, load_cpu)
                        results.pingpong.setdefault(server.spec.name, []).append(rps)
                    if tool_ready:
                        for server in servers:
                            summary = bench_tool(server, args.duration, load_cpu)
                            results.bench_tool.setdefault(server.spec.name, []).append(summary)
        finally:
            for server in servers:
                server.stop()
        if args.rss:
            for spec in specs:
                results.rss[spec.name] = rss_with_open_streams(
                    spec, server_cpu, load_cpu, args.rss_streams
                )
        if args.workers:
            unary = WORKLOADS["unary128"]
            body = bodies.get("unary128") or write_body(unary, Path(tmp))
            whole = [greet_spec(2, args.greet_args), greet_spec(1, args.greet_args), grpcio_spec()]
            whole[0].name = "greet --workers 2"
            whole[1].name = "greet --workers 1"
            servers = [RunningServer(spec, None) for spec in whole]
            try:
                for _ in range(args.rounds):
                    for server in servers:
                        measured = run_h2load(
                            server, unary, body, args.duration, args.warmup, None,
                            connections=8, streams=16,
                        )  # fmt: skip
                        results.workers.setdefault(server.spec.name, []).append(measured)
                        print(
                            f"whole machine {server.spec.name:18} {measured.rate:10.0f} req/s",
                            file=sys.stderr,
                            flush=True,
                        )
            finally:
                for server in servers:
                    server.stop()
    return results


# --------------------------------------------------------------------------------------------
# Report


def fmt_rate(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def report(args: argparse.Namespace, results: Results, started: datetime.datetime) -> str:
    names = [name for name in ("greet", "grpcio", "grpc-go") if any(
        name in by_server for by_server in results.per_core.values())]  # fmt: skip
    lines = [
        "# Benchmark results: greet (grpclib + betterproto) vs grpcio asyncio"
        + (" vs grpc-go" if "grpc-go" in names else ""),
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; took {args.elapsed:.0f} s.",
        f"- Command: `{args.command}`",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores "
        f"({cpu_model()}), Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average at start {args.load_at_start}.",
        f"- {greet_versions()}",
        "- Per core: each server pinned with `taskset -c 0`, h2load (one thread) pinned to core "
        "1; servers driven in alternation within each round; figures are medians over "
        f"{args.rounds} round(s) of {args.duration:g} s (after {args.warmup:g} s warm-up); "
        "the range is min-max over the rounds.",
        "",
        "## Per core",
        "",
        "| workload | "
        + " | ".join(names)
        + " | greet / grpcio |"
        + (" greet / grpc-go |" if "grpc-go" in names else "")
        + " range greet | range grpcio | "
        + " | ".join(f"{name} CPU/call" for name in names)
        + " |",
        "|---|" + "---|" * (2 * len(names) + 3 + ("grpc-go" in names)),
    ]
    for key, by_server in results.per_core.items():
        workload = WORKLOADS[key]
        medians = {name: median([m.rate for m in by_server.get(name, [])]) for name in names}

        def ratio_to(other: str, medians: dict[str, float] = medians) -> str:
            return f"**{medians['greet'] / medians[other]:.2f}**" if medians.get(other) else "-"

        def spread(name: str, by_server: dict[str, list[Measurement]] = by_server) -> str:
            rates = [m.rate for m in by_server.get(name, [])]
            return f"{fmt_rate(min(rates))}-{fmt_rate(max(rates))}" if rates else "-"

        def cpu(name: str, by_server: dict[str, list[Measurement]] = by_server) -> str:
            return f"{median([m.cpu_per_call_us for m in by_server.get(name, [])]):.0f} us"

        lines.append(
            f"| {workload.title} ({workload.unit}) | "
            + " | ".join(fmt_rate(medians[name]) for name in names)
            + f" | {ratio_to('grpcio')} |"
            + (f" {ratio_to('grpc-go')} |" if "grpc-go" in names else "")
            + f" {spread('greet')} | {spread('grpcio')} | "
            + " | ".join(cpu(name) for name in names)
            + " |"
        )
    failed = sum(m.failed for by in results.per_core.values() for ms in by.values() for m in ms)
    lines += ["", f"Failed or errored h2load requests over all runs: {failed}."]
    if "unary1" in results.per_core:
        by_server = results.per_core["unary1"]
        lines += ["", "Latency at 1 in flight (h2load per-request log, median over rounds):", ""]
        lines += ["| server | p50 | p99 |", "|---|---|---|"]
        for name in names:
            p50 = median([m.p50_ms or 0 for m in by_server.get(name, [])])
            p99 = median([m.p99_ms or 0 for m in by_server.get(name, [])])
            lines.append(f"| {name} | {p50 * 1000:.0f} us | {p99 * 1000:.0f} us |")
    if results.pingpong:
        lines += ["", "## Bidi ping-pong (one stream, the client waits for each reply)", "",
                  "benchmarks/drivers.py pingpong: a grpclib client on the load core.",
                  ""]  # fmt: skip
        lines += ["| server | round trips/s (median) | range |", "|---|---|---|"]
        for name, values in results.pingpong.items():
            lines.append(
                f"| {name} | {fmt_rate(median(values))} | "
                f"{fmt_rate(min(values))}-{fmt_rate(max(values))} |"
            )
        if "greet" in results.pingpong and "grpcio" in results.pingpong:
            ratio = median(results.pingpong["greet"]) / median(results.pingpong["grpcio"])
            lines += ["", f"greet / grpcio: **{ratio:.2f}**"]
    if results.bench_tool:
        lines += ["", "## Bench tool: bidi, one message per call (a new stream each), 1 in flight",
                  "", "`python -m greet.client bench --rpc bidi --names 1 --concurrency 1 --json`"
                  " (a Python client: it bounds these rates, both servers see the same client)",
                  "", "| server | calls/s | p50 | p99 |", "|---|---|---|---|"]  # fmt: skip
        for name, summaries in results.bench_tool.items():
            rps = median([s["rps"] for s in summaries])
            p50 = median([s["latency_ms"]["p50"] for s in summaries])
            p99 = median([s["latency_ms"]["p99"] for s in summaries])
            lines.append(f"| {name} | {fmt_rate(rps)} | {p50:.2f} ms | {p99:.2f} ms |")
    if results.rss:
        lines += ["", f"## Peak RSS (VmHWM), fresh pinned process, {args.rss_streams:,} bidi "
                  f"streams held open over {max(1, args.rss_streams // 100)} connections",
                  ""]  # fmt: skip
        lines += ["| server | idle | with open streams |", "|---|---|---|"]
        for name, (idle, loaded) in results.rss.items():
            lines.append(f"| {name} | {idle / 1024:.1f} MiB | {loaded / 1024:.1f} MiB |")
    if results.workers:
        lines += ["", "## Whole machine (nothing pinned, h2load unpinned too)", ""]
        lines += ["unary, 128 in flight as 8 connections x 16 streams (more connections so that "
                  "SO_REUSEPORT spreads them over both workers)", ""]  # fmt: skip
        lines += ["| server | req/s (median) | range |", "|---|---|---|"]
        for name, measurements in results.workers.items():
            rates = [m.rate for m in measurements]
            lines.append(
                f"| {name} | {fmt_rate(median(rates))} | "
                f"{fmt_rate(min(rates))}-{fmt_rate(max(rates))} |"
            )
        rate = {name: median([m.rate for m in ms]) for name, ms in results.workers.items()}
        two = rate["greet --workers 2"]
        lines += ["", f"greet --workers 2 / grpcio: **{two / rate['grpcio']:.2f}**"]
        if "greet --workers 1" in rate:
            lines += [
                "",
                f"greet --workers 2 / greet --workers 1: **{two / rate['greet --workers 1']:.2f}**",
            ]
    notes = [
        "Where the time goes, what was removed and what bounds the rest: benchmarks/PROFILE.md "
        "(`python benchmarks/profile.py --workload unary1`).",
        "h2load counts HTTP status 200 as success; every server first answers one call of each "
        "kind correctly (benchmarks/drivers.py check), and all use the same request bodies.",
        "bidi with h2load: the client sends all 1,000 messages of a call at once and reads the "
        "replies as they come, so the figure is the server's per-message throughput on a bidi "
        "stream (receive, greet, reply), not a round-trip rate; the ping-pong table is that.",
        "Streaming workloads run 4 calls in flight on one connection; msg/s counts request "
        "messages (client stream, bidi) or reply messages (server stream).",
        *(
            [
                "grpc-go's figures at 128 in flight and on streams are bounded by h2load (one "
                "thread, a whole core): they understate grpc-go, so greet / grpc-go is an upper "
                "bound there."
            ]
            if "grpc-go" in names
            else []
        ),
        "The machine is shared with other jobs: compare the range columns (min-max over the "
        f"rounds) before trusting small differences. Load average at the end: {load_average()}.",
        *results.notes,
    ]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def greet_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("grpclib", "betterproto", "betterproto-rust-codec", "uvloop", "grpcio", "h2"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return "Versions: " + ", ".join(parts) + f", {h2load.stdout.strip()}."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="h2load warm-up seconds")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ", ".join(WORKLOADS) + " ('unary' = both unary)",
    )
    parser.add_argument("--greet-args", default="", help="extra flags for python -m greet.server")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    parser.add_argument("--no-pingpong", dest="pingpong", action="store_false")
    parser.add_argument("--no-rss", dest="rss", action="store_false")
    parser.add_argument("--rss-streams", type=int, default=1000)
    parser.add_argument("--no-workers", dest="workers", action="store_false")
    parser.add_argument("--no-go", dest="go", action="store_false", help="skip grpc-go")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    keys: list[str] = []
    for key in args.workloads.split(","):
        key = key.strip()
        expanded = ["unary128", "unary1"] if key == "unary" else [key]
        for item in expanded:
            if item not in WORKLOADS:
                parser.error(f"unknown workload {item!r}")
            keys.append(item)
    args.workloads = keys
    args.greet_args = shlex.split(args.greet_args)
    if args.pin and shutil.which("taskset") is None:
        parser.error("taskset not found (util-linux); use --no-pin")
    if shutil.which("h2load") is None:
        parser.error("h2load not found: install nghttp2-client")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = "python benchmarks/compare.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    args.load_at_start = load_average()
    started = datetime.datetime.now(datetime.timezone.utc)
    begin = time.monotonic()
    results = run(args)
    args.elapsed = time.monotonic() - begin
    text = report(args, results, started)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
