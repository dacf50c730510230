"""`python -m greet.client`: call a GreetService from the command line, or benchmark it.

With no command it runs all four call kinds with the names Akhil, Alice and Bob, as the original
Go client did. A failed call prints one line (`error: STATUS: details`) and exits with status 1.
`--target` takes several comma-separated targets (`h1:p1,h2:p2`, `dns:///name:port`) and
`--backup` targets used only while every target is down; `--tls-ca` turns on TLS (built by
`greet.tls.client_ssl_context`; `--tls-cert`/`--tls-key` for mutual TLS) and `--token-file`
sends a bearer token. `bench` is described in greet.client.bench.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from greet.client.bench import RPC_KINDS, BenchOptions, format_summary, run_bench, to_json_line
from greet.client.core import GreetClient
from greet.client.pool import PoolOptions
from greet.client.retry import RetryPolicy
from greet.errors import RpcError
from greet.tls import client_ssl_context

__all__ = [
    "DEFAULT_NAMES",
    "DEFAULT_TARGET",
    "build_parser",
    "main",
    "read_token_file",
]

DEFAULT_TARGET = "127.0.0.1:8080"
DEFAULT_NAMES = ("Akhil", "Alice", "Bob")

Command = Callable[[GreetClient, argparse.Namespace, TextIO], Coroutine[Any, Any, None]]


async def run_unary(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    reply = await client.say_hello()
    print(f"SayHello: {reply.message}", file=out)


async def run_server_stream(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    async for reply in client.say_hello_server_streaming(args.names):
        print(f"SayHelloServerStreaming: {reply.message}", file=out)


async def run_client_stream(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    reply = await client.say_hello_client_streaming(args.names)
    print(f"SayHelloClientStreaming: {list(reply.messages)}", file=out)


async def run_bidi(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    async for reply in client.say_hello_bidirectional_streaming(args.names):
        print(f"SayHelloBidirectionalStreaming: {reply.message}", file=out)


async def run_all(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    for command in (run_unary, run_server_stream, run_client_stream, run_bidi):
        await command(client, args, out)


async def run_bench_command(client: GreetClient, args: argparse.Namespace, out: TextIO) -> None:
    options = BenchOptions(
        rpc=args.rpc,
        duration=args.duration,
        requests=args.requests,
        concurrency=args.concurrency,
        names=args.names_per_call,
        progress_interval=args.progress_interval,
    )
    progress = None if args.no_progress else sys.stderr
    result = await run_bench(client, options, progress)
    if args.json:
        print(to_json_line(result), file=out)
    else:
        print(format_summary(result, args.connections), file=out)


def read_token_file(path: Path) -> str:
    """The first line of `path` that is neither empty nor a `#` comment."""
    for line in path.read_text().splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            return token
    raise ValueError(f"{path}: no token in the file")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greet.client",
        description="Call greet_service.GreetService. With no command, runs all four call kinds "
        "with the names " + ", ".join(DEFAULT_NAMES) + ".",
    )
    add = parser.add_argument
    add(
        "--target",
        default=DEFAULT_TARGET,
        metavar="TARGETS",
        help="server addresses host:port[,host:port...]; dns:///name:port for every address "
        "of a name (default %(default)s)",
    )
    add(
        "--backup",
        default="",
        metavar="TARGETS",
        help="backup targets, used only while every target is down",
    )
    add("--timeout", type=float, default=None, help="deadline per call (all attempts), seconds")
    add("--tls-ca", type=Path, help="PEM CA bundle to verify the server with (turns on TLS)")
    add("--tls-cert", type=Path, help="PEM client certificate for mutual TLS (with --tls-key)")
    add("--tls-key", type=Path, help="PEM client private key for mutual TLS")
    add("--token-file", type=Path, help="file holding a bearer token (first non-# line)")
    add(
        "--max-attempts",
        type=positive_int,
        default=RetryPolicy.max_attempts,
        help="attempts per call, the first included (default %(default)s)",
    )
    add(
        "--connections",
        type=positive_int,
        default=PoolOptions.connections_per_endpoint,
        help="HTTP/2 connections per endpoint (default %(default)s)",
    )
    add(
        "--resolve-interval",
        type=float,
        default=PoolOptions.resolve_interval,
        help="seconds between re-resolutions of dns:/// names (default %(default)s)",
    )
    parser.set_defaults(command=run_all, names=list(DEFAULT_NAMES))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands.add_parser("unary", help="SayHello").set_defaults(command=run_unary)
    for name, command, description in (
        ("server-stream", run_server_stream, "SayHelloServerStreaming"),
        ("client-stream", run_client_stream, "SayHelloClientStreaming"),
        ("bidi", run_bidi, "SayHelloBidirectionalStreaming"),
    ):
        sub = commands.add_parser(name, help=description)
        sub.add_argument("names", nargs="*", metavar="NAME", help="names to greet")
        sub.set_defaults(command=command)
    add_bench_parser(commands)
    return parser


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="load the service and report rate and latency",
        description="Call one RPC kind back to back from --concurrency workers, for --duration "
        "seconds or --requests calls; print a summary (or --json).",
    )
    add = bench.add_argument
    add("--rpc", choices=RPC_KINDS, default="unary", help="call kind (default %(default)s)")
    length = bench.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="seconds to run (default 10)")
    length.add_argument("--requests", type=positive_int, help="number of calls to make")
    add("--concurrency", type=positive_int, default=16, help="calls in flight (default 16)")
    add(
        "--connections",
        type=positive_int,
        dest="bench_connections",
        metavar="K",
        help="HTTP/2 connections per endpoint (overrides the global --connections)",
    )
    add(
        "--names",
        "--messages",
        type=int,
        default=10,
        dest="names_per_call",
        metavar="N",
        help="names per server-stream call / messages per client-stream or bidi call",
    )
    add("--json", action="store_true", help="print one JSON object instead of the summary")
    add("--no-progress", action="store_true", help="no progress output on stderr")
    add("--progress-interval", type=float, default=0.5, help="seconds between progress updates")
    bench.set_defaults(command=run_bench_command)


async def run(args: argparse.Namespace, out: TextIO) -> None:
    async with make_client(args) as client:
        await args.command(client, args, out)


def make_client(args: argparse.Namespace) -> GreetClient:
    if getattr(args, "bench_connections", None):
        args.connections = args.bench_connections
    if args.command is run_bench_command and args.duration is None and args.requests is None:
        args.duration = 10.0
    tls = args.tls_ca is not None or args.tls_cert is not None
    return GreetClient(
        args.target,
        backup=args.backup,
        timeout=args.timeout,
        ssl=client_ssl_context(args.tls_ca, args.tls_cert, args.tls_key) if tls else None,
        token=read_token_file(args.token_file) if args.token_file is not None else None,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        pool=PoolOptions(
            connections_per_endpoint=args.connections,
            resolve_interval=args.resolve_interval,
        ),
    )


def run_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, on uvloop when it is installed (faster, notably for `bench`)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_loop(run(args, sys.stdout))
    except RpcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        return 130
    return 0
