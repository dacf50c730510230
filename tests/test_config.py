"""Server settings (greet.server.config): one declaration per setting gives its flag, its GREET_*
variable, its default and its checks; every bad value is one error line naming the flag, the
variable or the file, followed by a --help hint."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme

import greet
from greet._setting_kinds import Choice, Number
from greet._settings import settings_of
from greet.greeting import Limits, check_names, check_stream_length
from greet.server import GreetServer
from greet.server.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    SETTINGS,
    ConfigError,
    ServerConfig,
    build_parser,
    parse_config,
)
from greet.server.supervisor import MAX_WORKERS_PER_CPU, worker_count
from greet.tls import TLSFileError, client_ssl_context, server_ssl_context
from greet.transport import ENGINE_NAMES, KeepalivePolicy, TransportConfig, default_engine_name
from greet.transport._wire import ENCODINGS

HINT = "Try 'python -m greet.server --help' for more information."
OTHER_ENGINE = next(name for name in ENGINE_NAMES if name != default_engine_name())

VALUES: dict[str, tuple[str, str, object]] = {
    # flag: (text on the command line or in the variable, where it lands, the value)
    "--service": ("greet.service:GreetService", "services", ("greet.service:GreetService",)),
    "--host": ("::1", "host", "::1"),
    "--port": ("9001", "port", 9001),
    "--workers": ("3", "workers", 3),
    "--grace": ("2.5", "grace", 2.5),
    "--max-message-bytes": ("100", "transport.max_message_bytes", 100),
    "--max-name-chars": ("5", "limits.max_name_chars", 5),
    "--max-names": ("3", "limits.max_names_per_list", 3),
    "--max-stream-messages": ("4", "limits.max_messages_per_stream", 4),
    "--metrics-port": ("9100", "metrics_port", 9100),
    "--work-delay": ("0.5", "work_delay", 0.5),
    "--cache-size": ("10", "cache_size", 10),
    "--cache-ttl": ("5", "cache_ttl", 5.0),
    "--log-format": ("json", "log_format", "json"),
    "--http2-engine": (OTHER_ENGINE, "transport.engine", OTHER_ENGINE),
    "--max-concurrent-streams": ("7", "transport.max_concurrent_streams", 7),
    "--max-header-list-bytes": ("2048", "transport.max_header_list_bytes", 2048),
    "--max-resets-per-second": ("1.5", "transport.max_resets_per_second", 1.5),
    "--reset-burst": ("9", "transport.reset_burst", 9),
    "--compression": ("gzip", "transport.compression", "gzip"),
    "--cors-allow-origin": (
        "http://page.example",
        "transport.cors_allow_origin",
        ("http://page.example",),
    ),
    "--keepalive-time": ("60", "transport.keepalive.time", 60.0),
    "--keepalive-timeout": ("5", "transport.keepalive.timeout", 5.0),
    "--keepalive-min-time": ("10", "transport.keepalive.min_time", 10.0),
    "--max-connection-idle": ("30", "transport.max_connection_idle", 30.0),
    "--max-connection-age": ("600", "transport.max_connection_age", 600.0),
    "--max-connection-age-grace": ("15", "transport.max_connection_age_grace", 15.0),
    "--handshake-timeout": ("3", "transport.handshake_timeout", 3.0),
}
SWITCHES = {
    "--access-log": "access_log",
    "--keepalive-permit-without-calls": "transport.keepalive.permit_without_calls",
    "--eager-calls": "transport.eager_calls",
}
FILES = {"--tls-cert", "--tls-key", "--tls-client-ca", "--auth-token-file"}

DEFAULTS: dict[str, object] = {
    "services": (),
    "host": "127.0.0.1",
    "port": 8080,
    "workers": 1,
    "grace": 10.0,
    "transport.max_message_bytes": 4 * 1024 * 1024,
    "limits.max_name_chars": Limits().max_name_chars,  # greet.greeting's to choose
    "limits.max_names_per_list": None,
    "limits.max_messages_per_stream": None,
    "tls_cert": None,
    "tls_key": None,
    "tls_client_ca": None,
    "auth_token_file": None,
    "metrics_port": None,
    "work_delay": 0.0,
    "cache_size": 0,
    "cache_ttl": 60.0,
    "log_format": "text",
    "access_log": False,
    "transport.engine": default_engine_name(),  # GREET_HTTP2_ENGINE, else where ngh2 installs
    "transport.max_concurrent_streams": 100,
    "transport.max_header_list_bytes": 65536,
    "transport.max_resets_per_second": 33.0,
    "transport.reset_burst": 1000,
    "transport.compression": None,
    "transport.cors_allow_origin": (),
    "transport.keepalive.time": 7200.0,
    "transport.keepalive.timeout": 20.0,
    "transport.keepalive.min_time": 300.0,
    "transport.keepalive.permit_without_calls": False,
    "transport.eager_calls": True,
    "transport.max_connection_idle": None,
    "transport.max_connection_age": None,
    "transport.max_connection_age_grace": None,
    "transport.handshake_timeout": 20.0,
}


def value_at(config: object, path: str) -> object:
    value: object = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def env_of(flag: str) -> str:
    return "GREET_" + flag.removeprefix("--").replace("-", "_").upper()


def usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: Mapping[str, str] | None = None
) -> str:
    """The error line of a usage error; asserts exit status 2 and the two-line form."""
    with pytest.raises(SystemExit) as caught:
        parse_config(argv, environ={} if environ is None else environ)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("python -m greet.server: error: ")
    assert lines[1] == HINT
    return lines[0].removeprefix("python -m greet.server: error: ")


# --- one declaration per setting ----------------------------------------------------------------


CODE_ONLY = {
    "max_settings_per_second",
    "settings_burst",
    "stream_send_buffer",
    "connection_send_buffer",
    "compression_threshold",
    "keepalive.max_ping_strikes",
}
"""TransportConfig's fields that no flag sets (tuned in code only)."""


