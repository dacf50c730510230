"""`python -m greet.client` flags for several targets, backups, TLS and tokens, as a subprocess
against real server processes; and how the flags are declared (greet.client.cli_flags, with the
server's settings framework)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from loopback import bound_socket
from server_process import ServerProcess, run_client_cli

from greet._settings import SettingsParser
from greet.client import cli
from greet.client.cli_setup import client_setup
from greet.server.config import build_parser as server_parser
from greet.transport import ChannelConfig, ClientKeepalive


async def test_several_targets_with_a_dead_one(tmp_path: Path) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as live:
        with bound_socket() as dead:
            targets = f"127.0.0.1:{dead.getsockname()[1]},{live.target}"
            code, out, err = await run_client_cli("--target", targets, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 8


async def test_backup_is_used_when_the_target_is_down(tmp_path: Path) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as backup:
        with bound_socket() as dead:
            code, out, err = await run_client_cli(
                "--target",
                f"127.0.0.1:{dead.getsockname()[1]}",
                "--backup",
                backup.target,
                "unary",
                cwd=tmp_path,
            )
    assert (code, out, err) == (0, "SayHello: Hello\n", "")


async def test_dns_target(tmp_path: Path) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as server:
        port = server.target.rsplit(":", 1)[1]
        code, out, err = await run_client_cli(
            "--target", f"dns:///localhost:{port}", "bidi", "x", cwd=tmp_path
        )
    assert (code, out, err) == (0, "SayHelloBidirectionalStreaming: Hello x\n", "")


@pytest.mark.parametrize(
    ("file_text", "expected"),
    [
        ("# the token for the greet service\n\nright-token\nother\n", "SayHello: Hello\n"),
        ("wrong-token\n", ""),
    ],
)
async def test_token_file(tmp_path: Path, file_text: str, expected: str) -> None:
    (tmp_path / "server-tokens").write_text("right-token\n")
    (tmp_path / "client-token").write_text(file_text)
    async with ServerProcess(
        ["--auth-token-file", str(tmp_path / "server-tokens")], cwd=str(tmp_path)
    ) as server:
        code, out, err = await run_client_cli(
            "--target",
            server.target,
            "--token-file",
            str(tmp_path / "client-token"),
            "unary",
            cwd=tmp_path,
        )
    assert out == expected
    if expected:
        assert (code, err) == (0, "")
    else:
        assert code == 1
        assert err.startswith("error: UNAUTHENTICATED")
        assert "wrong-token" not in err


async def test_token_file_without_a_token_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("# nothing here\n\n")
    code, _, err = await run_client_cli(
        "--token-file", str(tmp_path / "token"), "unary", cwd=tmp_path
    )
    assert code == 2
    assert err.splitlines()[0] == (
        f"python -m greet.client: error: --token-file {tmp_path / 'token'}: no token in the file "
        "(the first line that is not empty or a # comment)"
    )


async def test_tls_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    for index, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(tmp_path / "server.pem"), append=index > 0)
    tls = ["--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key")]
    async with ServerProcess(tls, cwd=str(tmp_path)) as server:
        code, out, err = await run_client_cli(
            "--target", server.target, "--tls-ca", str(tmp_path / "ca.pem"), "unary", cwd=tmp_path
        )
        assert (code, out, err) == (0, "SayHello: Hello\n", "")
        code, out, err = await run_client_cli(
            "--target", server.target, "--max-attempts", "1", "unary", cwd=tmp_path
        )
        assert code == 1  # plaintext to a TLS server
        assert err.startswith("error: UNAVAILABLE")


def write_client_pki(directory: Path) -> trustme.CA:
    """ca.pem, and client.pem/client.key issued by it, in `directory`."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client = ca.issue_cert("greet-client")
    client.cert_chain_pems[0].write_to_path(str(directory / "client.pem"))
    client.private_key_pem.write_to_path(str(directory / "client.key"))
    return ca


FILE_FLAGS = ["--tls-ca", "--tls-cert", "--tls-key", "--token-file"]


def flags_with(flag: str, path: str, directory: Path) -> list[str]:
    """`flag path`, with the good files of `directory` for the TLS flags it needs beside it."""
    if flag in ("--token-file", "--tls-ca"):
        return [flag, path]
    files = {"--tls-cert": directory / "client.pem", "--tls-key": directory / "client.key"}
    files[flag] = Path(path)
    return ["--tls-ca", str(directory / "ca.pem")] + [
        arg for name, file in files.items() for arg in (name, str(file))
    ]


@pytest.mark.parametrize("flag", FILE_FLAGS)
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "No such file or directory"),
        (lambda path: path.mkdir(), "Is a directory"),
    ],
    ids=["missing", "directory"],
)
async def test_a_file_that_cannot_be_read_names_the_flag_and_the_file(
    tmp_path: Path, flag: str, make: Callable[[Path], None], reason: str
) -> None:
    write_client_pki(tmp_path)
    bad = tmp_path / "bad-file"
    make(bad)
    code, out, err = await run_client_cli(
        *flags_with(flag, str(bad), tmp_path), "unary", cwd=tmp_path
    )
    assert (code, out) == (2, "")
    first, hint = err.splitlines()
    assert first == f"python -m greet.client: error: argument {flag}: cannot read {bad}: {reason}"
    assert hint == "Try 'python -m greet.client --help' for more information."


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        ("--tls-ca", "not a certificate\n", "--tls-ca {path}: no PEM certificate in the file"),
        ("--tls-cert", "not a certificate\n", "--tls-cert {path}: no PEM certificate in the file"),
        ("--tls-key", "not a key\n", "--tls-key {path}: no PEM private key in the file"),
    ],
)
async def test_a_file_that_is_not_pem_names_the_flag_and_the_file(
    tmp_path: Path, flag: str, text: str, message: str
) -> None:
    write_client_pki(tmp_path)
    bad = tmp_path / "garbage.pem"
    bad.write_text(text)
    code, out, err = await run_client_cli(
        *flags_with(flag, str(bad), tmp_path), "unary", cwd=tmp_path
    )
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == "python -m greet.client: error: " + message.format(path=bad)


