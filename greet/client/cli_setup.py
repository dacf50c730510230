"""What the client's flags describe, checked before the event loop starts: the GreetClient
(ClientSetup) with its TLS and token, and a bench run's options and data."""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path

from greet._settings import build
from greet.client import GreetClient, PoolOptions, RetryPolicy
from greet.client.arguments import UsageError
from greet.client.bench_data import CallData, call_data_from_json, default_call_data
from greet.client.bench_options import DEFAULT_DURATION, BenchOptions
from greet.client.bench_schedule import load_schedule_from_flags
from greet.client.cli_flags import DEFAULT_NAMES_PER_CALL, BenchFlags, ConnectionFlags
from greet.client.tls_flags import ssl_context_from_flags

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

    flags: ConnectionFlags
    ssl_context: ssl.SSLContext | None
    token: str | None
    metadata: dict[str, str]

    def client(self) -> GreetClient:
        flags = self.flags
        try:
            return GreetClient(
                flags.target,
                backup=flags.backup,
                timeout=flags.timeout,
                ssl=self.ssl_context,
                token=self.token,
                metadata=self.metadata,
                retry=RetryPolicy(max_attempts=flags.max_attempts),
                pool=PoolOptions(
                    connections_per_endpoint=flags.connections,
                    resolve_interval=flags.resolve_interval,
                ),
                transport=flags.transport,
            )
        except ValueError as error:
            raise ConnectionFlagError(str(error)) from None


def client_setup(args: argparse.Namespace) -> ClientSetup:
    """The client the flags describe; UsageError naming the flag when one is wrong."""
    values = vars(args)
    entries = [*values.get("metadata", []), *values.get("metadata_after", [])]
    try:
        flags = build(ConnectionFlags, {**values, "metadata": entries})
    except ValueError as error:  # GREET_HTTP2_ENGINE naming no engine
        raise ConnectionFlagError(str(error)) from None
    token = None
    if flags.token_file is not None:
        try:
            token = read_token_file(flags.token_file)
        except (OSError, ValueError) as error:
            raise ConnectionFlagError(
                f"--token-file {flags.token_file}: {token_file_problem(error)}"
            ) from None
    metadata: dict[str, str] = {}
    for key, value in flags.metadata:
        if key in metadata:
            raise ConnectionFlagError(f"--metadata {key} is given twice")
        metadata[key] = value
    if token is not None and "authorization" in metadata:
        raise ConnectionFlagError(
            "give the token with --token-file or --metadata authorization=..., not both"
        )
    return ClientSetup(flags, tls_context(flags), token, metadata)


def tls_context(flags: ConnectionFlags) -> ssl.SSLContext | None:
    try:
        return ssl_context_from_flags(flags.tls_ca, flags.tls_cert, flags.tls_key)
    except UsageError as error:
        raise ConnectionFlagError(str(error)) from None


def token_file_problem(error: OSError | ValueError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not a text file"
    if isinstance(error, OSError):
        return f"cannot read it: {error.strerror or error}"
    return "no token in the file (the first line that is not empty or a # comment)"


def bench_options(args: argparse.Namespace) -> BenchOptions:
    """The run the bench flags describe; UsageError naming the flag when one is wrong. Sets
    `args.format` to the report format asked for."""
    flags = build(BenchFlags, vars(args))
    if flags.json and flags.format not in (None, "json"):
        raise UsageError(f"--json is --format json; it cannot go with --format {flags.format}")
    args.format = "json" if flags.json else flags.format or "summary"
    try:
        schedule = load_schedule_from_flags(
            flags.load_schedule,
            rps=flags.rps,
            start=flags.load_start,
            step=flags.load_step,
            step_duration=flags.load_step_duration,
            end=flags.load_end,
            max_duration=flags.load_max_duration,
        )
        length = flags.duration is not None or flags.requests is not None
        return BenchOptions(
            rpc=flags.rpc,
            duration=flags.duration if length else DEFAULT_DURATION,
            requests=flags.requests,
            concurrency=flags.concurrency,
            data=bench_data(flags),
            schedule=schedule,
            skip_first=flags.skip_first,
            progress_interval=flags.progress_interval,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def bench_data(flags: BenchFlags) -> CallData:
    if flags.data is None and flags.data_file is None:
        count = DEFAULT_NAMES_PER_CALL if flags.names_per_call is None else flags.names_per_call
        return default_call_data(count)
    if flags.names_per_call is not None:
        raise UsageError("--names generates names; with --data or --data-file the JSON has them")
    if flags.data is not None:
        flag, text = "--data", flags.data
    else:
        assert flags.data_file is not None
        flag = f"--data-file {flags.data_file}"
        try:
            text = flags.data_file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{flag}: cannot read it: {error}") from None
    try:
        return call_data_from_json(flags.rpc, text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None