def field_paths(cls: type[Any], prefix: str = "") -> set[str]:
    """`a.b` for every field of `cls` and of the dataclasses its fields hold by default."""
    paths = set()
    for field in dataclasses.fields(cls):
        default = getattr(cls(), field.name)
        if dataclasses.is_dataclass(default):
            paths |= field_paths(type(default), f"{prefix}{field.name}.")
        else:
            paths.add(prefix + field.name)
    return paths


def test_the_tables_here_cover_every_setting() -> None:
    assert {item.flag for item in SETTINGS} == set(VALUES) | set(SWITCHES) | FILES
    transport = {f"transport.{path}" for path in field_paths(TransportConfig) - CODE_ONLY}
    assert set(DEFAULTS) == field_paths(ServerConfig) - {f"transport.{p}" for p in CODE_ONLY}
    assert transport <= set(DEFAULTS)


# --- the transport's settings are the server's ---------------------------------------------------


def test_every_transport_setting_is_a_server_flag_with_the_transport_default() -> None:
    server = {item.flag: item for item in SETTINGS}
    transport = settings_of(TransportConfig)
    assert len(transport) == len(field_paths(TransportConfig)) - len(CODE_ONLY)
    for item in transport:
        assert server[item.flag].path == ("transport", *item.path)
        assert server[item.flag].declaration == item.declaration
    config = parse_config([], environ={})
    assert config.transport == TransportConfig()
    assert config.transport.keepalive == KeepalivePolicy()
    [compression] = [item for item in transport if item.flag == "--compression"]
    assert isinstance(compression.kind, Choice)  # greet.transport._wire's and identity
    assert set(compression.kind.choices) == {*ENCODINGS, "identity"}


@pytest.mark.parametrize(
    "flag", sorted(flag for flag in VALUES if VALUES[flag][1][:10] == "transport.")
)
async def test_a_transport_flag_reaches_the_server_transport(flag: str) -> None:
    # In a running loop, as a server is made: grpclib's Server looks up the event loop.
    text, path, expected = VALUES[flag]
    server = GreetServer(parse_config([flag, text], environ={}))
    used = server.grpc_server.transport_config
    assert value_at(used, path.removeprefix("transport.")) == expected
    assert used == server.config.transport


def test_transport_config_in_code_is_checked_by_the_flags_declarations() -> None:
    with pytest.raises(ConfigError, match=r"^--max-concurrent-streams: must be 1\.\."):
        TransportConfig(max_concurrent_streams=0)
    with pytest.raises(ConfigError, match=r"^--keepalive-time: must be more than 0, not 0$"):
        KeepalivePolicy(time=0)
    with pytest.raises(
        ConfigError, match=r"^--http2-engine: must be one of nghttp2, h2; not 'quic'$"
    ):
        TransportConfig(engine="quic")  # type: ignore[arg-type]


def test_defaults() -> None:
    config = parse_config([], environ={})
    assert config == ServerConfig()
    assert {path: value_at(config, path) for path in DEFAULTS} == DEFAULTS
    assert (config.host, config.port) == (DEFAULT_HOST, DEFAULT_PORT)


