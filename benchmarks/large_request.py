"""Time to the first reply of a server stream whose request is large: greet on each engine,
grpcio's asyncio server and grpc-go, with one common client.

    python benchmarks/large_request.py [--names 100000 300000] [--runs 7] [--no-pin]

Each server is started as compare.py starts it (benchmarks/servers.py), pinned to core 0, and the
client (grpcio's synchronous client, with google.protobuf messages) runs in this process on core
1. For every size, the client opens its connection with a small call first, then sends
SayHelloServerStreaming with a NamesList of N names of 6 characters (8 bytes each on the wire:
100,000 names are 0.8 MB) and measures the time from the call until its first reply message
arrives; the rest of the stream is cancelled. The request bytes are serialized before the clock
starts. Servers not being measured are paused (SIGSTOP), and the servers take turns, run by run.

Printed: the median (and min-max) time to first reply in milliseconds, and the median server CPU
per request (user + system, from /proc: the whole request, cancelled stream included), with the
commands that start each server. grpc-go is left out (with the reason) where it does not build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from grpcio_server import generate_modules  # noqa: E402
from servers import (  # noqa: E402
    ENGINES,
    RunningServer,
    ServerSpec,
    build_go_server,
    go_spec,
    greet_spec,
    grpcio_spec,
)

METHOD = "/greet_service.GreetService/SayHelloServerStreaming"


def names_request(pb2: Any, count: int) -> bytes:
    names = [f"{i % 1000000:06d}" for i in range(count)]
    return bytes(pb2.NamesList(names=names).SerializeToString())


def first_reply_seconds(channel: Any, request: bytes) -> float:
    """Seconds from the call to its first reply message; the rest of the stream is cancelled."""
    call = channel.unary_stream(METHOD, request_serializer=None, response_deserializer=None)
    started = time.perf_counter()
    replies = call(request, timeout=120)
    next(replies)
    elapsed = time.perf_counter() - started
    replies.cancel()
    return elapsed


def measure(server: RunningServer, request: bytes, warmup: bytes) -> tuple[float, float]:
    """(seconds to the first reply, server CPU seconds) of one large request on a new channel."""
    import grpc

    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(server.target, options=options) as channel:
        first_reply_seconds(channel, warmup)  # the connection is up and warm
        cpu = server.cpu_seconds()
        elapsed = first_reply_seconds(channel, request)
        time.sleep(0.2)  # the cancelled stream's remaining work ends up in the CPU figure
        return elapsed, server.cpu_seconds() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-pin", action="store_true", help="run servers and client unpinned")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["greet-nghttp2", "greet-h2", "grpcio", "grpc-go"],
        help="which servers to measure",
    )
    args = parser.parse_args()
    server_cpus = None if args.no_pin else "0"
    if not args.no_pin and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})

    scratch = Path(tempfile.mkdtemp(prefix="greet-large-request-"))
    pb2, _ = generate_modules(scratch)
    specs: list[ServerSpec] = [greet_spec(engine) for engine in ENGINES]
    specs.append(grpcio_spec())
    skipped: dict[str, str] = {}
    if "grpc-go" in args.servers:
        binary, why = build_go_server(scratch / "go")
        if binary is None:
            skipped["grpc-go"] = why
        else:
            specs.append(go_spec(binary, pinned=server_cpus is not None))
    specs = [spec for spec in specs if spec.name in args.servers]

    warmup = names_request(pb2, 1)
    requests = {count: names_request(pb2, count) for count in args.names}
    servers = [RunningServer(spec, server_cpus) for spec in specs]
    times: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    try:
        for server in servers:
            server.pause()
        for run in range(args.runs):
            order = servers[run % len(servers) :] + servers[: run % len(servers)]
            for server in order:
                server.resume()
                try:
                    for count, request in requests.items():
                        elapsed, cpu = measure(server, request, warmup)
                        times.setdefault((server.spec.name, count), []).append(elapsed)
                        cpus.setdefault((server.spec.name, count), []).append(cpu)
                finally:
                    server.pause()
    finally:
        for server in servers:
            server.stop()

    sizes = {count: len(request) for count, request in requests.items()}
    print(f"Time to the first reply of SayHelloServerStreaming, {args.runs} runs, one client")
    print("(grpcio's sync client, in this process" + ("" if args.no_pin else ", core 1") + ")\n")
    header = "| server |" + "".join(
        f" {count:,} names ({sizes[count] / 1e6:.1f} MB): ms, median (min-max) | server CPU ms |"
        for count in args.names
    )
    print(header)
    print("|---|" + "---|---|" * len(args.names))
    for server in servers:
        row = f"| {server.spec.label} |"
        for count in args.names:
            got = times[(server.spec.name, count)]
            cpu_seconds = cpus[(server.spec.name, count)]
            row += (
                f" {statistics.median(got) * 1e3:.1f} ({min(got) * 1e3:.1f}-{max(got) * 1e3:.1f}) |"
                f" {statistics.median(cpu_seconds) * 1e3:.0f} |"
            )
        print(row)
    for name, why in skipped.items():
        print(f"\n{name}: not measured ({why})")
    print("\nServers:")
    for server in servers:
        print(f"  {server.command}")
    print(f"Client: python benchmarks/large_request.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
