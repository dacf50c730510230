"""`python -m greet.client` (also `greet-client`): call a GreetService, or benchmark it.

With no command it runs all four call kinds with the names Akhil, Alice and Bob, as the original
Go client did. A failed call prints one line (`error: STATUS: details`) and exits with status 1;
a usage error prints one line and a `--help` hint and exits with status 2; Ctrl-C exits with
status 130 and no traceback. The connection flags (`--target`, `--timeout`, TLS, tokens,
metadata, retries, pool) go before or after the command. `--target` takes several
comma-separated targets (`h1:p1,h2:p2`, `dns:///name:port`) and `--backup` targets used only
while every target is down; `--tls-ca` turns on TLS (`--tls-cert`/`--tls-key` for mutual TLS),
`--token-file` sends a bearer token and `--metadata KEY=VALUE` any header with every call.
`bench` is described in greet.client.bench and greet.client.bench_report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, TextIO

from greet.client.arguments import (
    OneLineErrorParser,
    UsageError,
    metadata_pair,
    non_negative_int,
    positive_int,
    positive_number,
    positive_seconds,
    program_name,
    readable_file,
    signed_number,
    usage_error_text,
)
from greet.client.bench import DEFAULT_DURATION, RPC_KINDS, BenchOptions, run_bench
from greet.client.bench_data import CallData, call_data_from_json, default_call_data
from greet.client.bench_report import REPORT_FORMATS, render_report
from greet.client.bench_schedule import SCHEDULE_KINDS, load_schedule_from_flags
from greet.client.core import GreetClient
from greet.client.pool import PoolOptions
from greet.client.retry import RetryPolicy
from greet.client.tls_flags import ssl_context_from_flags
from greet.errors import RpcError
from greet.transport import ENGINE_NAMES, ChannelConfig, ClientKeepalive

__all__ = [
    "DEFAULT_NAMES",
    "DEFAULT_TARGET",
    "build_parser",
    "main",
    "read_token_file",
]

DEFAULT_TARGET = "127.0.0.1:8080"
DEFAULT_NAMES = ("Akhil", "Alice", "Bob")
DEFAULT_NAMES_PER_CALL = 10
INTERRUPTED = 130  # the shell's status for a command ended by SIGINT

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


@contextlib.contextmanager
def interrupt_sets(event: asyncio.Event) -> Iterator[None]:
    """While inside, SIGINT (Ctrl-C) sets `event` instead of interrupting the program."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, event.set)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows, a thread)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def run_bench_command(client: GreetClient, args: argparse.Namespace, out: TextIO) -> int:
    options: BenchOptions = args.bench_options
    stop = asyncio.Event()
    with interrupt_sets(stop):
        result = await run_bench(client, options, None if args.no_progress else sys.stderr, stop)
    report = render_report(result, args.format, args.connections)
    report_out: TextIO = args.output_file or out
    report_out.write(report)
    report_out.flush()
    if result.interrupted:
        print("interrupted: the report covers the calls made so far", file=sys.stderr)
        return INTERRUPTED
    if result.failed:
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(result.errors.items()))
        print(
            f"error: {result.failed} of {result.counted} calls failed ({statuses})", file=sys.stderr
        )
        return 1
    return 0


def read_token_file(path: Path) -> str:
    """The first line of `path` that is neither empty nor a `#` comment."""
    for line in path.read_text().splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            return token
    raise ValueError(f"{path}: no token in the file")


def package_version() -> str:
    try:
        return package_metadata.version("greet")
    except package_metadata.PackageNotFoundError:
        return "(version unknown: the greet package is not installed)"


