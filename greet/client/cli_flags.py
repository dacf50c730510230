"""The flags of `python -m greet.client`, declared with greet._settings as the server's are: the
connection flags every command takes (before or after the command; `ConnectionFlags`) and those
of `bench` (`BenchFlags`). The commands themselves are in greet.client.cli; what the flags make
(the client, a bench run) in greet.client.cli_setup.

The client reads no GREET_* variable for its flags: one set for a server (GREET_TLS_CERT, say)
must not change what a client started beside it does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from greet._setting_kinds import Choice, FilePath, Many, Number, Switch, Text
from greet._settings import (
    Declaration,
    Group,
    add_arguments,
    check_values,
    setting,
    settings_group,
    settings_of,
)
from greet.client import PoolOptions, RetryPolicy
from greet.client.arguments import (
    Count,
    Duration,
    MetadataPair,
    NonZero,
    Pick,
    ReadableFile,
)
from greet.client.bench_options import DEFAULT_DURATION, RPC_KINDS, BenchOptions
from greet.client.bench_report import REPORT_FORMATS
from greet.client.bench_schedule import SCHEDULE_KINDS
from greet.transport import ENGINE_NAMES, ChannelConfig, ClientKeepalive

__all__ = [
    "DEFAULT_NAMES_PER_CALL",
    "DEFAULT_TARGET",
    "BenchFlags",
    "ConnectionFlags",
    "add_bench_parser",
    "add_connection_flags",
    "package_version",
]

DEFAULT_TARGET = "127.0.0.1:8080"
DEFAULT_NAMES_PER_CALL = 10

SECONDS = Duration()
RATE = Number(0.0, exclusive=True, metavar="R")
CONNECTION = "connection options (before or after the command)"
LOAD = "load (calls started per second; default: no limit)"
REPORT = "report"


def package_version() -> str:
    try:
        return package_metadata.version("greet")
    except package_metadata.PackageNotFoundError:
        return "(version unknown: the greet package is not installed)"


@dataclass(frozen=True)
class ConnectionFlags:
    """What the connection flags say; the HTTP/2 ones are ChannelConfig's fields, with its
    defaults."""

    target: str = setting(
        DEFAULT_TARGET,
        Text("TARGETS"),
        "server addresses host:port[,host:port...]; dns:///name:port for every address of a name",
    )
    backup: str = setting(
        "",
        Text("TARGETS"),
        "backup targets, used only while every target is down",
        default_text="",
    )
    timeout: float | None = setting(
        None, SECONDS, "deadline per call (all attempts), seconds > 0", unset_text="none"
    )
    tls_ca: Path | None = setting(
        None, ReadableFile(), "PEM CA bundle to verify the server with (turns on TLS)"
    )
    tls_cert: Path | None = setting(
        None, ReadableFile(), "PEM client certificate for mutual TLS (with --tls-key)"
    )
    tls_key: Path | None = setting(
        None, ReadableFile(), "PEM client private key for mutual TLS (with --tls-cert)"
    )
    token_file: Path | None = setting(
        None, ReadableFile(), "file holding a bearer token (first non-# line)"
    )
    metadata: tuple[tuple[str, str], ...] = setting(
        (),
        Many(MetadataPair()),
        "metadata (a header) sent with every call; repeat for more",
        aliases=("-m",),
        default_text="",
    )
    max_attempts: int = setting(
        RetryPolicy.max_attempts, Count(1), "attempts per call, the first included"
    )
    connections: int = setting(
        PoolOptions.connections_per_endpoint,
        Count(1, metavar="K"),
        "HTTP/2 connections per endpoint",
    )
    resolve_interval: float = setting(
        PoolOptions.resolve_interval, SECONDS, "seconds between re-resolutions of dns:/// names"
    )
    transport: ChannelConfig = settings_group(
        ChannelConfig,
        {
            "engine": Declaration(
                Choice(ENGINE_NAMES),
                "HTTP/2 implementation",
                flag="--http2-engine",
                default_text="$GREET_HTTP2_ENGINE, else nghttp2 where ngh2 installs, else h2",
            ),
            "keepalive": Group(
                ClientKeepalive,
                {
                    "time": Declaration(
                        SECONDS,
                        "ping a server that has sent nothing for this long; keep it at or above "
                        "the server's --keepalive-min-time",
                        flag="--keepalive-time",
                    ),
                    "timeout": Declaration(
                        SECONDS,
                        "a ping unanswered this long closes the connection",
                        flag="--keepalive-timeout",
                    ),
                },
            ),
            "compression": Declaration(
                Choice(("gzip", "deflate")),
                "compress request messages (the server's replies come compressed if it is told "
                "to compress: its --compression)",
                unset_text="none",
            ),
            "handshake_timeout": Declaration(
                SECONDS,
                "seconds a connection has to start HTTP/2 (TCP, TLS and the server's settings)",
            ),
        },
    )

    def __post_init__(self) -> None:
        check_values(self)


def add_connection_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The flags of the connection. A command's parser has them too (`after_command`), with
    no defaults, so that a value given before the command is kept unless given again after;
    metadata given after it goes to `metadata_after`, to be sent as well."""
    add_arguments(
        parser,
        settings_of(ConnectionFlags),
        defaults=not after_command,
        section=CONNECTION,
        dests={"metadata": "metadata_after"} if after_command else None,
    )


