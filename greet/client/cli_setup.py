"""What the client's flags describe, checked before the event loop starts: the GreetClient
(ClientSetup), its connection settings, TLS and token, and a bench run's options and data."""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path

from greet.client import GreetClient, PoolOptions, RetryPolicy
from greet.client.arguments import (
    UsageError,
)
from greet.client.bench import DEFAULT_DURATION, BenchOptions
from greet.client.bench_data import CallData, call_data_from_json, default_call_data
from greet.client.bench_schedule import load_schedule_from_flags
from greet.client.cli_flags import DEFAULT_NAMES_PER_CALL
from greet.client.tls_flags import ssl_context_from_flags
from greet.transport import ChannelConfig, ClientKeepalive

__all__ = [
    "ClientSetup",
    "ConnectionFlagError",
    "bench_options",
    "client_setup",
    "read_token_file",
]


def read_token_file(path: Path) -> str:
    """The first line of `path` that is neither empty nor a `#` comment."""
    for line in path.read_text().splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            return token
    raise ValueError(f"{path}: no token in the file")


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