def add_connection_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The flags of the connection. A command's parser has them too (`after_command`), with
    no defaults, so that a value given before the command is kept unless given again after."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    title = "connection options (before or after the command)"
    add = parser.add_argument_group(title).add_argument
    add(
        "--target",
        default=default(DEFAULT_TARGET),
        metavar="TARGETS",
        help="server addresses host:port[,host:port...]; dns:///name:port for every address "
        f"of a name (default {DEFAULT_TARGET})",
    )
    add(
        "--backup",
        default=default(""),
        metavar="TARGETS",
        help="backup targets, used only while every target is down",
    )
    add(
        "--timeout",
        type=positive_seconds,
        default=default(None),
        metavar="SECONDS",
        help="deadline per call (all attempts), seconds > 0 (default: none)",
    )
    add(
        "--tls-ca",
        type=readable_file,
        default=default(None),
        metavar="FILE",
        help="PEM CA bundle to verify the server with (turns on TLS)",
    )
    add(
        "--tls-cert",
        type=readable_file,
        default=default(None),
        metavar="FILE",
        help="PEM client certificate for mutual TLS (with --tls-key)",
    )
    add(
        "--tls-key",
        type=readable_file,
        default=default(None),
        metavar="FILE",
        help="PEM client private key for mutual TLS (with --tls-cert)",
    )
    add(
        "--token-file",
        type=readable_file,
        default=default(None),
        metavar="FILE",
        help="file holding a bearer token (first non-# line)",
    )
    add(
        "-m",
        "--metadata",
        type=metadata_pair,
        action="append",
        dest="metadata_after" if after_command else "metadata",
        default=default(None),
        metavar="KEY=VALUE",
        help="metadata (a header) sent with every call; repeat for more",
    )
    add(
        "--max-attempts",
        type=positive_int,
        default=default(RetryPolicy.max_attempts),
        metavar="N",
        help=f"attempts per call, the first included (default {RetryPolicy.max_attempts})",
    )
    add(
        "--connections",
        type=positive_int,
        default=default(PoolOptions.connections_per_endpoint),
        metavar="K",
        help=f"HTTP/2 connections per endpoint (default {PoolOptions.connections_per_endpoint})",
    )
    add(
        "--resolve-interval",
        type=positive_seconds,
        default=default(PoolOptions.resolve_interval),
        metavar="SECONDS",
        help="seconds between re-resolutions of dns:/// names "
        f"(default {PoolOptions.resolve_interval:g})",
    )
    add(
        "--http2-engine",
        choices=ENGINE_NAMES,
        default=default(None),
        help="HTTP/2 implementation (default: $GREET_HTTP2_ENGINE, else nghttp2 where ngh2 "
        "installs, else h2)",
    )
    add(
        "--keepalive-time",
        type=positive_seconds,
        default=default(None),
        metavar="SECONDS",
        help="ping a server that has sent nothing for this long (default: off); keep it at or "
        "above the server's --keepalive-min-time",
    )
    add(
        "--keepalive-timeout",
        type=positive_seconds,
        default=default(ClientKeepalive.timeout),
        metavar="SECONDS",
        help="a ping unanswered this long closes the connection "
        f"(default {ClientKeepalive.timeout:g})",
    )
    add(
        "--compression",
        choices=("gzip", "deflate"),
        default=default(None),
        help="compress request messages (the server's replies come compressed if it is told to "
        "compress: its --compression)",
    )
    add(
        "--handshake-timeout",
        type=positive_seconds,
        default=default(ChannelConfig.handshake_timeout),
        metavar="SECONDS",
        help="seconds a connection has to start HTTP/2 (TCP, TLS and the server's settings) "
        f"(default {ChannelConfig.handshake_timeout:g})",
    )


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
    add_bench_parser(commands)
    return parser