@dataclass(frozen=True)
class BenchFlags:
    """What the flags of `bench` say (greet.client.cli_setup.bench_options makes the run)."""

    rpc: str = setting(BenchOptions.rpc, Pick(RPC_KINDS), "call kind")
    duration: float | None = setting(
        None,
        SECONDS,
        "how long to run: 30, 500ms, 10s, 2m",
        aliases=("-z",),
        exclusive="length",
        unset_text=f"{DEFAULT_DURATION:g}s",
    )
    requests: int | None = setting(
        None,
        Count(1),
        "number of calls to make",
        aliases=("-n",),
        exclusive="length",
        unset_text="",
    )
    concurrency: int = setting(
        BenchOptions.concurrency, Count(1, metavar="C"), "calls in flight", aliases=("-c",)
    )
    names_per_call: int | None = setting(
        None,
        Count(0),
        "generated names per server-stream call / messages per client-stream or bidi call",
        flag="--names",
        aliases=("--messages",),
        unset_text=str(DEFAULT_NAMES_PER_CALL),
    )
    data: str | None = setting(
        None,
        Text("JSON"),
        'what each call sends, as JSON: {} (unary), {"names": [...]} (server-stream; a list of '
        'them round-robin), [{"name": ...}, ...] (client-stream, bidi)',
        aliases=("-d",),
        exclusive="data",
        unset_text="",
    )
    data_file: Path | None = setting(
        None, ReadableFile(), "--data read from FILE", aliases=("-D",), exclusive="data"
    )
    rps: float | None = setting(
        None, RATE, "at most R calls per second", aliases=("-r",), section=LOAD, unset_text=""
    )
    load_schedule: str = setting(
        "const",
        Pick(SCHEDULE_KINDS),
        "const (--rps), step or line (--load-start, --load-step, ...)",
        section=LOAD,
    )
    load_start: float | None = setting(
        None, RATE, "step/line: first rate", section=LOAD, unset_text=""
    )
    load_step: float | None = setting(
        None,
        NonZero(),
        "step: rate change per step; line: per second (may be negative)",
        section=LOAD,
        unset_text="",
    )
    load_step_duration: float | None = setting(
        None, SECONDS, "step: its length", section=LOAD, unset_text=""
    )
    load_end: float | None = setting(
        None, RATE, "step/line: rate to stop at", section=LOAD, unset_text=""
    )
    load_max_duration: float | None = setting(
        None,
        SECONDS,
        "step/line: stop changing the rate after this long",
        section=LOAD,
        unset_text="",
    )
    skip_first: int = setting(
        BenchOptions.skip_first,
        Count(0),
        "run N warm-up calls first and leave them out of the report (they count towards "
        "--requests)",
    )
    format: str | None = setting(
        None,
        Pick(REPORT_FORMATS),
        "summary (default), json (one object), csv (one row per call) or html (a page with a "
        "histogram chart)",
        aliases=("-O",),
        section=REPORT,
        unset_text="",
    )
    json: bool = setting(
        False, Switch(negatable=False), "the same as --format json", section=REPORT
    )
    output: Path | None = setting(
        None,
        FilePath(),
        "write the report to FILE",
        aliases=("-o",),
        section=REPORT,
        unset_text="stdout",
    )
    no_progress: bool = setting(
        False, Switch(negatable=False), "no progress output on stderr", section=REPORT
    )
    progress_interval: float = setting(
        BenchOptions.progress_interval,
        SECONDS,
        "seconds between progress updates",
        section=REPORT,
    )

    def __post_init__(self) -> None:
        check_values(self)


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
    add_arguments(bench, settings_of(BenchFlags), defaults=True)
    add_connection_flags(bench, after_command=True)
    return bench
