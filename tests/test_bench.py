"""`python -m greet.client bench` as a subprocess against real server processes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from greet.testing import ServerProcess, bound_socket, run_client_cli

JSON_KEYS = ["ok", "failed", "rps", "latency_ms", "errors", "by_target"]


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with ServerProcess(cwd=str(tmp_path)) as server:
        yield server


@pytest.mark.parametrize("rpc", ["unary", "server-stream", "client-stream", "bidi"])
async def test_json_is_one_object_with_the_documented_fields(
    server_process: ServerProcess, tmp_path: Path, rpc: str
) -> None:
    code, out, err = await run_client_cli(
        "--target",
        server_process.target,
        "bench",
        "--rpc",
        rpc,
        "--requests",
        "60",
        "--concurrency",
        "4",
        "--names",
        "3",
        "--json",
        cwd=tmp_path,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result) == JSON_KEYS
    assert (result["ok"], result["failed"], result["errors"]) == (60, 0, {})
    assert result["by_target"] == {server_process.target: 60}
    assert result["rps"] > 0
    latency = result["latency_ms"]
    assert list(latency) == ["p50", "p90", "p99", "max"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


async def test_summary_has_rate_percentiles_histogram_and_targets(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    code, out, err = await run_client_cli(
        "--target",
        server_process.target,
        "bench",
        "--requests",
        "200",
        "--concurrency",
        "8",
        "--progress-interval",
        "0.01",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "ok:      200" in out
    assert "failed:  0" in out
    assert "calls/s" in out
    assert "p50" in out
    assert "p99" in out
    histogram = out.split("Histogram:\n")[1].split("Served by:")[0]
    counts = [int(line.rsplit(" ", 1)[1]) for line in histogram.splitlines()]
    assert sum(counts) == 200
    assert f"{server_process.target}: 200" in out
    # stderr is not a terminal here: plain progress lines, never mixed into stdout
    assert "progress" in err
    assert "progress" not in out


async def test_duration_runs_for_that_long_and_connections_are_used(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    code, out, err = await run_client_cli(
        "--target",
        server_process.target,
        "bench",
        "--duration",
        "0.5",
        "--concurrency",
        "8",
        "--connections",
        "2",
        "--json",
        "--no-progress",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert err == ""
    result = json.loads(out)
    assert result["ok"] > 0
    assert result["failed"] == 0


async def test_failed_calls_are_counted_by_status(tmp_path: Path) -> None:
    with bound_socket() as dead:  # refuses connections
        target = f"127.0.0.1:{dead.getsockname()[1]}"
        code, out, err = await run_client_cli(
            "--target",
            target,
            "--max-attempts",
            "1",
            "bench",
            "--requests",
            "5",
            "--concurrency",
            "1",
            "--json",
            cwd=tmp_path,
        )
    assert code == 0, err
    result = json.loads(out)
    assert (result["ok"], result["failed"]) == (0, 5)
    assert result["errors"] == {"UNAVAILABLE": 5}
    assert result["by_target"] == {}
    assert result["latency_ms"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}


async def test_bench_needs_a_known_rpc(tmp_path: Path) -> None:
    code, _, err = await run_client_cli("bench", "--rpc", "nope", cwd=tmp_path)
    assert code == 2
    assert "invalid choice" in err
