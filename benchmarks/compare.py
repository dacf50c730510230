"""Side-by-side benchmark: greet (both HTTP/2 engines) against grpcio's asyncio server and grpc-go.

    python benchmarks/compare.py --rounds 5 --duration 5

Per core: every server is pinned with `taskset -c 0`, the load generator (h2load, replaying gRPC
request bodies; benchmarks/workloads.py) with `taskset -c 1`, and this script keeps itself on
core 1 too. The servers stay up for the whole run, but only the one being measured runs: the
others are paused (SIGSTOP), so a measurement sees exactly what one server alone on its core does,
as when the printed command is run by hand. The servers are driven in alternation (the order
rotating each round) for every workload in every round; the report gives medians over the rounds.
Then, unless switched off: bidi ping-pong (a client waiting for each reply, which h2load cannot
do), `python -m greet.client bench` beside h2load on the same servers, peak RSS idle and with
1,000 open bidi streams, and `--workers 2` on the whole machine (nothing pinned).

Writes benchmarks/results.json (every figure, the commands, versions, date; benchmarks/results.py
describes it) and from it the Markdown report benchmarks/RESULTS.md (benchmarks/report.py, which
also rewrites the report from a results file) and the README's chart benchmarks/chart.svg
(benchmarks/chart.py, which also redraws it from a results file).

Benchmark-only dependencies: the `bench` dependency group (grpcio, grpcio-tools) and h2load
(Debian package nghttp2-client). Not part of the test suite; tests/test_benchmarks_smoke.py runs a
tiny configuration only to prove this script works.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import chart  # noqa: E402
import report  # noqa: E402
import results as results_file  # noqa: E402
from h2load import Load, run_h2load, shown_command  # noqa: E402
from servers import (  # noqa: E402
    ENGINES,
    FOREIGN_SETTINGS,
    RunningServer,
    ServerSpec,
    build_go_server,
    clean_environment,
    go_spec,
    greet_spec,
    grpcio_spec,
    pinned,
)
from workloads import BODY_DIR, WORKLOADS, Workload, write_bodies  # noqa: E402

PER_CORE_SERVERS = ("greet-nghttp2", "greet-h2", "grpcio", "grpc-go")
WHOLE_MACHINE_SHAPE = (8, 16)  # connections x streams: 128 in flight over 8 connections


# --------------------------------------------------------------------------------------------
# Which servers


def per_core_specs(
    go_binary: Path | None, greet_args: Sequence[str], compressed: bool, pinned: bool
) -> list[ServerSpec]:
    greet_extra = [*greet_args, *(["--compression", "gzip"] if compressed else [])]
    specs = [greet_spec(engine, None, greet_extra) for engine in ENGINES]
    specs.append(grpcio_spec(["--compression", "gzip"] if compressed else []))
    if go_binary is not None:
        specs.append(go_spec(go_binary, pinned, ["-compression", "gzip"] if compressed else []))
    return specs


def whole_machine_specs(go_binary: Path | None, greet_args: Sequence[str]) -> list[ServerSpec]:
    specs = []
    for workers in (2, 1):
        for engine in ENGINES:
            spec = greet_spec(engine, workers, greet_args)
            specs.append(
                ServerSpec(
                    f"{spec.name}-w{workers}", spec.label, spec.argv, spec.env, spec.shown_argv
                )
            )
    specs.append(grpcio_spec())
    if go_binary is not None:
        specs.append(go_spec(go_binary, pinned=False))
    return specs


class ServerSet:
    """Servers started together and paused; `measuring(server)` lets one run at a time."""

    def __init__(self, specs: Sequence[ServerSpec], cpus: str | None) -> None:
        self.servers: list[RunningServer] = []
        try:
            for spec in specs:
                self.servers.append(RunningServer(spec, cpus))
        except BaseException:
            self.stop()
            raise
        for server in self.servers:
            server.pause()

    def in_order(self, rotation: int) -> list[RunningServer]:
        shift = rotation % max(1, len(self.servers))
        return self.servers[shift:] + self.servers[:shift]

    @contextlib.contextmanager
    def measuring(self, server: RunningServer) -> Iterator[RunningServer]:
        server.resume()
        try:
            yield server
        finally:
            server.pause()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def kept_on(cpus: str | None) -> Iterator[None]:
    """Run this process (and what it starts without taskset) on `cpus` for a while."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --------------------------------------------------------------------------------------------
# Drivers other than h2load


