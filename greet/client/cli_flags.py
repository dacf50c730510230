"""The flags of `python -m greet.client`, declared with greet._settings as the server's are: the
connection flags every command takes (before or after the command; `ConnectionFlags`). The
commands themselves are in greet.client.cli; what the flags make (the client) in
greet.client.cli_setup. `bench` adds its own flags (greet.bench).

The client reads no GREET_* variable for its flags: one set for a server (GREET_TLS_CERT, say)
must not change what a client started beside it does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

from greet._setting_kinds import Choice, Many, Text
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
    ReadableFile,
)
from greet.transport import ENGINE_NAMES, ChannelConfig, ClientKeepalive

__all__ = [
    "DEFAULT_TARGET",
    "ConnectionFlags",
    "add_connection_flags",
    "package_version",
]

DEFAULT_TARGET = "127.0.0.1:8080"

SECONDS = Duration()
CONNECTION = "connection options (before or after the command)"


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