def test_limit_defaults_come_from_limits_and_serve_what_the_original_serves() -> None:
    limits = parse_config([], environ={}).limits
    assert limits == Limits()
    assert (limits.max_names_per_list, limits.max_messages_per_stream) == (None, None)
    check_names(["x"] * 200_000, limits)  # the original Go server answers these
    check_stream_length(10_000_000, limits)


@pytest.mark.parametrize("flag", sorted(VALUES))
def test_each_flag_and_its_variable_set_the_setting_and_the_flag_wins(flag: str) -> None:
    text, path, expected = VALUES[flag]
    assert value_at(parse_config([flag, text], environ={}), path) == expected
    assert value_at(parse_config([f"{flag}={text}"], environ={}), path) == expected
    from_env = parse_config([], environ={env_of(flag): text})
    assert value_at(from_env, path) == expected
    assert value_at(from_env, path) != DEFAULTS[path]
    assert value_at(parse_config([flag, text], environ={env_of(flag): "junk"}), path) == expected


@pytest.mark.parametrize("flag", sorted(SWITCHES))
def test_switches_take_words_in_the_environment(flag: str) -> None:
    path = SWITCHES[flag]
    assert value_at(parse_config([flag], environ={}), path) is True
    assert value_at(parse_config(["--no-" + flag[2:]], environ={env_of(flag): "1"}), path) is False
    for word in ("1", "true", "Yes", "ON"):
        assert value_at(parse_config([], environ={env_of(flag): word}), path) is True
    for word in ("0", "false", "no", "Off"):
        assert value_at(parse_config([], environ={env_of(flag): word}), path) is False


def test_an_empty_variable_counts_as_unset() -> None:
    assert parse_config([], environ={"GREET_PORT": "", "GREET_ACCESS_LOG": ""}) == ServerConfig()


def test_help_lists_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_config(["--help"], environ={})
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for item in SETTINGS:
        assert item.flag in text
    assert "--max-names N names per NamesList (default: no limit)" in text
    assert "--port PORT port, 0 for any free one (default: 8080)" in text
    assert "(default: nghttp2 if the ngh2 package imports, else h2)" in text
    assert "GREET_<FLAG>" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_config(["--version"], environ={})
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"greet-server {greet.__version__}\n"