def run_checked(argv: Sequence[str], **kwargs: Any) -> str:
    """Run a driver (with the servers' clean environment: GREET_* would change greet's client)."""
    result = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=clean_environment(), **kwargs
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return str(result.stdout)


def check(server: RunningServer, load_cpus: str | None, long_names: bool) -> None:
    """One call of each kind, each reply checked (h2load only sees HTTP status 200)."""
    argv = [sys.executable, str(HERE / "drivers.py"), "check", server.target]
    run_checked(pinned([*argv, *(["--long-names"] if long_names else [])], load_cpus))


def pingpong_argv(target: str, duration: float) -> list[str]:
    return ["python", "benchmarks/drivers.py", "pingpong", target, "--duration", f"{duration:g}"]


def bench_argv(target: str, duration: float) -> list[str]:
    return [
        "python", "-m", "greet.client", "--target", target, "bench", "--rpc", "unary",
        "--concurrency", "128", "--connections", "4", "--duration", f"{duration:g}s",
        "--json", "--no-progress",
    ]  # fmt: skip


def timed_driver(
    server: RunningServer, argv: list[str], load_cpus: str | None
) -> tuple[dict[str, Any], float]:
    """Run a driver that prints JSON last; (that object, server cores busy meanwhile)."""
    executable = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    cpu, start = server.cpu_seconds(), time.monotonic()
    output = run_checked(pinned(executable, load_cpus))
    busy = (server.cpu_seconds() - cpu) / max(time.monotonic() - start, 1e-9)
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return summary, busy