def add_bench_parser(commands: Any) -> None:
    bench: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="load the service and report rate and latency",
        description="Call one RPC kind from --concurrency workers, back to back or at a --rps "
        "rate or load schedule, for --duration seconds or --requests calls; then report in "
        "--format summary (default), json, csv or html, to stdout or -o FILE. Exits 1 when a "
        "call failed; Ctrl-C reports the calls made so far and exits 130.",
    )
    add = bench.add_argument
    add("--rpc", choices=RPC_KINDS, default="unary", help="call kind (default %(default)s)")
    length = bench.add_mutually_exclusive_group()
    length.add_argument(
        "-z",
        "--duration",
        type=positive_seconds,
        metavar="SECONDS",
        help=f"how long to run: 30, 500ms, 10s, 2m (default {DEFAULT_DURATION:g}s)",
    )
    length.add_argument(
        "-n", "--requests", type=positive_int, metavar="N", help="number of calls to make"
    )
    add(
        "-c",
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="C",
        help="calls in flight (default %(default)s)",
    )
    add(
        "--names",
        "--messages",
        type=non_negative_int,
        default=None,
        dest="names_per_call",
        metavar="N",
        help="generated names per server-stream call / messages per client-stream or bidi "
        f"call (default {DEFAULT_NAMES_PER_CALL})",
    )
    data = bench.add_mutually_exclusive_group()
    data.add_argument(
        "-d",
        "--data",
        metavar="JSON",
        help='what each call sends, as JSON: {} (unary), {"names": [...]} (server-stream; a '
        'list of them round-robin), [{"name": ...}, ...] (client-stream, bidi)',
    )
    data.add_argument(
        "-D", "--data-file", type=readable_file, metavar="FILE", help="--data read from FILE"
    )
    load = bench.add_argument_group("load (calls started per second; default: no limit)")
    load.add_argument(
        "-r", "--rps", type=positive_number, metavar="R", help="at most R calls per second"
    )
    load.add_argument(
        "--load-schedule",
        choices=SCHEDULE_KINDS,
        default="const",
        help="const (--rps), step or line (--load-start, --load-step, ...)",
    )
    load.add_argument(
        "--load-start", type=positive_number, metavar="R", help="step/line: first rate"
    )
    load.add_argument(
        "--load-step",
        type=signed_number,
        metavar="D",
        help="step: rate change per step; line: per second (may be negative)",
    )
    load.add_argument(
        "--load-step-duration", type=positive_seconds, metavar="SECONDS", help="step: its length"
    )
    load.add_argument(
        "--load-end", type=positive_number, metavar="R", help="step/line: rate to stop at"
    )
    load.add_argument(
        "--load-max-duration",
        type=positive_seconds,
        metavar="SECONDS",
        help="step/line: stop changing the rate after this long",
    )
    add(
        "--skip-first",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="run N warm-up calls first and leave them out of the report "
        "(they count towards --requests)",
    )
    output = bench.add_argument_group("report")
    output.add_argument(
        "-O",
        "--format",
        choices=REPORT_FORMATS,
        default=None,
        help="summary (default), json (one object), csv (one row per call) or html (a page "
        "with a histogram chart)",
    )
    output.add_argument("--json", action="store_true", help="the same as --format json")
    output.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write the report to FILE"
    )
    output.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    output.add_argument(
        "--progress-interval",
        type=positive_seconds,
        default=0.5,
        metavar="SECONDS",
        help="seconds between progress updates (default %(default)s)",
    )
    bench.set_defaults(command=run_bench_command, help_prog=bench.prog)
    add_connection_flags(bench, after_command=True)


class ConnectionFlagError(UsageError):
    """A connection flag (`--target`, TLS, token, metadata) is wrong."""


@dataclass(frozen=True)
class ClientSetup:
    """Everything GreetClient needs, checked before the event loop starts."""

    targets: str
    backup: str
    timeout: float | None
    ssl_context: ssl.SSLContext | None
    token: str | None
    metadata: dict[str, str]
    max_attempts: int
    connections: int
    resolve_interval: float
    transport: ChannelConfig

    def client(self) -> GreetClient:
        try:
            return GreetClient(
                self.targets,
                backup=self.backup,
                timeout=self.timeout,
                ssl=self.ssl_context,
                token=self.token,
                metadata=self.metadata,
                retry=RetryPolicy(max_attempts=self.max_attempts),
                pool=PoolOptions(
                    connections_per_endpoint=self.connections,
                    resolve_interval=self.resolve_interval,
                ),
                transport=self.transport,
            )
        except ValueError as error:
            raise ConnectionFlagError(str(error)) from None


