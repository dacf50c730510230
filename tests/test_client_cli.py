"""`python -m greet.client` flags for several targets, backups, TLS and tokens, as a subprocess
against real server processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from greet.testing import ServerProcess, bound_socket, run_client_cli


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
    assert "no token" in err


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
