"""`python -m greet.client`: call a GreetService from the command line.

With no command it runs all four call kinds with the names Akhil, Alice and Bob, as the original
Go client did. A failed call prints one line (`error: STATUS: details`) and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from greet.client.core import GreetClient
from greet.errors import RpcError

__all__ = ["DEFAULT_NAMES", "DEFAULT_TARGET", "build_parser", "main"]

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greet.client",
        description="Call greet_service.GreetService. With no command, runs all four call kinds "
        "with the names " + ", ".join(DEFAULT_NAMES) + ".",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help="server address host:port (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="deadline per call, seconds")
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
    return parser


async def run(args: argparse.Namespace, out: TextIO) -> None:
    async with GreetClient(args.target, timeout=args.timeout) as client:
        await args.command(client, args, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args, sys.stdout))
    except RpcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        return 130
    return 0
