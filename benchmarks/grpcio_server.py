"""The comparison server: GreetService on grpcio's asyncio server, with google.protobuf messages.

Benchmark-only (grpcio and grpcio-tools are in the `bench` dependency group). The message and stub
modules are generated from proto/greet.proto with grpcio-tools into a temporary directory when this
script starts, so nothing generated is kept in the repository.

    python benchmarks/grpcio_server.py --port 0 [--compression gzip]

`--compression gzip` (or deflate) makes grpcio's server compress its replies to clients that
accept the encoding (grpcio's `compression=` server argument: every reply message, whatever its
size; grpcio sends a message uncompressed when compressing would not make it smaller). It
prints `grpcio server listening on HOST:PORT` on stderr once it accepts calls, and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"


def generate_modules(out: Path) -> tuple[ModuleType, ModuleType]:
    """Run grpcio-tools' protoc on greet.proto into `out`; return (greet_pb2, greet_pb2_grpc)."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "greet.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with status {code}")
    sys.path.insert(0, str(out))
    return importlib.import_module("greet_pb2"), importlib.import_module("greet_pb2_grpc")


def make_servicer(pb2: ModuleType, pb2_grpc: ModuleType) -> Any:
    """The four calls with the same behaviour as greet.service.GreetService."""

    class Servicer(pb2_grpc.GreetServiceServicer):  # type: ignore[misc,name-defined]
        async def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloResponse(message="Hello")

        async def SayHelloServerStreaming(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for name in request.names:
                yield pb2.HelloResponse(message=f"Hello {name}")

        async def SayHelloClientStreaming(self, request_iterator: Any, context: Any) -> Any:
            messages = [f"Hello {request.name}" async for request in request_iterator]
            return pb2.MessagesList(messages=messages)

        async def SayHelloBidirectionalStreaming(
            self, request_iterator: Any, context: Any
        ) -> AsyncIterator[Any]:
            async for request in request_iterator:
                yield pb2.HelloResponse(message=f"Hello {request.name}")

    return Servicer()


COMPRESSIONS = ("none", "gzip", "deflate")


async def serve(host: str, port: int, compression: str) -> None:
    import grpc

    algorithm = {
        "none": grpc.Compression.NoCompression,
        "gzip": grpc.Compression.Gzip,
        "deflate": grpc.Compression.Deflate,
    }[compression]
    with tempfile.TemporaryDirectory(prefix="greet-grpcio-") as tmp:
        pb2, pb2_grpc = generate_modules(Path(tmp))
        server = grpc.aio.server(
            options=[("grpc.max_concurrent_streams", 10_000)], compression=algorithm
        )
        pb2_grpc.add_GreetServiceServicer_to_server(make_servicer(pb2, pb2_grpc), server)
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        print(f"grpcio server listening on {host}:{bound}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="compress replies (default none)",
    )
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.compression))


if __name__ == "__main__":
    main()
