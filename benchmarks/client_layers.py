"""CPU per unary call of each client layer, against one greet server on nghttp2.

    python benchmarks/client_layers.py [--calls N] [--rounds R]

Starts `python -m greet.server --http2-engine nghttp2` pinned to CPU 1 (`taskset -c 1`), then
for each client a child process pinned to CPU 0 that makes N sequential SayHello calls (one in
flight, after warm-up) and prints the client's `time.process_time()` per call:

    greet-client    GreetClient.say_hello()
    stub-channel    GreetServiceStub over greet.client.Channel
    stub-transport  GreetServiceStub over greet.transport.Channel (one connection, no features)
    grpcio          grpcio's asyncio client (grpc.aio), the same method

CPU per call, not calls per second, is the figure: the machine is shared. Medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

CLIENTS = ["greet-client", "stub-channel", "stub-transport", "grpcio"]
PATH = "/greet_service.GreetService/SayHello"


async def measure(kind: str, target: str, calls: int) -> float:
    """Microseconds of this process's CPU per call."""
    host, port = target.rsplit(":", 1)
    if kind == "grpcio":
        import grpc

        from greet_service import HelloResponse, NoParam

        async with grpc.aio.insecure_channel(target) as grpc_channel:
            say_hello = grpc_channel.unary_unary(
                PATH,
                request_serializer=lambda message: bytes(message),
                response_deserializer=HelloResponse.FromString,
            )
            request = NoParam()

            async def call() -> object:
                return await say_hello(request)

            return await timed(call, calls)
    from greet.client import Channel, GreetClient
    from greet.transport import Channel as TransportChannel
    from greet_service import GreetServiceStub, NoParam

    if kind == "greet-client":
        async with GreetClient(target) as client:
            return await timed(client.say_hello, calls)
    channel: Channel | TransportChannel = (
        Channel(target) if kind == "stub-channel" else TransportChannel(host, int(port))
    )
    stub = GreetServiceStub(channel)
    message = NoParam()

    async def stub_call() -> object:
        return await stub.say_hello(message)

    try:
        return await timed(stub_call, calls)
    finally:
        channel.close()


async def timed(call: object, calls: int) -> float:
    assert callable(call)
    for _ in range(500):
        await call()
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls * 1e6


def child(kind: str, target: str, calls: int) -> None:
    try:
        import uvloop
    except ImportError:
        print(asyncio.run(measure(kind, target, calls)))
    else:
        print(uvloop.run(measure(kind, target, calls)))


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], options.child[1], options.calls)
        return
    with socket.socket() as probe:  # a free port for the server (it binds it itself)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_command = [
        *pinned(1),
        sys.executable,
        "-m",
        "greet.server",
        "--port",
        str(port),
        "--http2-engine",
        "nghttp2",
    ]
    print("server:", " ".join(server_command))
    server = subprocess.Popen(server_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results: dict[str, list[float]] = {kind: [] for kind in CLIENTS}
        for _ in range(options.rounds):
            for kind in CLIENTS:
                command = [
                    *pinned(0),
                    sys.executable,
                    __file__,
                    "--calls",
                    str(options.calls),
                    "--child",
                    kind,
                    target,
                ]
                output = subprocess.run(
                    command, capture_output=True, text=True, check=True, env=os.environ
                ).stdout
                results[kind].append(float(output.split()[-1]))
        print("client:", " ".join([*pinned(0), "python", __file__, "--child", "KIND", target]))
        grpcio = statistics.median(results["grpcio"])
        for kind in CLIENTS:
            median = statistics.median(results[kind])
            print(f"{kind:15} {median:7.1f} us CPU/call   grpcio/this {grpcio / median:5.2f}x")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