def test_server_config_keeps_its_keywords_and_is_frozen() -> None:
    config = ServerConfig(port=0, grace=1.5, limits=Limits(max_names_per_list=3))
    assert (config.port, config.grace, config.limits.max_names_per_list) == (0, 1.5, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert dataclasses.replace(config, workers=2).workers == 2


def test_build_parser_parses_the_flags() -> None:
    namespace = build_parser().parse_args(["--port", "1", "--max-names", "2"])
    assert (namespace.port, namespace.max_names) == (1, 2)


# --- one error line, naming the flag or the variable --------------------------------------------


def test_usage_errors_are_one_line_and_a_help_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(capsys, ["--port", "abc"]) == (
        "argument --port: must be a whole number, not 'abc'"
    )
    assert usage_error(capsys, ["--bogus"]) == "unknown flag --bogus"
    assert usage_error(capsys, ["--prot", "5"]) == "unknown flag --prot (did you mean --port?)"
    assert usage_error(capsys, ["--log-format", "xml"]) == (
        "argument --log-format: must be one of text, json; not 'xml'"
    )


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"GREET_PORT": "abc"}, "GREET_PORT: must be a whole number, not 'abc'"),
        ({"GREET_ACCESS_LOG": "maybe"}, "GREET_ACCESS_LOG: must be one of 1/true/yes/on or"),
        ({"GREET_GRACE": "nan"}, "GREET_GRACE: must be a finite number, not nan"),
        ({"GREET_METRICS_PORT": "99999"}, "GREET_METRICS_PORT: must be 0..65535, not 99999"),
        ({"GREET_MAX_NAMES": "0"}, "GREET_MAX_NAMES: must be at least 1, not 0"),
        ({"GREET_HTTP2_ENGINE": "quic"}, "GREET_HTTP2_ENGINE: must be one of nghttp2, h2;"),
    ],
)
def test_a_bad_variable_is_named(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], error: str
) -> None:
    message = usage_error(capsys, [], environ)
    assert message.startswith(error)
    assert "--" not in message.split(":")[0]  # blames the variable, not the flag


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--port", "65536"], "argument --port: must be 0..65535, not 65536"),
        (["--port", "-1"], "argument --port: must be 0..65535, not -1"),
        (["--metrics-port", "99999"], "argument --metrics-port: must be 0..65535, not 99999"),
        (["--metrics-port", "-3"], "argument --metrics-port: must be 0..65535, not -3"),
        (["--port", "9000", "--metrics-port", "9000"], "--metrics-port and --port are both 9000"),
    ],
)
def test_ports_are_range_checked(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    assert usage_error(capsys, argv) == error


NUMBER_FLAGS = sorted(item.flag for item in SETTINGS if isinstance(item.kind, Number))


@pytest.mark.parametrize("flag", NUMBER_FLAGS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_nan_and_infinity_are_refused_everywhere(
    capsys: pytest.CaptureFixture[str], flag: str, text: str
) -> None:
    assert "must be a finite number" in usage_error(capsys, [f"{flag}={text}"])
    assert usage_error(capsys, [], {env_of(flag): text}).startswith(env_of(flag) + ": ")


def test_every_time_is_checked() -> None:
    assert {"--keepalive-time", "--max-connection-age", "--handshake-timeout"} <= set(NUMBER_FLAGS)
    for flag in NUMBER_FLAGS:
        with pytest.raises(SystemExit):
            parse_config([flag, "-1"], environ={})


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--max-names", "0"], "argument --max-names: must be at least 1, not 0"),
        (["--max-stream-messages", "0"], "argument --max-stream-messages: must be at least 1"),
        (["--max-name-chars", "0"], "argument --max-name-chars: must be at least 1, not 0"),
        (["--grace", "-1"], "argument --grace: must be at least 0, not -1"),
        (["--work-delay", "-0.5"], "argument --work-delay: must be at least 0, not -0.5"),
        (["--keepalive-time", "0"], "argument --keepalive-time: must be more than 0, not 0"),
        (["--max-header-list-bytes", "100"], "argument --max-header-list-bytes: must be 1024.."),
        (["--max-concurrent-streams", "0"], "argument --max-concurrent-streams: must be 1.."),
        (["--max-resets-per-second", "0"], "argument --max-resets-per-second: must be more than"),
        (["--reset-burst", "0"], "argument --reset-burst: must be at least 1, not 0"),
        (
            ["--compression", "br"],
            "argument --compression: must be one of gzip, deflate, identity;",
        ),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_messages_name_flags(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    message = usage_error(capsys, argv)
    assert message.startswith(error)
    assert "_" not in message.split(":")[0]  # no field names such as max_names_per_list


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"grace": -1.0}, "--grace"),
        ({"work_delay": math.nan}, "--work-delay"),
        ({"port": 70000}, "--port"),
        ({"transport": {"max_connection_age": math.inf}}, "--max-connection-age"),
        ({"limits": Limits(max_name_chars=10**6)}, None),
        ({"workers": True}, "--workers"),
        ({"log_format": "xml"}, "--log-format"),
    ],
)
def test_server_config_built_in_code_is_checked_too(
    overrides: dict[str, Any], flag: str | None
) -> None:
    def make() -> ServerConfig:
        if "transport" in overrides:
            return ServerConfig(transport=TransportConfig(**overrides["transport"]))
        return ServerConfig(**overrides)

    if flag is None:
        make()
        return
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        make()


# --- files: named with their flag, checked before serving ---------------------------------------


@dataclasses.dataclass(frozen=True)
class Files:
    cert: Path
    key: Path
    ca: Path
    other_key: Path
    encrypted_key: Path
    garbage: Path
    tokens: Path
    not_utf8: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("files")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    other = trustme.CA().issue_cert("localhost")
    made = Files(
        cert=folder / "cert.pem",
        key=folder / "key.pem",
        ca=folder / "ca.pem",
        other_key=folder / "other.key",
        encrypted_key=folder / "encrypted.key",
        garbage=folder / "garbage.pem",
        tokens=folder / "tokens",
        not_utf8=folder / "latin1",
    )
    leaf.cert_chain_pems[0].write_to_path(str(made.cert))
    leaf.private_key_pem.write_to_path(str(made.key))
    ca.cert_pem.write_to_path(str(made.ca))
    other.private_key_pem.write_to_path(str(made.other_key))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    made.encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    made.garbage.write_text("not PEM at all\n")
    made.tokens.write_text("token-1\n")
    made.not_utf8.write_bytes(b"caf\xe9\n")
    return made


