"""The compared servers: how each is started, and a handle on one running.

Servers: greet on each HTTP/2 engine (`python -m greet.server --http2-engine nghttp2|h2`),
grpcio's asyncio server (benchmarks/grpcio_server.py) and grpc-go (benchmarks/go_server/, built
offline with tests/interop/build_go.sh where Go and its gRPC sources are installed).

A server that is not being measured is paused (SIGSTOP, every process of it) so that nothing but
the measured server can run on the server core; `RunningServer.resume` continues it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ENGINES",
    "FOREIGN_SETTINGS",
    "RunningServer",
    "ServerSpec",
    "build_go_server",
    "clean_environment",
    "go_spec",
    "greet_spec",
    "grpcio_spec",
    "pinned",
    "process_cpu_seconds",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READY = re.compile(r"listening on (\S+:\d+)")
GO_SERVER_DIR = HERE / "go_server"
ENGINES = ("nghttp2", "h2")
# Settings that would change what a server does behind the harness's back (greet's GREET_*,
# grpcio's GRPC_*, tracing): a server gets exactly the flags and environment its spec names.
FOREIGN_SETTINGS = ("GREET_", "GRPC_", "OTEL_", "GOMAXPROCS", "GOGC", "GODEBUG", "PYTHONASYNCIO")
# Tracing is measured apart (benchmarks/tracing_overhead.py): with greet[otel] installed, greet's
# default would be OTLP export of every call to a collector that is not there.
UNTRACED = {"OTEL_TRACES_EXPORTER": "none"}


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without settings a server reads, tracing off, plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_SETTINGS)}
    return {**kept, **UNTRACED, **(extra or {})}


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` run on the CPUs `cpus` names (taskset -c), or as it is when `cpus` is None."""
    return [*(["taskset", "-c", cpus] if cpus else []), *argv]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one of the compared servers."""

    name: str  # key in the results: greet-nghttp2, greet-h2, grpcio, grpc-go
    label: str  # how the report names it
    argv: tuple[str, ...]  # with --port 0 (or -addr 127.0.0.1:0)
    env: Mapping[str, str] = field(default_factory=dict)
    shown_argv: tuple[str, ...] = ()  # argv as the report prints it (PORT for the port)

    def command(self, cpus: str | None) -> str:
        """The shell command a person runs to start this server by hand."""
        prefix = [f"{key}={value}" for key, value in self.env.items()]
        return shlex.join([*prefix, *pinned(self.shown_argv or self.argv, cpus)])


def greet_spec(engine: str, workers: int | None = None, extra: Sequence[str] = ()) -> ServerSpec:
    """greet on `engine`; `workers` None leaves --workers out (one process, no supervisor)."""
    flags = ["--http2-engine", engine, *(["--workers", str(workers)] if workers else [])]
    flags += list(extra)
    workers_label = f" --workers {workers}" if workers else ""
    return ServerSpec(
        name=f"greet-{engine}",
        label=f"greet ({engine}){workers_label}",
        argv=(sys.executable, "-m", "greet.server", "--port", "0", *flags),
        shown_argv=("python", "-m", "greet.server", "--port", "PORT", *flags),
    )


def grpcio_spec(extra: Sequence[str] = ()) -> ServerSpec:
    script = HERE / "grpcio_server.py"
    return ServerSpec(
        name="grpcio",
        label="grpcio (asyncio)",
        argv=(sys.executable, str(script), "--port", "0", *extra),
        shown_argv=("python", "benchmarks/grpcio_server.py", "--port", "PORT", *extra),
    )


def build_go_server(build_dir: Path) -> tuple[Path | None, str]:
    """Build benchmarks/go_server/ offline; (the binary, "") or (None, why not)."""
    script = ROOT / "tests" / "interop" / "build_go.sh"
    if not (GO_SERVER_DIR / "main.go").exists() or not script.exists():
        return None, "benchmarks/go_server/ or tests/interop/build_go.sh is missing"
    built = subprocess.run(["sh", str(script), str(build_dir)], capture_output=True, text=True)
    binary = build_dir / "greet-go-server"
    if built.returncode != 0 or not binary.exists():
        return None, built.stderr.strip()[-2000:]
    return binary, ""


def go_spec(binary: Path, pinned: bool, extra: Sequence[str] = ()) -> ServerSpec:
    """grpc-go; pinned to one core it gets GOMAXPROCS=1 (Go would otherwise run on every core)."""
    return ServerSpec(
        name="grpc-go",
        label="grpc-go",
        argv=(str(binary), "-addr", "127.0.0.1:0", *extra),
        env={"GOMAXPROCS": "1"} if pinned else {},
        shown_argv=("greet-go-server", "-addr", "127.0.0.1:PORT", *extra),
    )


class RunningServer:
    """A server child process, started and ready (its readiness line was read)."""

    def __init__(self, spec: ServerSpec, cpus: str | None) -> None:
        self.spec = spec
        self.cpus = cpus
        self.process = subprocess.Popen(
            pinned(spec.argv, cpus),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(spec.env),
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.paused = False
        self.target = self._wait_ready()
        self.port = int(self.target.rpartition(":")[2])
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def command(self) -> str:
        return self.spec.command(self.cpus)

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
            for task in Path(f"/proc/{found[index]}/task").glob("*/children"):
                try:
                    found += [int(pid) for pid in task.read_text().split()]
                except OSError:
                    continue
            index += 1
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its workers so far."""
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def memory_kib(self, key: str) -> int:
        """Sum of a /proc status field (VmHWM = peak RSS, VmRSS) over the server's processes."""
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
            total += int(match.group(1)) if match else 0
        return total

    def _signal(self, signum: signal.Signals) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue

    def pause(self) -> None:
        """Stop every process of the server (SIGSTOP): it takes no CPU until `resume`."""
        if not self.paused and self.process.poll() is None:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
