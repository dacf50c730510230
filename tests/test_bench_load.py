"""bench as a load generator: several processes merged into one report, the progress bar, and
how it treats a dead target (a port that refuses, a server killed mid-run): it backs off, and
every failed call is counted and reported. Real server processes and sockets throughout; bounds
on call counts, never on time or rate."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from loopback import bound_socket
from server_process import ServerProcess, run_client_cli

PROGRESS = re.compile(r"^progress \S+ ok=(\d+) failed=(\d+) ")
FEW = 200
"""More failed calls than a run of 2 s against a dead target may make: 16 workers backing off
from 0.05 s, doubling, make about 6 each (a worker that did not back off makes thousands)."""


async def test_several_processes_report_every_call_once(tmp_path: Path) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as server:
        code, out, err = await run_client_cli(
            "--target", server.target, "bench", "-n", "301", "-c", "6", "--processes", "3",
            "--skip-first", "7", "--format", "csv", "--no-progress",
            cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err
        rows = out.splitlines()[1:]
        assert len(rows) == 301 - 7
        assert all(row.split(",")[2] == "OK" for row in rows)
        code, out, err = await run_client_cli(
            "--target", server.target, "bench", "-n", "200", "-c", "4", "-p", "2",
            "--json", "--no-progress", cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert (result["ok"], result["failed"], result["calls"]) == (200, 0, 200)
    assert result["by_target"] == {server.target: 200}
    assert sum(bucket["count"] for bucket in result["histogram"]) == 200


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", [["-n", "40"], ["--duration", "0.3"]], ids=["n", "duration"])
@pytest.mark.parametrize("processes", ["1", "2"])
async def test_the_progress_bar_ends_at_100_percent(
    tmp_path: Path, length: list[str], processes: str
) -> None:
    main_end, terminal = os.openpty()  # stderr is a terminal: the bar is drawn
    try:
        async with ServerProcess(cwd=str(tmp_path)) as server:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "greet.client", "--target", server.target, "bench",
                *length, "-c", "2", "-p", processes, "--progress-interval", "0.05", "--json",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=terminal, cwd=tmp_path,
            )  # fmt: skip
            os.close(terminal)
            terminal = -1
            drawn, (out, _) = await asyncio.gather(
                asyncio.to_thread(read_all, main_end), process.communicate()
            )
    finally:
        os.close(main_end)
        if terminal >= 0:
            os.close(terminal)
    assert process.returncode == 0, drawn
    bars = drawn.decode().replace("\r\n", "\n").split("\r")
    last = bars[-1]
    assert last.startswith("[" + "#" * 30 + "] 100% "), bars
    assert last.endswith("\n")
    assert json.loads(out)["ok"] > 0


async def test_latency_is_not_available_when_no_call_succeeded(tmp_path: Path) -> None:
    with bound_socket() as dead:  # bound, never listening: connections are refused
        target = f"127.0.0.1:{dead.getsockname()[1]}"
        code, out, err = await run_client_cli(
            "--target", target, "bench", "-n", "3", "-c", "1", "--no-progress", cwd=tmp_path
        )  # fmt: skip
        html_code, html, _ = await run_client_cli(
            "--target", target, "bench", "-n", "2", "-c", "1", "--format", "html",
            "--no-progress", cwd=tmp_path,
        )  # fmt: skip
    assert code == 1, err
    [latency] = [line for line in out.splitlines() if line.startswith("Latency (ms):")]
    assert latency == "Latency (ms): n/a (no call succeeded)"
    assert "0.000" not in out
    assert html_code == 1
    assert '<td class="number">n/a</td>' in html
    assert "0.000" not in html


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_target_that_refuses_gets_few_calls_each_counted(
    tmp_path: Path, processes: str
) -> None:
    with bound_socket() as dead:
        target = f"127.0.0.1:{dead.getsockname()[1]}"
        code, out, err = await run_client_cli(
            "--target", target, "bench", "--duration", "2", "-c", "16", "-p", processes,
            "--json", "--no-progress", cwd=tmp_path,
        )  # fmt: skip
    assert code == 1
    result = json.loads(out)
    assert result["ok"] == 0
    assert 16 <= result["failed"] < FEW  # every worker tried, and backed off
    assert result["errors"] == {"UNAVAILABLE": result["failed"]}
    assert result["calls"] == result["failed"]
    [message] = result["error_messages"]
    assert message.startswith(f"UNAVAILABLE: cannot connect to {target}")
    assert err.splitlines()[-1] == (
        f"error: {result['failed']} of {result['failed']} calls failed "
        f"(UNAVAILABLE {result['failed']})"
    )


async def test_a_target_that_never_speaks_http2_gets_few_calls(tmp_path: Path) -> None:
    with bound_socket() as silent:
        silent.listen()  # connections complete in the kernel; no one accepts or answers
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        code, out, err = await run_client_cli(
            "--target", target, "bench", "--duration", "2", "-c", "16", "-p", "1",
            "--handshake-timeout", "0.2", "--json", "--no-progress", cwd=tmp_path,
        )  # fmt: skip
    assert code == 1, err
    result = json.loads(out)
    assert result["ok"] == 0
    assert 0 < result["failed"] < FEW
    assert result["errors"] == {"UNAVAILABLE": result["failed"]}
    for message in result["error_messages"]:  # no settings, or (backlog full) no connection
        assert message.startswith("UNAVAILABLE: ")
        assert target in message


async def test_a_server_killed_mid_run_is_backed_off_from(tmp_path: Path) -> None:
    server = await ServerProcess(cwd=str(tmp_path)).start()
    try:
        bench = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "greet.client", "--target", server.target, "bench",
            "--duration", "3", "-c", "16", "--progress-interval", "0.1", "--json",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        assert bench.stderr is not None

        async def served_some() -> None:
            assert bench.stderr is not None
            while raw := await bench.stderr.readline():
                match = PROGRESS.match(raw.decode())
                if match and int(match.group(1)) >= 50:
                    return
            raise AssertionError("bench ended before the server served")

        await asyncio.wait_for(served_some(), 60)
        server.send_signal(signal.SIGKILL)
        await server.wait()
        out, err = await asyncio.wait_for(bench.communicate(), 60)
    finally:
        if server.process is not None and server.process.returncode is None:
            await server.stop(signal.SIGKILL)
    assert bench.returncode == 1, err
    result = json.loads(out)
    assert result["ok"] >= 50
    assert 0 < result["failed"] < FEW
    assert set(result["errors"]) == {"UNAVAILABLE"}
    assert result["calls"] == result["ok"] + result["failed"]