def client_setup(args: argparse.Namespace) -> ClientSetup:
    """The client the flags describe; UsageError naming the flag when one is wrong."""
    token = None
    if args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except (OSError, ValueError) as error:
            raise ConnectionFlagError(
                f"--token-file {args.token_file}: {token_file_problem(error)}"
            ) from None
    entries = (args.metadata or []) + getattr(args, "metadata_after", [])
    metadata: dict[str, str] = {}
    for key, value in entries:
        if key in metadata:
            raise ConnectionFlagError(f"--metadata {key} is given twice")
        metadata[key] = value
    if token is not None and "authorization" in metadata:
        raise ConnectionFlagError(
            "give the token with --token-file or --metadata authorization=..., not both"
        )
    return ClientSetup(
        targets=args.target,
        backup=args.backup,
        timeout=args.timeout,
        ssl_context=tls_context(args),
        token=token,
        metadata=metadata,
        max_attempts=args.max_attempts,
        connections=args.connections,
        resolve_interval=args.resolve_interval,
        transport=channel_config(args),
    )


def channel_config(args: argparse.Namespace) -> ChannelConfig:
    """The HTTP/2 connection settings the flags describe."""
    keepalive = ClientKeepalive(time=args.keepalive_time, timeout=args.keepalive_timeout)
    engine = {} if args.http2_engine is None else {"engine": args.http2_engine}
    return ChannelConfig(
        keepalive=keepalive,
        handshake_timeout=args.handshake_timeout,
        compression=args.compression,
        **engine,
    )


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    try:
        return ssl_context_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
    except UsageError as error:
        raise ConnectionFlagError(str(error)) from None


def token_file_problem(error: OSError | ValueError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not a text file"
    if isinstance(error, OSError):
        return f"cannot read it: {error.strerror or error}"
    return "no token in the file (the first line that is not empty or a # comment)"


def bench_options(args: argparse.Namespace) -> BenchOptions:
    """The run the bench flags describe; UsageError naming the flag when one is wrong."""
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json is --format json; it cannot go with --format {args.format}")
    args.format = "json" if args.json else args.format or "summary"
    try:
        schedule = load_schedule_from_flags(
            args.load_schedule,
            rps=args.rps,
            start=args.load_start,
            step=args.load_step,
            step_duration=args.load_step_duration,
            end=args.load_end,
            max_duration=args.load_max_duration,
        )
        return BenchOptions(
            rpc=args.rpc,
            duration=args.duration
            if args.duration is not None or args.requests is not None
            else DEFAULT_DURATION,
            requests=args.requests,
            concurrency=args.concurrency,
            data=bench_data(args),
            schedule=schedule,
            skip_first=args.skip_first,
            progress_interval=args.progress_interval,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def bench_data(args: argparse.Namespace) -> CallData:
    if args.data is None and args.data_file is None:
        count = DEFAULT_NAMES_PER_CALL if args.names_per_call is None else args.names_per_call
        return default_call_data(count)
    if args.names_per_call is not None:
        raise UsageError("--names generates names; with --data or --data-file the JSON has them")
    if args.data is not None:
        flag, text = "--data", args.data
    else:
        flag = f"--data-file {args.data_file}"
        try:
            text = args.data_file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{flag}: cannot read it: {error}") from None
    try:
        return call_data_from_json(args.rpc, text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def open_output(args: argparse.Namespace) -> TextIO | None:
    """The `-o FILE` of bench, opened now, so that a path that cannot be written to fails
    before the run rather than after it."""
    path: Path | None = getattr(args, "output", None)
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise UsageError(
            f"-o {args.output}: cannot write to it: {error.strerror or error}"
        ) from None


async def run(setup: ClientSetup, args: argparse.Namespace, out: TextIO) -> int:
    command: Command = args.command
    async with setup.client() as client:
        return await command(client, args, out)


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
        return INTERRUPTED


def run_main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.output_file = None
    try:
        setup = client_setup(args)
        if args.command is run_bench_command:
            args.bench_options = bench_options(args)
            args.output_file = open_output(args)
        try:
            return run_loop(run(setup, args, sys.stdout))
        finally:
            if args.output_file is not None:
                args.output_file.close()
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
