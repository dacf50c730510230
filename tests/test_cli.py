"""`python -m greet.client` as a subprocess against a real server process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from greet.testing import ServerProcess, bound_socket, run_client_cli


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with ServerProcess(cwd=str(tmp_path)) as server:
        yield server


async def test_no_command_runs_all_four_call_kinds(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    code, out, err = await run_client_cli("--target", server_process.target, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "SayHello: Hello",
        "SayHelloServerStreaming: Hello Akhil",
        "SayHelloServerStreaming: Hello Alice",
        "SayHelloServerStreaming: Hello Bob",
        "SayHelloClientStreaming: ['Hello Akhil', 'Hello Alice', 'Hello Bob']",
        "SayHelloBidirectionalStreaming: Hello Akhil",
        "SayHelloBidirectionalStreaming: Hello Alice",
        "SayHelloBidirectionalStreaming: Hello Bob",
    ]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["unary"], ["SayHello: Hello"]),
        (
            ["server-stream", "Zoë", "x"],
            ["SayHelloServerStreaming: Hello Zoë", "SayHelloServerStreaming: Hello x"],
        ),
        (["client-stream", "a", "b"], ["SayHelloClientStreaming: ['Hello a', 'Hello b']"]),
        (["bidi", "q"], ["SayHelloBidirectionalStreaming: Hello q"]),
        (["bidi"], []),
    ],
)
async def test_commands(
    server_process: ServerProcess, tmp_path: Path, command: list[str], expected: list[str]
) -> None:
    code, out, err = await run_client_cli("--target", server_process.target, *command, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.splitlines() == expected


async def test_connection_refused_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with bound_socket() as unused:  # bound but not listening: connections are refused
        port = unused.getsockname()[1]
        code, out, err = await run_client_cli(
            "--target", f"127.0.0.1:{port}", "unary", cwd=tmp_path
        )
    assert code == 1
    assert out == ""
    assert err.startswith("error: UNAVAILABLE")
    assert len(err.strip().splitlines()) == 1


async def test_deadline_is_one_line_and_exit_1(tmp_path: Path) -> None:
    async with ServerProcess(["--work-delay", "5"], cwd=str(tmp_path)) as slow:
        code, _, err = await run_client_cli(
            "--target", slow.target, "--timeout", "0.3", "bidi", "x", cwd=tmp_path
        )
    assert code == 1
    assert err.strip().splitlines() == ["error: DEADLINE_EXCEEDED: deadline exceeded"]


async def test_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await run_client_cli("--target", "nonsense", "unary", cwd=tmp_path)
    assert code == 2
    assert "bad target" in err
