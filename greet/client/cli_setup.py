"""What the client's flags describe, checked before the event loop starts: the GreetClient
(ClientSetup) with its TLS and token; and Ctrl-C while a command runs (`interrupt_sets`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from greet._settings import build
from greet.client import GreetClient, PoolOptions, RetryPolicy
from greet.client.arguments import UsageError
from greet.client.cli_flags import ConnectionFlags
from greet.client.tls_flags import ssl_context_from_flags

__all__ = [
    "ClientSetup",
    "ConnectionFlagError",
    "client_setup",
    "interrupt_sets",
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


@contextlib.contextmanager
def interrupt_sets(event: asyncio.Event) -> Iterator[None]:
    """While inside, SIGINT (Ctrl-C) sets `event` instead of interrupting the program."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, event.set)
    except (NotImplementedError, RuntimeError, ValueError):  # none here (Windows, a thread)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