def rss_with_open_streams(
    spec: ServerSpec, cpus: str | None, load_cpus: str | None, streams: int
) -> dict[str, int]:
    """Peak RSS idle and after `streams` bidi streams are open, in KiB, fresh process."""
    server = RunningServer(spec, cpus)
    try:
        idle = server.memory_kib("VmHWM")
        argv = [sys.executable, str(HERE / "drivers.py"), "hold", server.target]
        argv += ["--streams", str(streams), "--connections", str(max(1, streams // 100))]
        holder = subprocess.Popen(
            pinned(argv, load_cpus),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_environment(),
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
        return {"idle_kib": idle, "loaded_kib": loaded}
    finally:
        server.stop()


def reply_bytes_per_call(server: RunningServer, workload: Workload, body: Path) -> int | None:
    """DATA bytes of one call's replies, from a 2-call h2load run (shows compression working)."""
    argv = ["h2load", "-n2", "-c1", "-m1", "-d", str(body)]
    for header in workload.headers:
        argv += ["-H", header]
    output = run_checked([*argv, f"http://{server.target}{workload.path}"])
    for line in output.splitlines():
        if line.startswith("traffic:") and line.endswith(" data"):
            return int(line.rsplit("(", 1)[1].split(")")[0]) // 2
    return None


# --------------------------------------------------------------------------------------------
# The run


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_per_core(
    args: argparse.Namespace, go_binary: Path | None, bodies: dict[str, Path], out: dict[str, Any]
) -> None:
    server_cpus, load_cpus = args.server_cpus, args.load_cpus
    workloads = [WORKLOADS[key] for key in args.workloads]
    sets: dict[bool, ServerSet] = {}
    try:
        for compressed in sorted({w.compressed for w in workloads}):
            specs = per_core_specs(go_binary, args.greet_args, compressed, args.pin)
            sets[compressed] = ServerSet(specs, server_cpus)
        for compressed, server_set in sets.items():
            for server in server_set.servers:
                with server_set.measuring(server):
                    check(server, load_cpus, long_names=compressed)
        plain = sets.get(False)
        out["servers"] = {
            server.spec.name: {"label": server.spec.label, "command": server.command}
            for server in (plain or sets[True]).servers
        }
        for workload in workloads:
            load = Load.of(workload, args.duration, args.warmup)
            out["per_core"][workload.key] = {
                "title": workload.title,
                "unit": workload.unit,
                "in_flight": workload.in_flight,
                "compressed": workload.compressed,
                "load_command": shown_command(workload, load, load_cpus),
                "figures": {},
            }
            server_set = sets[workload.compressed]
            for server in server_set.servers:
                figure: dict[str, Any] = {"server_command": server.command, "runs": []}
                if workload.compressed:
                    with server_set.measuring(server):
                        figure["reply_bytes_per_call"] = reply_bytes_per_call(
                            server, workload, bodies[workload.key]
                        )
                out["per_core"][workload.key]["figures"][server.spec.name] = figure
        with kept_on(load_cpus):
            for round_number in range(1, args.rounds + 1):
                for workload in workloads:
                    load = Load.of(workload, args.duration, args.warmup)
                    server_set = sets[workload.compressed]
                    figures = out["per_core"][workload.key]["figures"]
                    for server in server_set.in_order(round_number - 1):
                        with server_set.measuring(server):
                            measured = run_h2load(
                                server, workload, load, bodies[workload.key], load_cpus
                            )
                        figures[server.spec.name]["runs"].append(asdict(measured))
                        log(
                            f"round {round_number} {workload.key:18} {server.spec.name:14} "
                            f"{measured.rate:10.0f} {workload.unit} failed={measured.failed} "
                            f"server cores={measured.server_cores:.2f}"
                        )
                if plain is not None and args.pingpong:
                    measure_pingpong(args, plain, out)
                if plain is not None and args.bench_tool:
                    measure_bench_tool(args, plain, out)
    finally:
        for server_set in sets.values():
            server_set.stop()


def measure_pingpong(args: argparse.Namespace, server_set: ServerSet, out: dict[str, Any]) -> None:
    section = out["pingpong"]
    section["command"] = shlex.join(
        pinned(pingpong_argv("127.0.0.1:PORT", args.duration), args.load_cpus)
    )
    for server in server_set.servers:
        with server_set.measuring(server):
            summary, busy = timed_driver(
                server, pingpong_argv(server.target, args.duration), args.load_cpus
            )
        figure = section["figures"].setdefault(server.spec.name, {"runs": []})
        figure["runs"].append({"rps": summary["rps"], "server_cores": busy})
        log(f"pingpong {server.spec.name:14} {summary['rps']:8.0f} round trips/s")


def measure_bench_tool(
    args: argparse.Namespace, server_set: ServerSet, out: dict[str, Any]
) -> None:
    section = out["bench_tool"]
    section["command"] = shlex.join(
        pinned(bench_argv("127.0.0.1:PORT", args.duration), args.load_cpus)
    )
    for server in server_set.servers:
        with server_set.measuring(server):
            summary, busy = timed_driver(
                server, bench_argv(server.target, args.duration), args.load_cpus
            )
        figure = section["figures"].setdefault(server.spec.name, {"runs": []})
        latency = summary.get("latency_ms", {})
        figure["runs"].append(
            {
                "rps": summary["rps"],
                "failed": summary.get("failed", 0),
                "p50_ms": latency.get("p50"),
                "p99_ms": latency.get("p99"),
                "server_cores": busy,
            }
        )
        log(f"bench    {server.spec.name:14} {summary['rps']:8.0f} req/s server cores={busy:.2f}")


def measure_whole_machine(
    args: argparse.Namespace, go_binary: Path | None, bodies: dict[str, Path], out: dict[str, Any]
) -> None:
    workload = WORKLOADS["unary128"]
    connections, streams = WHOLE_MACHINE_SHAPE
    load = Load(connections, streams, args.duration, args.warmup)
    body = bodies["unary128"]
    section = out["whole_machine"]
    section["title"] = (
        f"unary, 128 in flight as {connections} connections x {streams} streams, nothing pinned"
    )
    section["load_command"] = shown_command(workload, load, None)
    server_set = ServerSet(whole_machine_specs(go_binary, args.greet_args), None)
    try:
        for server in server_set.servers:
            section["figures"][server.spec.name] = {
                "label": server.spec.label,
                "server_command": server.command,
                "runs": [],
            }
        for round_number in range(1, args.rounds + 1):
            for server in server_set.in_order(round_number - 1):
                with server_set.measuring(server):
                    measured = run_h2load(server, workload, load, body, None)
                section["figures"][server.spec.name]["runs"].append(asdict(measured))
                log(
                    f"whole machine {server.spec.name:18} {measured.rate:10.0f} req/s "
                    f"server cores={measured.server_cores:.2f}"
                )
    finally:
        server_set.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "servers": {},
        "per_core": {},
        "pingpong": {"figures": {}},
        "bench_tool": {"figures": {}},
        "rss": {},
        "whole_machine": {"figures": {}},
        "notes": [],
    }
    ignored = sorted(key for key in os.environ if key.startswith(FOREIGN_SETTINGS))
    if ignored:
        out["notes"].append(
            "Left out of the servers' and drivers' environment: " + ", ".join(ignored) + "."
        )
    with tempfile.TemporaryDirectory(prefix="greet-bench-") as tmp:
        go_binary: Path | None = None
        if args.go:
            go_binary, why = build_go_server(Path(tmp) / "go")
            if go_binary is None:
                out["notes"].append(f"grpc-go left out: its server could not be built here ({why})")
        needed = {*args.workloads, *(["unary128"] if args.workers else [])}
        bodies = write_bodies(Path(tmp) / "bodies", sorted(needed))
        if args.workloads:
            measure_per_core(args, go_binary, bodies, out)
        if args.rss:
            specs = per_core_specs(go_binary, args.greet_args, False, args.pin)
            out["rss"] = {
                "streams": args.rss_streams,
                "connections": max(1, args.rss_streams // 100),
                "figures": {
                    spec.name: rss_with_open_streams(
                        spec, args.server_cpus, args.load_cpus, args.rss_streams
                    )
                    for spec in specs
                },
            }
        if args.workers:
            measure_whole_machine(args, go_binary, bodies, out)
    return out


# --------------------------------------------------------------------------------------------
# Where and with what


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def versions() -> dict[str, str]:
    found = {}
    for package in ("greet", "grpclib", "ngh2", "h2", "betterproto", "betterproto-rust-codec",
                    "uvloop", "grpcio", "protobuf"):  # fmt: skip
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    found["h2load"] = h2load.stdout.strip().removeprefix("h2load ")
    go = shutil.which("go")
    if go:
        reported = subprocess.run([go, "version"], capture_output=True, text=True).stdout
        found["go"] = reported.strip().removeprefix("go version ")
    grpc_go = Path(os.environ.get("GREET_GOCODE", "/usr/share/gocode"))
    version_go = grpc_go / "src" / "google.golang.org" / "grpc" / "version.go"
    if version_go.exists():
        for line in version_go.read_text().splitlines():
            if line.startswith("const Version"):
                found["grpc-go"] = line.split('"')[1]
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="h2load warm-up seconds")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ", ".join(WORKLOADS) + " ('unary' = both unary; "
        "'none' = no per-core part)",
    )
    parser.add_argument("--greet-args", default="", help="extra flags for python -m greet.server")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    parser.add_argument("--no-pingpong", dest="pingpong", action="store_false")
    parser.add_argument("--no-bench-tool", dest="bench_tool", action="store_false")
    parser.add_argument("--no-rss", dest="rss", action="store_false")
    parser.add_argument("--rss-streams", type=int, default=1000)
    parser.add_argument("--no-workers", dest="workers", action="store_false",
                        help="skip the whole-machine part")  # fmt: skip
    parser.add_argument("--no-go", dest="go", action="store_false", help="skip grpc-go")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="Markdown report")
    parser.add_argument(
        "--json", type=Path, help="results file (default: results.json beside --out)"
    )
    parser.add_argument("--chart", type=Path, help="chart (default: chart.svg beside --out)")
    args = parser.parse_args(argv)
    keys: list[str] = []
    for key in args.workloads.split(","):
        key = key.strip()
        if key in ("", "none"):
            continue
        for item in ["unary128", "unary1"] if key == "unary" else [key]:
            if item not in WORKLOADS:
                parser.error(f"unknown workload {item!r}")
            keys.append(item)
    args.workloads = keys
    args.greet_args = shlex.split(args.greet_args)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds >= 1, --duration > 0 and --warmup >= 0")
    if args.pin and shutil.which("taskset") is None:
        parser.error("taskset not found (util-linux); use --no-pin")
    if args.pin and (os.cpu_count() or 1) < 2:
        parser.error("pinning needs two cores (server on 0, load on 1); use --no-pin")
    if shutil.which("h2load") is None:
        parser.error("h2load not found: install nghttp2-client")
    args.server_cpus, args.load_cpus = ("0", "1") if args.pin else (None, None)
    args.json = args.json or args.out.with_name("results.json")
    args.chart = args.chart or args.out.with_name("chart.svg")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else list(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    at_start = load_average()
    begin = time.monotonic()
    measured = run(args)
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "elapsed_seconds": round(time.monotonic() - begin, 1),
        "command": shlex.join(["python", "benchmarks/compare.py", *shown]),
        "machine": {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "versions": versions(),
        "load_average": {"start": at_start, "end": load_average()},
        "settings": {
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "pinned": args.pin,
            "server_cpus": args.server_cpus,
            "load_cpus": args.load_cpus,
            "greet_args": args.greet_args,
            "bodies_command": f"python benchmarks/workloads.py {BODY_DIR}",
        },
        **measured,
    }
    results["targets"] = results_file.targets(results)
    results_file.save(results, args.json)
    text = report.render(results)
    args.out.write_text(text)
    if chart.groups(results):
        args.chart.write_text(chart.render_svg(results))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
