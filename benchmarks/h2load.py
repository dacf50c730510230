"""One h2load run against one server: the command, and what it measured.

The rate is h2load's own `req/s` figure (calls completed in the measurement window, after the
warm-up, divided by the window: what a person running the printed command by hand reads). The
server's CPU time is sampled when h2load announces the start and the end of its measurement window
(it prints both as they happen), so CPU per call covers the same calls as the rate. While the
server and h2load are pinned to one core each, the share of each core that went to anything else
in that window (another job, steal time) is kept too: a figure measured on a busy core is not a
figure of the server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servers import RunningServer, process_cpu_seconds
from workloads import BODY_DIR, Workload

__all__ = ["CpuClock", "Load", "Measurement", "Sample", "percentile", "run_h2load"]

WINDOW_STARTED = "Main benchmark duration is started"
WINDOW_OVER = "Main benchmark duration is over"
SUMMARY = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
COUNTS = re.compile(
    r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)


@dataclass(frozen=True)
class Load:
    """The shape of one h2load run."""

    connections: int
    streams: int  # per connection
    duration: float  # seconds of measurement
    warmup: float  # seconds before it
    latencies: bool = False  # keep h2load's per-request log for percentiles

    @staticmethod
    def of(workload: Workload, duration: float, warmup: float) -> Load:
        return Load(
            workload.connections,
            workload.streams_per_connection,
            duration,
            warmup,
            latencies=workload.in_flight == 1,
        )


def seconds_flag(seconds: float) -> str:
    return f"{seconds:g}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def h2load_argv(
    workload: Workload, load: Load, url: str, body: str, log_file: str | None
) -> list[str]:
    argv = ["h2load", "-t1", f"-c{load.connections}", f"-m{load.streams}"]
    argv += ["-D", seconds_flag(load.duration)]
    if load.warmup > 0:
        argv.append(f"--warm-up-time={seconds_flag(load.warmup)}")
    argv += ["-d", body]
    for header in workload.headers:
        argv += ["-H", header]
    if log_file is not None:
        argv.append(f"--log-file={log_file}")
    return [*argv, url]


def shown_command(workload: Workload, load: Load, load_cpus: str | None) -> str:
    """The command as RESULTS.md prints it: bodies in BODY_DIR, PORT for the server's port."""
    argv = h2load_argv(
        workload,
        load,
        f"http://127.0.0.1:PORT{workload.path}",
        f"{BODY_DIR}/{workload.key}.body",
        "h2load.log" if load.latencies else None,
    )
    return shlex.join([*(["taskset", "-c", load_cpus] if load_cpus else []), *argv])


class CpuClock:
    """Time one CPU spent running processes or stolen by the host (/proc/stat user, nice,
    system and steal; interrupts are left out: loopback traffic's softirq time is the server's)."""

    def __init__(self, cpu: str | None) -> None:
        self.cpu = cpu if cpu is not None and cpu.isdigit() else None

    def busy(self) -> float | None:
        if self.cpu is None:
            return None
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields[0] == f"cpu{self.cpu}":
                values = [int(value) for value in fields[1:]]
                user, nice, system, steal = values[0], values[1], values[2], values[7]
                return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")
        return None


@dataclass(frozen=True)
class Measurement:
    """One h2load run against one server."""

    rate: float  # workload.unit: calls/s or messages/s
    calls_per_second: float
    succeeded: int
    failed: int
    server_cores: float  # server CPU seconds per second of the window
    cpu_per_call_us: float
    other_load: float | None  # share of the server's core that other processes took
    load_core_other: float | None  # share of the load core that others than h2load took
    p50_us: float | None = None
    p99_us: float | None = None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(frozen=True)
class Sample:
    """What is read when h2load announces the start or the end of its measurement window."""

    time: float
    server_cpu: float
    server_core: float | None  # busy time of the server's core (None: not pinned to one)
    load_core: float | None
    h2load_cpu: float

    @staticmethod
    def take(server: RunningServer, h2load_pid: int, cores: tuple[CpuClock, CpuClock]) -> Sample:
        return Sample(
            time.monotonic(),
            server.cpu_seconds(),
            cores[0].busy(),
            cores[1].busy(),
            process_cpu_seconds(h2load_pid),
        )


def other_share(
    start: Sample, end: Sample, before: float | None, after: float | None, own: float
) -> float | None:
    """Share of a core's time in the window (busy `before` and `after`) beyond `own` seconds."""
    if before is None or after is None:
        return None
    return max(0.0, (after - before) - own) / max(end.time - start.time, 1e-9)


def run_h2load(
    server: RunningServer,
    workload: Workload,
    load: Load,
    body: Path,
    load_cpus: str | None,
) -> Measurement:
    cores = (CpuClock(server.cpus), CpuClock(load_cpus))
    with tempfile.TemporaryDirectory(prefix="greet-h2load-") as tmp:
        log = str(Path(tmp) / "h2load.log") if load.latencies else None
        argv = h2load_argv(workload, load, f"http://{server.target}{workload.path}", str(body), log)
        command = [*(["taskset", "-c", load_cpus] if load_cpus else []), *argv]
        marks: dict[str, Sample] = {}
        output: list[str] = []
        # taskset execs h2load: the child's pid is h2load's
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            for mark in (WINDOW_STARTED, WINDOW_OVER):
                if line.startswith(mark):
                    marks[mark] = Sample.take(server, process.pid, cores)
        process.wait()
        text = "".join(output)
        summary, counts = SUMMARY.search(text), COUNTS.search(text)
        if summary is None or counts is None or len(marks) != 2:
            raise RuntimeError(f"unexpected h2load output for {shlex.join(command)}:\n{text}")
        latencies = sorted(
            int(line.split("\t")[2])
            for line in (Path(log).read_text().splitlines() if log else [])
            if line.count("\t") >= 2
        )
    start, end = marks[WINDOW_STARTED], marks[WINDOW_OVER]
    window = max(end.time - start.time, 1e-9)
    server_cpu = end.server_cpu - start.server_cpu
    succeeded = int(counts.group(2))
    calls_per_second = float(summary.group(1))
    return Measurement(
        rate=calls_per_second * workload.messages_per_call,
        calls_per_second=calls_per_second,
        succeeded=succeeded,
        failed=int(counts.group(3)) + int(counts.group(4)),
        server_cores=server_cpu / window,
        cpu_per_call_us=server_cpu / max(1, succeeded) * 1e6,
        other_load=other_share(start, end, start.server_core, end.server_core, server_cpu),
        load_core_other=other_share(
            start, end, start.load_core, end.load_core, end.h2load_cpu - start.h2load_cpu
        ),
        p50_us=float(percentile(latencies, 0.50)) if latencies else None,
        p99_us=float(percentile(latencies, 0.99)) if latencies else None,
    )
