"""Interop with grpc-go: a real grpc-go client against `python -m greet.server`, and back.

The Go client (tests/interop/go/) does what the original Go demo's client did and prints each reply
and each status as one JSON line. It and the grpc-go reference server (benchmarks/go_server/) are
built once per session by tests/interop/build_go.sh, offline, from Debian's Go library packages.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from greet.client import GreetClient
from greet.testing import ServerProcess

BUILD_SCRIPT = Path(__file__).parent / "interop" / "build_go.sh"
DEBIAN_PACKAGES = (
    "golang-go golang-google-grpc-dev golang-google-protobuf-dev "
    "golang-github-golang-protobuf-1-5-dev protobuf-compiler"
)
NAMES = ["Akhil", "Alice", "Bob"]
UNUSUAL_NAMES = ["Zoë", "Ærøskøbing", "世界", "Привет", "👋🏽", "a b\tc", "", 'q"uote\\']
GO_READY = re.compile(r"greet server listening on (\S+)")
GRPC_UNIMPLEMENTED = 12
GRPC_DEADLINE_EXCEEDED = 4


@dataclass(frozen=True)
class GoBinaries:
    client: Path
    server: Path


@dataclass(frozen=True)
class GoRun:
    """What the Go client printed: (call, message) replies, status lines, its exit status."""

    returncode: int
    replies: list[tuple[str, str]]
    statuses: list[dict[str, object]]


@pytest.fixture(scope="session")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> GoBinaries:
    """Build the Go client and server once per session (about 15 s cold, 1 s with Go's cache)."""
    missing = [tool for tool in ("go", "protoc") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: the grpc-go interop tests need the Debian "
            f"packages {DEBIAN_PACKAGES}",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("go")
    build = subprocess.run(
        [str(BUILD_SCRIPT), str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    if build.returncode != 0:
        pytest.fail(f"building the Go interop binaries failed:\n{build.stderr}", pytrace=False)
    return GoBinaries(client=out / "greet-go-client", server=out / "greet-go-server")


async def run_go_client(
    binaries: GoBinaries, target: str, mode: str, names: Sequence[str] = (), *extra: str
) -> GoRun:
    process = await asyncio.create_subprocess_exec(
        str(binaries.client),
        "-addr",
        target,
        "-mode",
        mode,
        *extra,
        "--",
        *names,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    replies: list[tuple[str, str]] = []
    statuses: list[dict[str, object]] = []
    for line in stdout.decode().splitlines():
        record = json.loads(line)
        if "code" in record:
            statuses.append(record)
        else:
            replies.append((record["call"], record["message"]))
    assert not stderr, stderr.decode()
    return GoRun(process.returncode, replies, statuses)


def all_four(names: Sequence[str]) -> list[tuple[str, str]]:
    """The replies the original client shows for all four call kinds, in order."""
    greetings = [f"Hello {name}" for name in names]
    return [
        ("unary", "Hello"),
        *(("server-stream", greeting) for greeting in greetings),
        *(("client-stream", greeting) for greeting in greetings),
        *(("bidi", greeting) for greeting in greetings),
    ]


@pytest.fixture
async def python_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """`python -m greet.server --port 0` as a real process."""
    async with ServerProcess(cwd=str(tmp_path)) as server:
        yield server


@pytest.fixture
async def go_server(go_binaries: GoBinaries) -> AsyncIterator[str]:
    """The grpc-go reference server on a free port; yields its host:port."""
    process = await asyncio.create_subprocess_exec(
        str(go_binaries.server),
        "-addr",
        "127.0.0.1:0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        match = GO_READY.search(line.decode())
        assert match, f"unexpected first line from the Go server: {line!r}"
        yield match.group(1)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_go_client_gets_all_four_call_kinds(
    go_binaries: GoBinaries, python_server: ServerProcess
) -> None:
    run = await run_go_client(go_binaries, python_server.target, "all")
    assert run.statuses == []
    assert run.replies == all_four(NAMES)
    assert run.returncode == 0


async def test_go_client_with_unusual_and_many_names(
    go_binaries: GoBinaries, python_server: ServerProcess
) -> None:
    names = UNUSUAL_NAMES + [f"name-{i}" for i in range(1000)]
    run = await run_go_client(go_binaries, python_server.target, "all", names)
    assert run.statuses == []
    assert run.replies == all_four(names)


@pytest.mark.parametrize("mode", ["unknown-method", "unknown-service"])
async def test_go_client_reads_unknown_method_as_unimplemented(
    go_binaries: GoBinaries, python_server: ServerProcess, mode: str
) -> None:
    run = await run_go_client(go_binaries, python_server.target, mode)
    assert [(s["code"], s["status"]) for s in run.statuses] == [
        (GRPC_UNIMPLEMENTED, "Unimplemented")
    ]
    # The server keeps serving that same client afterwards.
    after = await run_go_client(go_binaries, python_server.target, "unary")
    assert after.replies == [("unary", "Hello")]


async def test_go_client_deadline_is_deadline_exceeded(
    go_binaries: GoBinaries, tmp_path: Path
) -> None:
    async with ServerProcess(["--work-delay", "5"], cwd=str(tmp_path)) as slow_server:
        run = await run_go_client(
            go_binaries, slow_server.target, "deadline", NAMES, "-timeout", "300ms"
        )
        assert run.replies == []
        assert [(s["call"], s["code"], s["status"]) for s in run.statuses] == [
            (call, GRPC_DEADLINE_EXCEEDED, "DeadlineExceeded")
            for call in ("server-stream", "client-stream", "bidi")
        ]
        assert run.returncode == 1
        after = await run_go_client(go_binaries, slow_server.target, "unary")
        assert after.replies == [("unary", "Hello")]


async def test_go_reference_server_answers_like_ours(
    go_binaries: GoBinaries, go_server: str, python_server: ServerProcess
) -> None:
    """The benchmark's grpc-go server gives the Go client exactly what our server gives it."""
    names = ["Akhil", "Zoë", "世界", ""]
    theirs = await run_go_client(go_binaries, go_server, "all", names)
    ours = await run_go_client(go_binaries, python_server.target, "all", names)
    assert theirs == ours == GoRun(0, all_four(names), [])


async def test_greet_client_against_grpc_go_server(go_server: str) -> None:
    """Our typed client talks to a grpc-go server: all four call kinds."""
    names = ["Akhil", "Zoë", "世界"]
    greetings = [f"Hello {name}" for name in names]
    async with GreetClient(go_server, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        streamed = [r.message async for r in client.say_hello_server_streaming(names)]
        assert streamed == greetings
        assert (await client.say_hello_client_streaming(names)).messages == greetings
        bidi = [r.message async for r in client.say_hello_bidirectional_streaming(names)]
        assert bidi == greetings
