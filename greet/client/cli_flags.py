"""The flags of `python -m greet.client`: the connection flags every command takes (before or
after the command) and those of `bench`. The commands themselves are in greet.client.cli."""

from __future__ import annotations

import argparse
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from greet.client import PoolOptions, RetryPolicy
from greet.client.arguments import (
    metadata_pair,
    non_negative_int,
    positive_int,
    positive_number,
    positive_seconds,
    readable_file,
    signed_number,
)
from greet.client.bench import DEFAULT_DURATION, RPC_KINDS
from greet.client.bench_report import REPORT_FORMATS
from greet.client.bench_schedule import SCHEDULE_KINDS
from greet.transport import ENGINE_NAMES, ChannelConfig, ClientKeepalive

__all__ = [
    "DEFAULT_NAMES_PER_CALL",
    "DEFAULT_TARGET",
    "add_bench_parser",
    "add_connection_flags",
    "package_version",
]

DEFAULT_TARGET = "127.0.0.1:8080"
DEFAULT_NAMES_PER_CALL = 10


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


def add_bench_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `bench` command and its flags to `commands`; its parser, for the caller to bind."""
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
    add_connection_flags(bench, after_command=True)
    return bench
