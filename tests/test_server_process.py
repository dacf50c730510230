"""`python -m greet.server` as a real process: readiness, flags, environment, clean shutdown,
one-line errors, Ctrl-C at any moment."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
import trustme
from server_process import ServerProcess

from greet.client import GreetClient
from greet.server.config import DEFAULT_HOST, DEFAULT_PORT, parse_config
from greet.server.supervisor import MAX_WORKERS_PER_CPU
from greet_service import HelloRequest, HelloResponse


def test_defaults_are_the_original_address() -> None:
    config = parse_config([], environ={})
    assert (config.host, config.port) == (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 8080)


def test_environment_sets_flags_and_flags_win() -> None:
    environ = {"GREET_PORT": "9001", "GREET_WORK_DELAY": "0.5", "GREET_ACCESS_LOG": "true"}
    config = parse_config([], environ=environ)
    assert (config.port, config.work_delay, config.access_log) == (9001, 0.5, True)
    assert parse_config(["--port", "9002"], environ=environ).port == 9002


def test_bad_flag_values_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        parse_config(["--tls-cert", "cert.pem"], environ={})
    assert caught.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serves_then_exits_cleanly_on_signal(signum: int, tmp_path: str) -> None:
    server = await ServerProcess(cwd=str(tmp_path)).start()
    async with GreetClient(server.target, timeout=10) as client:
        assert (await client.say_hello()).message == "Hello"
    assert await server.stop(signum) == 0
    log = "\n".join(server.log_lines)
    assert "Traceback" not in log
    assert "stopped" in log


async def test_port_and_host_from_environment(tmp_path: str) -> None:
    async with ServerProcess(
        ["--port", "0"], env={"GREET_HOST": "127.0.0.1"}, cwd=str(tmp_path)
    ) as server:
        assert server.target.startswith("127.0.0.1:")
        async with GreetClient(server.target, timeout=10) as client:
            reply = await client.say_hello_client_streaming(["env"])
        assert reply.messages == ["Hello env"]


async def test_port_in_use_is_a_one_line_error(tmp_path: str) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as first:
        port = first.target.rsplit(":", 1)[1]
        second = ServerProcess(["--port", port], cwd=str(tmp_path))
        with pytest.raises(RuntimeError, match="exited before"):
            await second.start()
        assert await second.wait() == 1
        assert any("cannot serve" in line for line in second.log_lines)
        assert not any("Traceback" in line for line in second.log_lines)


def run_server_command(*args: str, command: str = "") -> subprocess.CompletedProcess[str]:
    """Run the server command (`python -m greet.server`, or the console script `command`) to
    completion, for arguments that make it exit at once."""
    argv = [command] if command else [sys.executable, "-m", "greet.server"]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_a_usage_error_is_one_line_and_a_hint() -> None:
    done = run_server_command("--port", "abc")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "python -m greet.server: error: argument --port: must be a whole number, not 'abc'",
        "Try 'python -m greet.server --help' for more information.",
    ]


def test_readme_quick_start_names_the_console_scripts() -> None:
    root = Path(__file__).parent.parent
    quick_start = (root / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    pyproject = (root / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    for script, module in (("greet-server", "greet.server"), ("greet-client", "greet.client")):
        assert f"`{script}` (= `python -m {module}`)" in quick_start
        assert f'\n{script} = "{module}.__main__:main"\n' in pyproject


def test_console_script_shows_its_version_and_its_name() -> None:
    script = Path(sys.executable).with_name("greet-server")
    version = run_server_command("--version", command=str(script))
    assert (version.returncode, version.stdout) == (
        0,
        f"greet-server {importlib.metadata.version('greet')}\n",
    )
    error = run_server_command("--workers", "-1", command=str(script))
    assert error.returncode == 2
    assert error.stderr.splitlines() == [
        "greet-server: error: argument --workers: must be at least 0, not -1",
        "Try 'greet-server --help' for more information.",
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unusable_tls_file_is_named_before_anything_starts(tmp_path: Path, workers: str) -> None:
    key = tmp_path / "key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(key))
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    done = run_server_command(
        "--port", "0", "--workers", workers, "--tls-cert", str(cert), "--tls-key", str(key)
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m greet.server: error: --tls-cert {cert}: holds no PEM certificate "
        "(-----BEGIN CERTIFICATE-----)",
        "Try 'python -m greet.server --help' for more information.",
    ]


async def test_workers_above_four_per_cpu_are_capped_with_a_warning(tmp_path: Path) -> None:
    cap = MAX_WORKERS_PER_CPU * len(os.sched_getaffinity(0))
    async with (
        ServerProcess(["--workers", "500"], cwd=str(tmp_path)) as server,
        GreetClient(server.target, timeout=30) as client,
    ):
        assert (await client.say_hello()).message == "Hello"
    log = "\n".join(server.log_lines)
    assert f"--workers 500 is more than {MAX_WORKERS_PER_CPU} per CPU" in log
    assert f"starting {cap} workers" in log
    assert "Traceback" not in log


GRPCLIB_IMPORTED = re.compile(r"^import time:.*\|\s+grpclib(\.|$)")
"""A line of `-X importtime` output: an import of grpclib (or one of its modules) finished, so
the process that wrote it is in the middle of its imports."""


def grpclib_imported(line: str) -> bool:
    return GRPCLIB_IMPORTED.match(line) is not None


Step: TypeAlias = "tuple[Callable[[str], bool], Callable[[int], None]]"
"""(a test of a stderr line, what to do to the server's pid once a line passes it)."""


def interrupt_server(pid: int) -> None:
    os.kill(pid, signal.SIGINT)


def interrupt_group(pid: int) -> None:
    """What Ctrl-C in a terminal does: SIGINT to every process of the foreground group."""
    os.killpg(pid, signal.SIGINT)


def interrupt_workers(pid: int) -> None:
    """SIGINT to the other processes of the server's group (its workers), not to the server."""
    for member in Path("/proc").iterdir():
        try:
            stat = (member / "stat").read_text()
        except OSError:  # not a process, or gone
            continue
        _state, _parent, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pid and int(member.name) != pid:
            os.kill(int(member.name), signal.SIGINT)


async def run_with_interrupts(args: list[str], steps: list[Step]) -> tuple[int, list[str]]:
    """Run the server in its own process group with import timing on stderr (Python's
    PYTHONPROFILEIMPORTTIME) and take `steps` in order, each at the first stderr line that passes
    its test. Returns the exit status and the stderr lines other than import times; asserts that
    every step was taken."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "greet.server", "--port", "0", *args),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        start_new_session=True,  # a process group of its own, with only it and its workers
    )
    assert process.stderr is not None
    stderr = process.stderr
    lines: list[str] = []
    pending = list(steps)

    async def follow() -> int:
        async for raw in stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if not line.startswith("import time:"):
                lines.append(line)
            if pending and pending[0][0](line):
                pending.pop(0)[1](process.pid)
        return await process.wait()

    try:
        code = await asyncio.wait_for(follow(), 60)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert not pending, lines
    return code, lines


def no_traceback(lines: list[str]) -> bool:
    return not any("Traceback" in line or "KeyboardInterrupt" in line for line in lines)


@pytest.mark.parametrize("workers", ["1", "3"])
async def test_ctrl_c_while_importing_prints_no_traceback(workers: str) -> None:
    code, lines = await run_with_interrupts(
        ["--workers", workers], [(grpclib_imported, interrupt_server)]
    )
    assert no_traceback(lines), lines
    assert code == -signal.SIGINT  # ended as by SIGINT's default action: status 130 in a shell


def seen(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


async def test_ctrl_c_while_the_workers_import_prints_no_traceback() -> None:
    code, lines = await run_with_interrupts(
        ["--workers", "3"],
        [(seen("starting 3 workers"), lambda pid: None), (grpclib_imported, interrupt_group)],
    )
    assert no_traceback(lines), lines
    assert (code, lines[-1].endswith("stopped")) == (0, True)


async def test_workers_ignore_a_sigint_of_their_own_while_importing() -> None:
    """A worker takes SIGINT from no one but its supervisor (which stops it with SIGTERM): one
    that reaches it first, from a terminal's Ctrl-C, neither kills it nor prints a traceback."""
    code, lines = await run_with_interrupts(
        ["--workers", "3"],
        [
            (seen("starting 3 workers"), lambda pid: None),
            (grpclib_imported, interrupt_workers),
            (seen("greet server listening on"), interrupt_server),
        ],
    )
    assert no_traceback(lines), lines
    assert code == 0
    assert not any("exited" in line for line in lines), lines


WORKER_READY = re.compile(r"worker \d+ \(pid (\d+)\) ready")


async def test_ctrl_c_with_workers_drains_calls_in_flight(tmp_path: Path) -> None:
    """Ctrl-C reaches the supervisor and every worker; workers still drain, as on SIGTERM
    (rather than taking the supervisor's SIGTERM after their own SIGINT as a second signal,
    which ends the grace period at once)."""
    async with (
        ServerProcess(["--workers", "2", "--grace", "60"], cwd=str(tmp_path)) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        bidi = channel.stream_stream(
            "/greet_service.GreetService/SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )
        call = bidi()
        await call.write(HelloRequest(name="Ann"))
        assert await call.read() == HelloResponse(message="Hello Ann")
        workers = [int(m.group(1)) for line in server.log_lines if (m := WORKER_READY.search(line))]
        assert len(workers) == 2
        for pid in workers:  # what a terminal's Ctrl-C does: the workers get SIGINT too,
            os.kill(pid, signal.SIGINT)
        await call.write(HelloRequest(name="Ann"))  # (once their event loops have seen it)
        assert await call.read() == HelloResponse(message="Hello Ann")
        server.send_signal(signal.SIGINT)  # and so does the supervisor, which stops them
        await server.wait_for_log(re.compile("shutting down 2 workers"))
        await call.write(HelloRequest(name="Bob"))
        assert await call.read() == HelloResponse(message="Hello Bob")
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        assert await server.wait() == 0
    assert not any("Traceback" in line for line in server.log_lines)
