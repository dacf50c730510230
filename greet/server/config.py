"""Server settings: one frozen dataclass, filled from command-line flags and GREET_* variables.

Every flag `--some-flag` also reads the environment variable `GREET_SOME_FLAG`; a flag given on the
command line wins over the variable, and the variable over the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from greet.greeting import Limits

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServerConfig", "build_parser", "parse_config"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m greet.server` can be told."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    grace: float = 10.0
    max_message_bytes: int = 4 * MIB
    limits: Limits = field(default_factory=Limits)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token_file: Path | None = None
    metrics_port: int | None = None
    work_delay: float = 0.0
    cache_size: int = 0
    cache_ttl: float = 60.0
    log_format: str = "text"
    access_log: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if self.workers < 0:
            raise ValueError("workers must be 0 (one per CPU) or more")
        if self.grace < 0:
            raise ValueError("grace must not be negative")
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.work_delay < 0:
            raise ValueError("work_delay must not be negative")
        if self.cache_size < 0 or self.cache_ttl < 0:
            raise ValueError("cache size and TTL must not be negative")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format is text or json")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def env_name(flag: str) -> str:
    """`--max-message-bytes` -> `GREET_MAX_MESSAGE_BYTES`."""
    return "GREET_" + flag.lstrip("-").replace("-", "_").upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greet.server",
        description="Serve greet_service.GreetService over gRPC. "
        "Every flag also reads GREET_<FLAG> (e.g. GREET_PORT).",
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="port, 0 for any (default %(default)s)")
    add(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port; 0 = one per CPU (default %(default)s)",
    )
    add(
        "--grace",
        type=float,
        default=10.0,
        help="seconds to drain calls on SIGTERM/SIGINT (default %(default)s)",
    )
    add(
        "--max-message-bytes",
        type=int,
        default=4 * MIB,
        help="largest request message; larger ones get RESOURCE_EXHAUSTED (default 4 MiB)",
    )
    add(
        "--max-name-chars",
        type=int,
        default=Limits.max_name_chars,
        help="longest name, characters (default %(default)s)",
    )
    add(
        "--max-names",
        type=int,
        default=Limits.max_names_per_list,
        help="names per NamesList (default %(default)s)",
    )
    add(
        "--max-stream-messages",
        type=int,
        default=Limits.max_messages_per_stream,
        help="messages per client stream (default %(default)s)",
    )
    add("--tls-cert", type=Path, help="PEM certificate chain; serves TLS with --tls-key")
    add("--tls-key", type=Path, help="PEM private key")
    add("--tls-client-ca", type=Path, help="PEM CA bundle; require client certificates from it")
    add("--auth-token-file", type=Path, help="bearer tokens, one per line (re-read on SIGHUP)")
    add("--metrics-port", type=int, help="serve Prometheus metrics on HTTP /metrics")
    add(
        "--work-delay",
        type=float,
        default=0.0,
        help="simulated backend seconds per greeting (default %(default)s)",
    )
    add(
        "--cache-size",
        type=int,
        default=0,
        help="greetings kept in the cache (default 0: no cache)",
    )
    add(
        "--cache-ttl",
        type=float,
        default=60.0,
        help="seconds a cached greeting stays valid (default %(default)s)",
    )
    add(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log line format (default %(default)s)",
    )
    add(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log one line per call (default off)",
    )
    return parser


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make GREET_<FLAG> variables the defaults of their flags."""
    for action in parser._actions:
        flags = [flag for flag in action.option_strings if flag.startswith("--")]
        if not flags or action.dest == "help":
            continue
        value = environ.get(env_name(flags[0]))
        if value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            action.default = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            action.default = value  # argparse converts string defaults with the flag's type


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Flags and environment -> ServerConfig; exits with a usage message on bad input."""
    parser = build_parser()
    apply_environment(parser, os.environ if environ is None else environ)
    args = parser.parse_args(argv)
    try:
        return ServerConfig(
            host=args.host,
            port=args.port,
            workers=args.workers,
            grace=args.grace,
            max_message_bytes=args.max_message_bytes,
            limits=Limits(
                max_name_chars=args.max_name_chars,
                max_names_per_list=args.max_names,
                max_messages_per_stream=args.max_stream_messages,
            ),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            auth_token_file=args.auth_token_file,
            metrics_port=args.metrics_port,
            work_delay=args.work_delay,
            cache_size=args.cache_size,
            cache_ttl=args.cache_ttl,
            log_format=args.log_format,
            access_log=args.access_log,
        )
    except ValueError as error:
        parser.error(str(error))
