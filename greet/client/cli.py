"""`python -m greet.client` (also `greet-client`): call a GreetService, or benchmark it.

With no command it runs all four call kinds with the names Akhil, Alice and Bob, as the original
Go client did. A failed call prints one line (`error: STATUS: details`) and exits with status 1;
a usage error (an unknown flag among them) prints one line and a `--help` hint and exits with
status 2; Ctrl-C ends the call at once, whatever it waits for, and exits with status 130 and one
line (`interrupted ...`), no traceback. The connection flags (`--target`, `--timeout`, TLS, tokens,
metadata, retries, pool) go before or after the command. `--target` takes several
comma-separated targets (`h1:p1,h2:p2`, `dns:///name:port`) and `--backup` targets used only
while every target is down; `--tls-ca` turns on TLS (`--tls-cert`/`--tls-key` for mutual TLS),
`--token-file` sends a bearer token and `--metadata KEY=VALUE` any header with every call.
`bench` is greet.bench's (docs/bench.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from greet._settings import SettingsParser as OneLineErrorParser
from greet._settings import usage_error_text
from greet.bench import add_bench_parser, bench_main
from greet.client import GreetClient
from greet.client.arguments import UsageError, program_name
from greet.client.cli_flags import (
    DEFAULT_TARGET,
    add_connection_flags,
    package_version,
)
from greet.client.cli_setup import (
    ClientSetup,
    ConnectionFlagError,
    client_setup,
    interrupt_sets,
    read_token_file,
)
from greet.errors import RpcError

__all__ = [
    "DEFAULT_NAMES",
    "DEFAULT_TARGET",
    "build_parser",
    "main",
    "read_token_file",
]

DEFAULT_NAMES = ("Akhil", "Alice", "Bob")
INTERRUPTED = 130  # the shell's status for a command ended by SIGINT
INTERRUPTED_TEXT = "interrupted (Ctrl-C): the call was cancelled"

Command = Callable[[GreetClient, argparse.Namespace, TextIO], Coroutine[Any, Any, int]]


async def run_unary(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    reply = await client.say_hello()
    print(f"SayHello: {reply.message}", file=out)
    return 0


async def run_server_stream(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    async for reply in client.say_hello_server_streaming(args.names):
        print(f"SayHelloServerStreaming: {reply.message}", file=out)
    return 0


async def run_client_stream(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    reply = await client.say_hello_client_streaming(args.names)
    print(f"SayHelloClientStreaming: {list(reply.messages)}", file=out)
    return 0


async def run_bidi(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    async for reply in client.say_hello_bidirectional_streaming(args.names):
        print(f"SayHelloBidirectionalStreaming: {reply.message}", file=out)
    return 0


async def run_all(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    for command in (run_unary, run_server_stream, run_client_stream, run_bidi):
        await command(client, args, out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=program_name(),
        description="Call greet_service.GreetService. With no command, runs all four call kinds "
        "with the names " + ", ".join(DEFAULT_NAMES) + ".",
    )
    parser.add_argument("--version", action="version", version=f"greet-client {package_version()}")
    add_connection_flags(parser, after_command=False)
    parser.set_defaults(
        command=run_all, names=list(DEFAULT_NAMES), help_prog=parser.prog, main_prog=parser.prog
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    unary = commands.add_parser("unary", help="SayHello", description="Call SayHello.")
    unary.set_defaults(command=run_unary, help_prog=unary.prog)
    add_connection_flags(unary, after_command=True)
    for name, command, method in (
        ("server-stream", run_server_stream, "SayHelloServerStreaming"),
        ("client-stream", run_client_stream, "SayHelloClientStreaming"),
        ("bidi", run_bidi, "SayHelloBidirectionalStreaming"),
    ):
        sub = commands.add_parser(name, help=method, description=f"Call {method}.")
        sub.add_argument("names", nargs="*", metavar="NAME", help="names to greet")
        sub.set_defaults(command=command, help_prog=sub.prog)
        add_connection_flags(sub, after_command=True)
    bench = add_bench_parser(commands)
    bench.set_defaults(command=bench_main, help_prog=bench.prog)
    return parser


async def run(setup: ClientSetup, args: argparse.Namespace, out: TextIO) -> int:
    command: Command = args.command
    async with setup.client() as client:
        status = await until_interrupted(command(client, args, out))
        if status == INTERRUPTED:
            print(INTERRUPTED_TEXT, file=sys.stderr)
        return status


async def until_interrupted(command: Coroutine[Any, Any, int]) -> int:
    """`command`'s exit status; on Ctrl-C, INTERRUPTED at once.

    Ctrl-C cancels the command and does not wait for it to unwind, because a cancellation can be
    lost on its way down: before Python 3.12, asyncio.wait_for returns what it waited for when
    that completes in the loop turn in which the cancellation arrives (CPython gh-86296), so a
    Ctrl-C at the instant the connection opened left the call waiting for the server's HTTP/2
    settings. The client then closes, and asyncio.run cancels what is left once more.
    """
    interrupted = asyncio.Event()

    async def outcome() -> int:
        try:
            return await command
        except Exception:
            if interrupted.is_set():  # left after Ctrl-C: how it ended concerns no one
                return INTERRUPTED
            raise

    with interrupt_sets(interrupted):
        task = asyncio.ensure_future(outcome())
        interrupt = asyncio.ensure_future(interrupted.wait())
        try:
            await asyncio.wait((task, interrupt), return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupt.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return INTERRUPTED


def run_loop(coroutine: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, on uvloop when it is installed (faster, notably for `bench`)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run_main(argv)
    except KeyboardInterrupt:
        print(INTERRUPTED_TEXT, file=sys.stderr)
        return INTERRUPTED


def run_main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup = client_setup(args)
        if args.command is bench_main:
            status: int = bench_main(setup, args, sys.stdout)
            return status
        return run_loop(run(setup, args, sys.stdout))
    except ConnectionFlagError as error:  # the program's own flags, wherever they were given
        sys.stderr.write(usage_error_text(args.main_prog, str(error)))
        return 2
    except UsageError as error:
        sys.stderr.write(usage_error_text(args.help_prog, str(error)))
        return 2
    except RpcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