async def test_a_ca_bundle_with_a_broken_certificate_names_the_flag(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    code, _, err = await run_client_cli("--tls-ca", str(bad), "unary", cwd=tmp_path)
    assert code == 2
    assert err.startswith(f"python -m greet.client: error: --tls-ca {bad}: not a usable CA bundle")
    assert "_ssl.c" not in err


async def test_a_key_of_another_certificate_is_named(tmp_path: Path) -> None:
    write_client_pki(tmp_path)
    other = trustme.CA().issue_cert("someone-else")
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    code, _, err = await run_client_cli(
        *flags_with("--tls-key", str(tmp_path / "other.key"), tmp_path), "unary", cwd=tmp_path
    )
    assert code == 2
    assert err.splitlines()[0] == (
        f"python -m greet.client: error: --tls-key {tmp_path / 'other.key'}: is not the key of "
        f"the certificate in {tmp_path / 'client.pem'}"
    )


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
async def test_client_cert_and_key_go_together(tmp_path: Path, given: str) -> None:
    write_client_pki(tmp_path)
    path = tmp_path / ("client.pem" if given == "--tls-cert" else "client.key")
    code, out, err = await run_client_cli(
        "--tls-ca", str(tmp_path / "ca.pem"), given, str(path), "unary", cwd=tmp_path
    )
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "python -m greet.client: error: --tls-cert and --tls-key go together",
        "Try 'python -m greet.client --help' for more information.",
    ]


async def test_mutual_tls_from_the_command_line(tmp_path: Path) -> None:
    ca = write_client_pki(tmp_path)
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    for index, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(tmp_path / "server.pem"), append=index > 0)
    server_tls = [
        "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
        "--tls-client-ca", str(tmp_path / "ca.pem"),
    ]  # fmt: skip
    async with ServerProcess(server_tls, cwd=str(tmp_path)) as server:
        code, out, err = await run_client_cli(
            "unary", "--target", server.target, "--tls-ca", str(tmp_path / "ca.pem"),
            "--tls-cert", str(tmp_path / "client.pem"), "--tls-key", str(tmp_path / "client.key"),
            cwd=tmp_path,
        )  # fmt: skip
    assert (code, out, err) == (0, "SayHello: Hello\n", "")


async def test_metadata_is_sent_by_the_plain_commands(tmp_path: Path) -> None:
    (tmp_path / "server-tokens").write_text("right-token\n")
    async with ServerProcess(
        ["--auth-token-file", str(tmp_path / "server-tokens")], cwd=str(tmp_path)
    ) as server:
        code, out, err = await run_client_cli(
            "--target", server.target, "bidi", "-m", "authorization=Bearer right-token", "q",
            cwd=tmp_path,
        )  # fmt: skip
        assert (code, out, err) == (0, "SayHelloBidirectionalStreaming: Hello q\n", "")
        code, _, err = await run_client_cli(
            "--target", server.target, "--token-file", str(tmp_path / "server-tokens"),
            "-m", "authorization=Bearer right-token", "unary", cwd=tmp_path,
        )  # fmt: skip
    assert code == 2
    assert "give the token with --token-file or --metadata authorization=..., not both" in err


# --- the flags' declarations, in process ------------------------------------------------------


def test_both_commands_use_one_parser_class() -> None:
    assert type(cli.build_parser()) is SettingsParser
    assert type(server_parser()) is SettingsParser


def test_connection_flags_default_to_the_channel_config_defaults() -> None:
    setup = client_setup(cli.build_parser().parse_args([]))
    assert setup.flags.transport == ChannelConfig()
    assert (setup.flags.target, setup.flags.timeout, setup.metadata) == ("127.0.0.1:8080", None, {})


@pytest.mark.parametrize("where", ["before", "after"])
def test_connection_flags_set_the_channel_config(where: str) -> None:
    flags = [
        "--http2-engine", "h2", "--keepalive-time", "5m", "--keepalive-timeout", "500ms",
        "--compression", "gzip", "--handshake-timeout", "2",
    ]  # fmt: skip
    argv = [*flags, "unary"] if where == "before" else ["unary", *flags]
    setup = client_setup(cli.build_parser().parse_args(argv))
    assert setup.flags.transport == ChannelConfig(
        engine="h2",
        keepalive=ClientKeepalive(time=300.0, timeout=0.5),
        compression="gzip",
        handshake_timeout=2.0,
    )


def test_metadata_before_and_after_the_command_is_all_sent() -> None:
    args = cli.build_parser().parse_args(["-m", "a=1", "unary", "--metadata", "B=2", "-m", "c=3"])
    assert client_setup(args).metadata == {"a": "1", "b": "2", "c": "3"}