def test_good_files_are_taken(files: Files) -> None:
    argv = ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
    config = parse_config(
        [*argv, "--tls-client-ca", str(files.ca), "--auth-token-file", str(files.tokens)],
        environ={},
    )
    assert (config.tls_cert, config.tls_client_ca, config.tls) == (files.cert, files.ca, True)
    assert parse_config(
        [], environ={"GREET_TLS_CERT": str(files.cert), "GREET_TLS_KEY": str(files.key)}
    ).tls


@pytest.mark.parametrize("flag", sorted(FILES))
def test_a_missing_file_names_the_file_and_the_flag(
    capsys: pytest.CaptureFixture[str], files: Files, tmp_path: Path, flag: str
) -> None:
    missing = tmp_path / "missing.pem"
    argv = {
        "--tls-cert": ["--tls-cert", str(missing), "--tls-key", str(files.key)],
        "--tls-key": ["--tls-cert", str(files.cert), "--tls-key", str(missing)],
        "--tls-client-ca": [
            *("--tls-cert", str(files.cert), "--tls-key", str(files.key)),
            *("--tls-client-ca", str(missing)),
        ],
        "--auth-token-file": ["--auth-token-file", str(missing)],
    }[flag]
    assert usage_error(capsys, argv) == f"{flag} {missing}: no such file or directory"


def test_a_directory_is_not_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert usage_error(capsys, ["--auth-token-file", str(tmp_path)]) == (
        f"--auth-token-file {tmp_path}: is a directory"
    )


@pytest.mark.parametrize(
    ("pick", "error"),
    [
        (lambda f: (f.garbage, f.key, None), "--tls-cert {garbage}: holds no PEM certificate"),
        (lambda f: (f.key, f.key, None), "--tls-cert {key}: holds no PEM certificate"),
        (lambda f: (f.cert, f.garbage, None), "--tls-key {garbage}: holds no PEM private key"),
        (lambda f: (f.cert, f.cert, None), "--tls-key {cert}: holds no PEM private key"),
        (
            lambda f: (f.cert, f.other_key, None),
            "--tls-key {other_key}: is not the key of the certificate in {cert}",
        ),
        (
            lambda f: (f.cert, f.encrypted_key, None),
            "--tls-key {encrypted_key}: is encrypted; give the key unencrypted",
        ),
        (
            lambda f: (f.cert, f.key, f.garbage),
            "--tls-client-ca {garbage}: holds no PEM certificate",
        ),
    ],
)
def test_tls_files_that_cannot_be_used_name_the_flag(
    capsys: pytest.CaptureFixture[str], files: Files, pick: Any, error: str
) -> None:
    cert, key, client_ca = pick(files)
    argv = ["--tls-cert", str(cert), "--tls-key", str(key)]
    if client_ca is not None:
        argv += ["--tls-client-ca", str(client_ca)]
    expected = error.format(**{f.name: getattr(files, f.name) for f in dataclasses.fields(files)})
    message = usage_error(capsys, argv)
    assert message.startswith(expected)
    assert "_ssl.c" not in message


def test_a_token_file_that_is_not_utf8_is_named(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    assert usage_error(capsys, ["--auth-token-file", str(files.not_utf8)]) == (
        f"--auth-token-file {files.not_utf8}: is not UTF-8 text"
    )


def test_tls_file_errors_from_code_name_the_file_and_its_role(files: Files, tmp_path: Path) -> None:
    with pytest.raises(TLSFileError) as caught:
        server_ssl_context(files.cert, tmp_path / "nope.key")
    assert (caught.value.role, caught.value.path) == ("key", tmp_path / "nope.key")
    assert str(caught.value) == f"private key {tmp_path / 'nope.key'}: no such file or directory"
    with pytest.raises(TLSFileError) as caught:
        client_ssl_context(files.garbage)
    assert caught.value.role == "ca"
    assert str(caught.value).startswith(f"CA bundle {files.garbage}: holds no PEM certificate")
    with pytest.raises(TLSFileError, match="is encrypted"):
        client_ssl_context(files.ca, files.cert, files.encrypted_key)
    assert isinstance(caught.value, OSError)  # where callers already catch OSError


# --- --workers -----------------------------------------------------------------------------------


def test_workers_are_capped_at_four_per_cpu() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert MAX_WORKERS_PER_CPU == 4
    assert worker_count(ServerConfig(workers=500)) == 4 * cpus
    assert worker_count(ServerConfig(workers=4 * cpus)) == 4 * cpus
    assert worker_count(ServerConfig(workers=0)) == cpus
