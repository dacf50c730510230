"""Server settings: one frozen dataclass whose fields declare the flags and GREET_* variables.

Each field below is the one declaration of its setting: type, default, allowed values, help, and
the flag `--field-name` (or the one given), which also reads `GREET_FIELD_NAME`. A flag given on
the command line wins over the variable, and the variable over the default. The domain's limits
(greet.greeting.Limits) and the transport's settings (greet.transport.TransportConfig, declared
there with their flags) are groups nested as they are. The parser, the environment and the checks
are derived from these declarations (greet._settings).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import greet
from greet._setting_kinds import Choice, FilePath, Integer, Kind, Many, Number, Switch, Text
from greet._settings import (
    ConfigError,
    Declaration,
    SettingsParser,
    add_arguments,
    build,
    check_values,
    env_name,
    read_environment,
    setting,
    settings_group,
    settings_of,
)
from greet.greeting import Limits
from greet.server.services import check_service_spec, split_spec
from greet.tls import TLSFileError, server_ssl_context
from greet.transport.config import LIMITS, TransportConfig

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SETTINGS",
    "ConfigError",
    "ServerConfig",
    "build_parser",
    "check_files",
    "env_name",
    "parse_config",
    "program_name",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

PORT = Integer(0, 65535, metavar="PORT")
SECONDS = Number(0.0)
"""Zero or more seconds."""


@dataclass(frozen=True)
class ServiceSpec(Kind[str]):
    """`MODULE:ATTR`, a servicer to serve (greet.server.services); only its form is checked
    here, `check_service_spec` imports it."""

    def usage(self) -> str | None:
        return "MODULE:ATTR"

    def convert(self, text: str) -> str:
        split_spec(text)
        return text.strip()

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"must be MODULE:ATTR, not {value!r}"
        try:
            split_spec(value)
        except ValueError as error:
            return str(error)
        return None


@dataclass(frozen=True)
class ServiceSpecs(Many[str]):
    """`--service` given any number of times; its variable lists them, comma-separated."""

    def convert(self, text: str) -> tuple[str, ...]:
        return tuple(self.item.parse(part) for part in text.split(",") if part.strip())


SERVING = "serving"
SECURITY = "TLS and bearer tokens"
BACKEND = "backend"
OBSERVABILITY = "metrics and logs"


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m greet.server` can be told (see the module docstring)."""

    services: tuple[str, ...] = setting(
        (),
        ServiceSpecs(ServiceSpec()),
        "serve the servicer MODULE:ATTR names (a servicer class, or a function returning "
        "servicers); repeat for more; GREET_SERVICE takes a comma-separated list",
        flag="--service",
        default_text="greet's GreetService",
        section=SERVING,
    )
    host: str = setting(DEFAULT_HOST, Text("HOST"), "address to listen on", section=SERVING)
    port: int = setting(DEFAULT_PORT, PORT, "port, 0 for any free one", section=SERVING)
    workers: int = setting(
        1,
        Integer(0),
        "worker processes sharing the port; 0 = one per CPU; more than 4 per CPU are capped",
        section=SERVING,
    )
    grace: float = setting(
        10.0, SECONDS, "seconds to drain calls on SIGTERM/SIGINT", section=SERVING
    )
    # The domain's limits: their defaults are Limits's (None: no limit, as in the original).
    limits: Limits = settings_group(
        Limits,
        {
            "max_name_chars": Declaration(
                Integer(1),
                "longest name, characters",
                unset_text="no limit",
                section=LIMITS,
            ),
            "max_names_per_list": Declaration(
                Integer(1),
                "names per NamesList",
                unset_text="no limit",
                section=LIMITS,
            ),
            "max_messages_per_stream": Declaration(
                Integer(1),
                "messages per client stream",
                unset_text="no limit",
                section=LIMITS,
            ),
        },
    )
    tls_cert: Path | None = setting(
        None, FilePath(), "PEM certificate chain; serves TLS with --tls-key", section=SECURITY
    )
    tls_key: Path | None = setting(None, FilePath(), "PEM private key", section=SECURITY)
    tls_client_ca: Path | None = setting(
        None,
        FilePath(),
        "PEM CA bundle; require client certificates issued by it",
        section=SECURITY,
    )
    auth_token_file: Path | None = setting(
        None,
        FilePath(),
        "bearer tokens, one per line (re-read on SIGHUP)",
        section=SECURITY,
    )
    metrics_port: int | None = setting(
        None, PORT, "serve Prometheus metrics on HTTP /metrics", section=OBSERVABILITY
    )
    work_delay: float = setting(
        0.0, SECONDS, "simulated backend seconds per greeting", section=BACKEND
    )
    cache_size: int = setting(
        0, Integer(0), "greetings kept in the cache", default_text="0, no cache", section=BACKEND
    )
    cache_ttl: float = setting(
        60.0, SECONDS, "seconds a cached greeting stays valid", section=BACKEND
    )
    log_format: str = setting(
        "text", Choice(("text", "json")), "log line format", section=OBSERVABILITY
    )
    access_log: bool = setting(False, Switch(), "log one line per call", section=OBSERVABILITY)
    # HTTP/2 and connection settings: TransportConfig's own declarations and defaults.
    transport: TransportConfig = settings_group(TransportConfig)

    def __post_init__(self) -> None:
        check_values(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.metrics_port not in (None, 0) and self.metrics_port == self.port:
            raise ConfigError(f"--metrics-port and --port are both {self.port}")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


SETTINGS = settings_of(ServerConfig)
FLAGS = {item.name: item.flag for item in SETTINGS if len(item.path) == 1}

TLS_FILE_FIELDS = {"cert": "tls_cert", "key": "tls_key", "client_ca": "tls_client_ca"}
"""server_ssl_context's parameter (TLSFileError.role) -> the ServerConfig field."""


def check_files(config: ServerConfig) -> None:
    """ConfigError naming the flag and the file when a file setting cannot be read, the token
    file is not UTF-8, or the TLS files do not make a certificate chain, its key and a CA bundle;
    or naming `--service` when a module it names cannot be imported or lacks the name.
    """
    for spec in config.services:
        check_service_spec(spec)
    for item in SETTINGS:
        path = getattr(config, item.name) if len(item.path) == 1 else None
        if not isinstance(item.kind, FilePath) or path is None:
            continue
        if (problem := item.kind.file_problem(path)) is not None:
            raise ConfigError(f"{item.flag} {path}: {problem}")
    if config.auth_token_file is not None:
        try:
            config.auth_token_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            flag = FLAGS["auth_token_file"]
            raise ConfigError(f"{flag} {config.auth_token_file}: is not UTF-8 text") from None
    if config.tls_cert is not None and config.tls_key is not None:
        try:
            server_ssl_context(config.tls_cert, config.tls_key, config.tls_client_ca)
        except TLSFileError as error:
            flag = FLAGS[TLS_FILE_FIELDS[error.role]]
            raise ConfigError(f"{flag} {error.path}: {error.problem}") from None


def program_name() -> str:
    """How the server was started, for messages: `greet-server` or `python -m greet.server`."""
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "greet-server" if invoked == "greet-server" else "python -m greet.server"


def build_parser() -> SettingsParser:
    parser = SettingsParser(
        prog=program_name(),
        usage="%(prog)s [options]",
        description="Serve gRPC services: greet's GreetService, or your own (--service). "
        "Every flag also reads the environment variable GREET_<FLAG> (--max-names: "
        "GREET_MAX_NAMES); the flag wins.",
    )
    parser.add_argument("--version", action="version", version=f"greet-server {greet.__version__}")
    add_arguments(parser, SETTINGS)
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Flags and environment -> ServerConfig, with its files checked; on bad input, exits with
    status 2 after one error line (naming the flag, the variable or the file) and a --help hint.
    """
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    try:
        values = read_environment(SETTINGS, os.environ if environ is None else environ, skip=given)
        config = build(ServerConfig, {**values, **given})
        check_files(config)
    except ConfigError as error:
        parser.error(str(error))
    return config
