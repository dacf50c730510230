"""`python -m greet.client` as a subprocess against a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from importlib import metadata as package_metadata
from pathlib import Path

import pytest
from loopback import bound_socket
from server_process import ServerProcess, run_client_cli


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
    (line,) = err.strip().splitlines()
    # and it says what the call was waiting for when the deadline passed (on a loaded machine
    # that may be the connection or the sending, rather than the reply)
    assert line.startswith("error: DEADLINE_EXCEEDED: deadline exceeded "), line
    causes = (
        f"the reply from {slow.target}",
        "(HTTP/2 handshake not complete)",
        "was sent",
        # the server's own copy of the deadline may pass first: it answers DEADLINE_EXCEEDED
        f"while {slow.target} worked on the call (deadline exceeded)",
    )
    assert line.endswith(causes), line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0", "unary"], "argument --timeout: must be more than 0 seconds"),
        (["--timeout", "-2", "unary"], "argument --timeout: must be more than 0 seconds"),
        (["--timeout", "nan", "unary"], "argument --timeout: must be more than 0 seconds"),
        (["--timeout", "inf", "unary"], "argument --timeout: must be more than 0 seconds"),
        (["--timeout", "soon", "unary"], "argument --timeout: not a number of seconds: 'soon'"),
        (["--resolve-interval", "-1", "unary"], "argument --resolve-interval: must be more"),
        (["--max-attempts", "0", "unary"], "argument --max-attempts: must be at least 1, not 0"),
        (["--connections", "many", "unary"], "argument --connections: not a whole number"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["--frobnicate", "unary"], "unknown flag --frobnicate"),
        (["--tagret", "x", "unary"], "unknown flag --tagret (did you mean --target?)"),
        (["unary", "--conections", "2"], "unknown flag --conections (did you mean --connections?)"),
        (["--target", "nonsense", "unary"], "bad target 'nonsense'"),
        (["-m", "Bad Key=1", "unary"], "argument -m/--metadata: bad key 'bad key'"),
        (["-m", "grpc-timeout=1S", "unary"], "'grpc-timeout' is set by gRPC itself"),
        (["-m", "x=caf\u00e9", "unary"], "bad value for 'x': a metadata value is printable ASCII"),
        (["-m", "x=1", "-m", "X=2", "unary"], "--metadata x is given twice"),
    ],
)
async def test_usage_errors_are_one_line_and_a_help_hint(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = await run_client_cli(*args, cwd=tmp_path)
    assert (code, out) == (2, "")
    first, hint = err.splitlines()  # no usage block
    assert first.startswith("python -m greet.client: error: ")
    assert message in first
    assert hint == "Try 'python -m greet.client --help' for more information."


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
async def test_timeout_after_the_command_is_checked_too(tmp_path: Path, value: str) -> None:
    code, _, err = await run_client_cli("unary", "--timeout", value, cwd=tmp_path)
    assert code == 2
    assert err.startswith("python -m greet.client unary: error: argument --timeout: must be more")


async def test_global_flags_work_after_the_command(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    code, out, err = await run_client_cli(
        "unary", "--timeout", "3", "--target", server_process.target, cwd=tmp_path
    )
    assert (code, out, err) == (0, "SayHello: Hello\n", "")
    code, out, err = await run_client_cli(
        "server-stream", "--target", server_process.target, "--max-attempts", "2", "a", "b",
        cwd=tmp_path,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "SayHelloServerStreaming: Hello a",
        "SayHelloServerStreaming: Hello b",
    ]


async def test_a_flag_after_the_command_wins_over_the_same_flag_before(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    with bound_socket() as dead:
        code, out, err = await run_client_cli(
            "--target", f"127.0.0.1:{dead.getsockname()[1]}", "--max-attempts", "1",
            "unary", "--target", server_process.target, cwd=tmp_path,
        )  # fmt: skip
    assert (code, out, err) == (0, "SayHello: Hello\n", "")


async def test_version(tmp_path: Path) -> None:
    code, out, err = await run_client_cli("--version", cwd=tmp_path)
    assert (code, out, err) == (0, f"greet-client {package_metadata.version('greet')}\n", "")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # a SETTINGS frame with no values
HEADERS = 0x1


async def receive_the_call(connection: socket.socket) -> None:
    """Start HTTP/2 with the client on `connection` (its preface, our SETTINGS) and read what it
    sends until the HEADERS frame that starts its call."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(connection, EMPTY_SETTINGS)
    received = b""
    while len(received) < len(PREFACE):
        received += await loop.sock_recv(connection, 65536)
    assert received.startswith(PREFACE)
    received = received[len(PREFACE) :]
    while True:
        while len(received) >= 9:
            length, kind = int.from_bytes(received[:3], "big"), received[3]
            if kind == HEADERS:
                return
            received = received[9 + length :]
        chunk = await loop.sock_recv(connection, 65536)
        assert chunk, "the client closed the connection before it sent its call"
        received += chunk


def console_spans(out: bytes) -> list[dict[str, object]]:
    """The spans the OpenTelemetry console exporter wrote (one JSON object each)."""
    decoder, text = json.JSONDecoder(), out.decode().strip()
    spans: list[dict[str, object]] = []
    index = 0
    while index < len(text):
        span, end = decoder.raw_decode(text, index)
        spans.append(span)
        index = len(text) - len(text[end:].lstrip())
    return spans


@pytest.mark.parametrize(
    "stage",
    [
        "connected",  # the client's connection was just accepted: Ctrl-C lands as it opens
        "call sent",  # HTTP/2 started and the call's HEADERS arrived: it waits for its reply
    ],
)
@pytest.mark.parametrize(
    "tracing",
    [
        "off",
        # the call runs in the tracing interceptors' tasks: the cancellation takes a few loop
        # turns to reach the connect, which completes meanwhile (Python < 3.12's wait_for then
        # drops it: greet.client.cli.until_interrupted)
        "console",
    ],
)
async def test_ctrl_c_during_a_call_exits_130_without_a_traceback(
    tmp_path: Path, stage: str, tracing: str
) -> None:
    environment = {**os.environ, "OTEL_TRACES_EXPORTER": "none" if tracing == "off" else tracing}
    with bound_socket() as silent:  # accepts the connection and never answers the call
        silent.listen()
        silent.setblocking(False)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "greet.client",
            "--target",
            f"127.0.0.1:{silent.getsockname()[1]}",
            "--handshake-timeout",  # no end but Ctrl-C while the server sends no settings
            "3600",
            "unary",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
            env=environment,
        )
        try:
            loop = asyncio.get_running_loop()
            connection, _ = await asyncio.wait_for(loop.sock_accept(silent), 30)
            with connection:  # the call is under way: the client is waiting for the server
                if stage == "call sent":
                    await asyncio.wait_for(receive_the_call(connection), 30)
                process.send_signal(signal.SIGINT)
                out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 130
    said = b"interrupted (Ctrl-C): the call was cancelled\n"
    if tracing == "off":
        assert (out, err) == (b"", said)
    else:  # stdout holds the exporter's spans and nothing else
        assert err == said
        assert all("name" in span for span in console_spans(out))
