"""Connect unary JSON over HTTP/1.1, per core: greet against connectrpc 0.13 on uvicorn.

    python benchmarks/web_compare.py --rounds 5 --duration 5

The same call on every server: `POST /greet_service.GreetService/SayHello` with the body `{}`,
`content-type: application/json` and `connect-protocol-version: 1` (SayHello's reply is
`{"message":"Hello"}`), driven by the same load tool, `h2load --h1` (Debian nghttp2-client), with
keep-alive connections and one request in flight on each (no pipelining, as browsers do). Each
server is pinned to one core (`taskset -c 1`) and h2load to the other (`taskset -c 0`; this
script stays there too); the servers stay up for the whole run but only the measured one runs
(the others are paused with SIGSTOP), in alternation, the order rotating each round. The report
gives each server's median over the rounds and each greet figure's ratio to connectrpc's.

Servers (`--servers`, comma-separated): `connectrpc` (benchmarks/connectrpc_server.py: connectrpc
on uvicorn with httptools and uvloop; the `web` dependency group), `greet-nghttp2` and `greet-h2`
(`python -m greet.server --http2-engine ENGINE`, which must serve Connect on HTTP/1.1 beside
h2c). Before measuring, one call checks that each server answers it with `{"message": "Hello"}`;
a server that does not is reported and left out. The exact commands are printed.
Not part of the tests: no figure is asserted anywhere.

    python benchmarks/web_compare.py --path-length [--loop asyncio|uvloop]

counts instead the Python and C function calls of one such call (as benchmarks/path_length.py
does for gRPC): GreetServer and a raw HTTP/1.1 client (asyncio streams, one keep-alive
connection) in one process, 50 warm-up calls, then one call under `sys.setprofile` until 20 ms
after its reply. Exact for one interpreter and set of packages, whatever the machine's load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from h2load import COUNTS, SUMMARY, WINDOW_OVER, WINDOW_STARTED, seconds_flag  # noqa: E402
from servers import RunningServer, ServerSpec, greet_spec, pinned  # noqa: E402

PATH = "/greet_service.GreetService/SayHello"
HEADERS = ("content-type: application/json", "connect-protocol-version: 1")
BODY = b"{}"
STATUS_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def connectrpc_spec() -> ServerSpec:
    script = HERE / "connectrpc_server.py"
    return ServerSpec(
        name="connectrpc",
        label="connectrpc 0.13 on uvicorn",
        argv=(sys.executable, str(script), "--port", "0"),
        shown_argv=("python", "benchmarks/connectrpc_server.py", "--port", "PORT"),
    )


def spec_of(name: str) -> ServerSpec:
    if name == "connectrpc":
        return connectrpc_spec()
    if name.startswith("greet-"):
        return greet_spec(name.removeprefix("greet-"))
    raise SystemExit(f"unknown server {name!r}: connectrpc, greet-nghttp2 or greet-h2")


def h2load_argv(args: argparse.Namespace, url: str, body: str) -> list[str]:
    argv = ["h2load", "--h1", "-t1", f"-c{args.connections}", "-m1"]
    argv += ["-D", seconds_flag(args.duration), f"--warm-up-time={seconds_flag(args.warmup)}"]
    argv += ["-d", body]
    for header in HEADERS:
        argv += ["-H", header]
    return [*argv, url]


def check_call(server: RunningServer) -> str | None:
    """None when the server answers the benchmarked call as SayHello must; else what it did."""
    request = urllib.request.Request(
        f"http://{server.target}{PATH}",
        data=BODY,
        headers=dict(header.split(": ", 1) for header in HEADERS),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {str(error)[:80]!r}"
    return None if reply == {"message": "Hello"} else f"replied {reply!r}"


@dataclass(frozen=True)
class Figure:
    calls_per_second: float
    succeeded: int
    failed: int  # h2load's failed and errored requests, and replies other than 2xx
    server_cores: float  # server CPU seconds per second of h2load's measurement window
    cpu_per_call_us: float


def measure(
    server: RunningServer, args: argparse.Namespace, body: Path, load_cpus: str | None
) -> Figure:
    command = pinned(h2load_argv(args, f"http://{server.target}{PATH}", str(body)), load_cpus)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    marks: dict[str, tuple[float, float]] = {}
    output = []
    for line in process.stdout:
        output.append(line)
        for mark in (WINDOW_STARTED, WINDOW_OVER):
            if line.startswith(mark):
                marks[mark] = (time.monotonic(), server.cpu_seconds())
    process.wait()
    text = "".join(output)
    summary, counts, codes = SUMMARY.search(text), COUNTS.search(text), STATUS_CODES.search(text)
    if summary is None or counts is None or codes is None or len(marks) != 2:
        raise RuntimeError(f"unexpected h2load output for {shlex.join(command)}:\n{text}")
    (start, cpu_start), (end, cpu_end) = marks[WINDOW_STARTED], marks[WINDOW_OVER]
    succeeded = int(codes.group(1))
    failed = (
        int(counts.group(3)) + int(counts.group(4)) + sum(int(codes.group(i)) for i in (2, 3, 4))
    )
    cpu = cpu_end - cpu_start
    return Figure(
        calls_per_second=float(summary.group(1)),
        succeeded=succeeded,
        failed=failed,
        server_cores=cpu / max(end - start, 1e-9),
        cpu_per_call_us=cpu / max(1, succeeded) * 1e6,
    )


def run(args: argparse.Namespace) -> dict[str, object]:
    server_cpus = None if args.no_pin else args.server_cpu
    load_cpus = None if args.no_pin else args.load_cpu
    if load_cpus is not None:
        os.sched_setaffinity(0, {int(load_cpus)})
    specs = [spec_of(name) for name in args.servers.split(",")]
    out: dict[str, object] = {
        "call": f"POST {PATH} {BODY.decode()} ({', '.join(HEADERS)})",
        "servers": {},
        "skipped": {},
    }
    with tempfile.TemporaryDirectory(prefix="greet-web-bench-") as tmp:
        body = Path(tmp) / "sayhello.json"
        body.write_bytes(BODY)
        running: list[RunningServer] = []
        try:
            for spec in specs:
                try:
                    server = RunningServer(spec, server_cpus)
                except RuntimeError as error:
                    out["skipped"][spec.name] = str(error)[-500:]  # type: ignore[index]
                    print(f"{spec.name}: did not start; left out", file=sys.stderr)
                    continue
                running.append(server)  # stopped in the end, whatever happens
                problem = check_call(server)
                if problem is not None:
                    out["skipped"][spec.name] = problem  # type: ignore[index]
                    print(f"{spec.name}: the call fails ({problem}); left out", file=sys.stderr)
                    running.remove(server)
                    server.stop()
                    continue
                server.pause()
            shown = shlex.join(
                pinned(h2load_argv(args, f"http://127.0.0.1:PORT{PATH}", "BODY"), load_cpus)
            )
            out["load_command"] = f"printf '{{}}' > BODY; {shown}"
            print(f"load: {out['load_command']}")
            rounds: dict[str, list[Figure]] = {server.spec.name: [] for server in running}
            for round_index in range(args.rounds):
                shift = round_index % max(1, len(running))
                for server in running[shift:] + running[:shift]:
                    server.resume()
                    try:
                        figure = measure(server, args, body, load_cpus)
                    finally:
                        server.pause()
                    rounds[server.spec.name].append(figure)
                    print(
                        f"round {round_index + 1} {server.spec.name}: "
                        f"{figure.calls_per_second:,.0f} calls/s, "
                        f"{figure.cpu_per_call_us:.0f} us CPU/call, "
                        f"{figure.server_cores:.2f} cores, {figure.failed} failed",
                        flush=True,
                    )
            for server in running:
                figures = rounds[server.spec.name]
                out["servers"][server.spec.name] = {  # type: ignore[index]
                    "label": server.spec.label,
                    "command": server.command,
                    "median_calls_per_second": statistics.median(
                        f.calls_per_second for f in figures
                    ),
                    "median_cpu_per_call_us": statistics.median(f.cpu_per_call_us for f in figures),
                    "failed": sum(f.failed for f in figures),
                    "rounds": [asdict(f) for f in figures],
                }
        finally:
            for server in running:
                server.stop()
    return out


def report(out: dict[str, object]) -> str:
    servers: dict[str, dict[str, object]] = out["servers"]  # type: ignore[assignment]
    base = servers.get("connectrpc")
    lines = [
        f"call: {out['call']}",
        f"load: {out['load_command']}",
        "",
        "| server | command | calls/s, server on one core | server CPU per call | "
        "calls per server CPU-second | vs connectrpc (calls/s; per CPU-second) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for figures in servers.values():
        rate = float(figures["median_calls_per_second"])  # type: ignore[arg-type]
        cpu = float(figures["median_cpu_per_call_us"])  # type: ignore[arg-type]
        ratio = "-"
        if base is not None:
            base_rate = float(base["median_calls_per_second"])  # type: ignore[arg-type]
            base_cpu = float(base["median_cpu_per_call_us"])  # type: ignore[arg-type]
            ratio = f"{rate / base_rate:.2f}x; {base_cpu / cpu:.2f}x"
        lines.append(
            f"| {figures['label']} | `{figures['command']}` | {rate:,.0f} | {cpu:.0f} us | "
            f"{1e6 / cpu:,.0f} | {ratio} |"
        )
    lines.append("\n(medians over the rounds)")
    for name, why in out["skipped"].items():  # type: ignore[attr-defined]
        lines.append(f"\n{name} left out: {why}")
    return "\n".join(lines)


RAW_CALL = (
    f"POST {PATH} HTTP/1.1\r\nhost: greet\r\n"
    + "".join(f"{header}\r\n" for header in HEADERS)
    + f"content-length: {len(BODY)}\r\n\r\n"
).encode() + BODY


SHORTER = re.compile(r"^.*/(site-packages|lib/python3\.\d+|generated|benchmarks)/")


async def count_one_call(root: str) -> tuple[int, dict[str, int]]:
    """The calls (Python and C) of one Connect unary JSON call, by module (see the docstring)."""
    import asyncio
    from collections import Counter
    from types import FrameType
    from typing import Any

    from greet.server import GreetServer, ServerConfig

    by_module: Counter[str] = Counter()
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1
            by_module[SHORTER.sub("", frame.f_code.co_filename.removeprefix(root))] += 1
        elif event == "c_call":
            calls += 1
            by_module["(C functions)"] += 1

    async with GreetServer(ServerConfig(port=0)) as server:
        reader, writer = await asyncio.open_connection(*server.address)

        async def call() -> None:
            writer.write(RAW_CALL)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head.lower())
            if not head.startswith(b"HTTP/1.1 200") or length is None:
                raise RuntimeError(f"unexpected answer: {head!r}")
            await reader.readexactly(int(length.group(1)))

        for _ in range(50):
            await call()
        sys.setprofile(profile)
        try:
            await call()
            await asyncio.sleep(0.02)
        finally:
            sys.setprofile(None)
        writer.close()
    return calls, dict(by_module)


def path_length(loop: str) -> None:
    import asyncio

    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    import greet

    root = f"{Path(greet.__file__).resolve().parent.parent}/"  # the checkout greet runs from
    if loop == "uvloop":
        import uvloop

        calls, by_module = uvloop.run(count_one_call(root))
    else:
        calls, by_module = asyncio.run(count_one_call(root))
    for name, count in sorted(by_module.items(), key=lambda item: -item[1]):
        print(f"{count:5d}  {name}")
    print(f"{calls} calls ({loop} event loop)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="connectrpc,greet-nghttp2,greet-h2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="h2load warm-up seconds")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--server-cpu", default="1", help="core the servers are pinned to")
    parser.add_argument("--load-cpu", default="0", help="core h2load and this script run on")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    parser.add_argument(
        "--path-length", action="store_true", help="count the function calls of one call instead"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.path_length:
        path_length(args.loop)
        return 0
    out = run(args)
    out["command"] = shlex.join(["python", "benchmarks/web_compare.py", *(argv or sys.argv[1:])])
    text = report(out)
    print()
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["servers"] else 1


if __name__ == "__main__":
    sys.exit(main())
