"""`python -m greet.client bench` as a subprocess against real server processes."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from loopback import bound_socket
from server_process import ServerProcess, run_client_cli

JSON_KEYS = ["ok", "failed", "rps", "latency_ms", "errors", "by_target"]
"""The documented fields of `--json` (DESIGN.md); they stay first, others are added after."""
LATENCY_KEYS = ["p50", "p90", "p99", "max"]


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with ServerProcess(cwd=str(tmp_path)) as server:
        yield server


def rounded_from(figure: float, decimals: int) -> tuple[float, float]:
    """The values that `round(value, decimals)` turns into `figure`: half a last digit each way."""
    half = 0.5 * 10.0**-decimals
    return figure - half, figure + half


async def bench_json(target: str, *args: str, cwd: Path, code: int = 0) -> dict[str, Any]:
    """Run `bench ARGS... --json` and return the object it printed (stdout is only that)."""
    status, out, err = await run_client_cli(
        "--target", target, "bench", *args, "--json", "--no-progress", cwd=cwd
    )
    assert status == code, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    return result


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


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
    assert list(result)[: len(JSON_KEYS)] == JSON_KEYS
    assert (result["ok"], result["failed"], result["errors"]) == (60, 0, {})
    assert result["by_target"] == {server_process.target: 60}
    assert result["rps"] > 0
    latency = result["latency_ms"]
    assert list(latency)[:2] == LATENCY_KEYS[:2]
    assert set(LATENCY_KEYS) <= set(latency)
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


async def test_json_has_the_figures_a_ghz_user_expects(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    result = await bench_json(
        server_process.target, "--rpc", "server-stream", "--names", "4", "-n", "200", cwd=tmp_path
    )
    latency = result["latency_ms"]
    assert isinstance(latency, dict)
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert latency["min"] <= latency["mean"] <= latency["max"]
    assert latency["stddev"] >= 0
    elapsed = result["elapsed_s"]
    assert isinstance(elapsed, float)
    assert elapsed > 0
    assert result["calls"] == 200
    assert result["status_codes"] == {"OK": 200}
    # four replies per server-stream call over the run's elapsed time; both figures are rounded
    # (elapsed_s to the millisecond, msgs_per_s to a tenth: a 50 ms run's elapsed_s alone leaves
    # the rate 1% open), so: some time that rounds to elapsed_s gives a rate that rounds to
    # msgs_per_s
    shortest, longest = rounded_from(elapsed, 3)
    lowest, highest = rounded_from(result["msgs_per_s"], 1)
    assert 4 * 200 / longest <= highest
    assert lowest <= 4 * 200 / shortest
    histogram = result["histogram"]
    assert isinstance(histogram, list)
    assert sum(bucket["count"] for bucket in histogram) == 200
    assert histogram[0]["from_ms"] == latency["min"]
    assert histogram[-1]["to_ms"] == latency["max"]
    for lower, upper in itertools.pairwise(histogram):
        assert lower["to_ms"] == upper["from_ms"]


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
    for figure in ("p50", "p95", "p99", "mean", "stddev"):
        assert f" {figure} " in out
    histogram = out.split("Histogram:\n")[1].split("Status codes:")[0]
    counts = [int(line.rsplit(" ", 1)[1]) for line in histogram.splitlines()]
    assert sum(counts) == 200
    assert "  OK: 200" in out
    assert f"{server_process.target}: 200" in out
    # stderr is not a terminal here: plain progress lines, never mixed into stdout
    assert "progress" in err
    assert "progress" not in out


async def test_csv_has_one_row_per_call(server_process: ServerProcess, tmp_path: Path) -> None:
    code, out, err = await run_client_cli(
        "--target", server_process.target, "bench", "-n", "50", "--format", "csv", cwd=tmp_path
    )
    assert code == 0, err
    rows = csv_rows(out)
    assert len(rows) == 50
    assert list(rows[0]) == ["start_s", "latency_ms", "status", "messages", "error"]
    assert {row["status"] for row in rows} == {"OK"}
    assert all(float(row["latency_ms"]) > 0 for row in rows)
    starts = [float(row["start_s"]) for row in rows]
    assert starts == sorted(starts)


class PageChecker(HTMLParser):
    """Collects the tags of a page and checks they are closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.bars: list[int] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "rect":
            self.bars.append(int(dict(attrs)["data-count"] or 0))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <line .../> and the like

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"unexpected </{tag}>")


async def test_html_report_is_a_self_contained_page_with_a_histogram(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    code, out, err = await run_client_cli(
        "--target",
        server_process.target,
        "bench",
        "-n",
        "120",
        "--format",
        "html",
        "-o",
        str(report),
        cwd=tmp_path,
    )
    assert code == 0, err
    assert out == ""  # the report went to the file
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    checker = PageChecker()
    checker.feed(page)
    assert checker.problems == []
    assert checker.open == []
    assert "<svg" in page
    assert len(checker.bars) > 1
    assert sum(checker.bars) == 120  # every successful call is in one bar of the chart
    # nothing to fetch: no scripts, links, images or remote styles
    for needle in ("<script", "src=", "href=", "url(", "@import", "http:", "https:"):
        assert needle not in page


async def test_output_file_and_json_alias(server_process: ServerProcess, tmp_path: Path) -> None:
    report = tmp_path / "out" / "run.json"
    report.parent.mkdir()
    code, out, err = await run_client_cli(
        "--target", server_process.target, "bench", "-n", "10", "--json", "-o", str(report),
        cwd=tmp_path,
    )  # fmt: skip
    assert (code, out) == (0, ""), err
    assert json.loads(report.read_text())["ok"] == 10
    assert f"wrote the json report to {report}" in err.splitlines()


async def test_an_output_file_that_cannot_be_written_fails_before_the_run(tmp_path: Path) -> None:
    with bound_socket() as unused:  # nothing would answer: the run must not even start
        code, out, err = await run_client_cli(
            "--target",
            f"127.0.0.1:{unused.getsockname()[1]}",
            "bench",
            "-o",
            str(tmp_path / "no-such-dir" / "report.json"),
            cwd=tmp_path,
        )
    assert (code, out) == (2, "")
    assert err.splitlines()[0].endswith(
        "report.json: cannot write to it: No such file or directory"
    )
    assert "progress" not in err


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
    assert result["connections"] == 2


async def test_failed_calls_are_counted_by_status_and_exit_1(tmp_path: Path) -> None:
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
    assert code == 1
    assert err.splitlines()[-1] == "error: 5 of 5 calls failed (UNAVAILABLE 5)"
    result = json.loads(out)  # the report is complete all the same
    assert (result["ok"], result["failed"]) == (0, 5)
    assert result["errors"] == {"UNAVAILABLE": 5}
    assert result["status_codes"] == {"UNAVAILABLE": 5}
    assert result["by_target"] == {}
    assert set(result["latency_ms"].values()) == {None}  # n/a: no call succeeded
    assert result["histogram"] == []
    [message] = result["error_messages"]
    assert message.startswith(f"UNAVAILABLE: cannot connect to {target}")


async def test_some_failed_calls_exit_1_with_the_summary(tmp_path: Path) -> None:
    async with ServerProcess(cwd=str(tmp_path)) as live:
        with bound_socket() as dead:
            targets = f"{live.target},127.0.0.1:{dead.getsockname()[1]}"
            code, out, err = await run_client_cli(
                "--target", targets, "--max-attempts", "1", "bench", "-n", "20", "-c", "1",
                cwd=tmp_path,
            )  # fmt: skip
    assert code == 1
    assert "UNAVAILABLE: " in out.split("Status codes:")[1]
    assert re.search(r"error: \d+ of 20 calls failed \(UNAVAILABLE \d+\)", err)


async def test_rps_limits_the_rate(server_process: ServerProcess, tmp_path: Path) -> None:
    unlimited = await bench_json(server_process.target, "--duration", "2", cwd=tmp_path)
    limited = await bench_json(
        server_process.target, "--duration", "2", "--rps", "20", cwd=tmp_path
    )
    assert isinstance(unlimited["ok"], int)
    assert isinstance(limited["ok"], int)
    assert limited["failed"] == 0
    assert 20 <= limited["ok"] <= 42  # 20 calls/s for 2 s: about 40
    assert limited["ok"] * 4 < unlimited["ok"]
    assert limited["load"] == {"schedule": "const", "rps": 20.0}


async def test_a_slow_rate_ends_on_time(server_process: ServerProcess, tmp_path: Path) -> None:
    # 16 workers at 2 calls/s: the last starts the schedule allows within 1 s are 2 or 3;
    # no worker waits on for a start after the end
    result = await bench_json(
        server_process.target, "--duration", "1", "--rps", "2", "-c", "16", cwd=tmp_path
    )
    assert 1 <= result["ok"] <= 3
    assert result["elapsed_s"] < 4


async def test_step_schedule_raises_the_rate(server_process: ServerProcess, tmp_path: Path) -> None:
    code, out, err = await run_client_cli(
        "--target",
        server_process.target,
        "bench",
        "--duration",
        "4",
        "--load-schedule",
        "step",
        "--load-start",
        "20",
        "--load-step",
        "20",
        "--load-step-duration",
        "2",
        "--load-end",
        "300",
        "--format",
        "csv",
        "--progress-interval",
        "0.5",
        cwd=tmp_path,
    )
    assert code == 0, err
    starts = [float(row["start_s"]) for row in csv_rows(out)]
    first = sum(start < 2 for start in starts)  # 20/s: about 40
    second = len(starts) - first  # 40/s: about 80
    assert 20 <= first <= 42
    assert second <= 82
    assert second > 1.4 * first
    assert "target=20/s" in err  # the progress line shows the rate asked for


async def test_skip_first_leaves_the_warm_up_out(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    result = await bench_json(
        server_process.target, "-n", "50", "--skip-first", "20", "-c", "4", cwd=tmp_path
    )
    assert (result["ok"], result["calls"], result["skipped"]) == (30, 30, 20)
    assert result["by_target"] == {server_process.target: 30}
    assert sum(bucket["count"] for bucket in result["histogram"]) == 30


UNARY_DATA = "{}"
SERVER_STREAM_DATA = '[{"names": ["a", "b", "c"]}, {"names": ["d"]}]'
STREAM_DATA = '[{"name": "a"}, {"name": "b"}]'


@pytest.mark.parametrize(
    ("rpc", "data", "messages"),
    [
        ("unary", UNARY_DATA, {"1"}),
        ("server-stream", SERVER_STREAM_DATA, {"3", "1"}),  # the two lists round-robin
        ("client-stream", STREAM_DATA, {"2"}),
        ("bidi", STREAM_DATA, {"2"}),
        ("bidi", '{"name": "solo"}', {"1"}),
    ],
)
async def test_data_is_sent_by_every_call(
    server_process: ServerProcess, tmp_path: Path, rpc: str, data: str, messages: set[str]
) -> None:
    code, out, err = await run_client_cli(
        "--target", server_process.target, "bench", "--rpc", rpc, "-n", "20", "-d", data,
        "-O", "csv", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    rows = csv_rows(out)
    assert len(rows) == 20
    assert {row["messages"] for row in rows} == messages


@pytest.mark.parametrize(
    ("rpc", "data"),
    [
        ("server-stream", '{"names": ["ok", "%s"]}'),
        ("client-stream", '[{"name": "ok"}, {"name": "%s"}]'),
        ("bidi", '[{"name": "%s"}]'),
    ],
)
async def test_data_file_reaches_the_server(tmp_path: Path, rpc: str, data: str) -> None:
    data_file = tmp_path / "data.json"
    data_file.write_text(data % ("x" * 2000))  # longer than the server allows
    async with ServerProcess(["--max-name-chars", "1024"], cwd=str(tmp_path)) as server:
        result = await bench_json(
            server.target, "--rpc", rpc, "-n", "6", "--data-file", str(data_file),
            cwd=tmp_path, code=1,
        )  # fmt: skip
    assert result["errors"] == {"INVALID_ARGUMENT": 6}


async def test_metadata_is_sent_with_every_call(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("right-token\n")
    async with ServerProcess(
        ["--auth-token-file", str(tmp_path / "tokens")], cwd=str(tmp_path)
    ) as server:
        without = await bench_json(server.target, "-n", "10", cwd=tmp_path, code=1)
        code, out, err = await run_client_cli(
            "--target", server.target, "bench", "-n", "30",
            "--metadata", "authorization=Bearer right-token", "-m", "x-test=yes",
            "--json", "--no-progress", cwd=tmp_path,
        )  # fmt: skip
    assert without["errors"] == {"UNAUTHENTICATED": 10}
    assert code == 0, err
    assert json.loads(out)["ok"] == 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rpc", "nope"], "argument --rpc: invalid choice: 'nope'"),
        (["--rps", "0"], "argument -r/--rps: must be more than 0"),
        (["--rps", "nan"], "argument -r/--rps: must be a finite number"),
        (["--duration", "inf"], "argument -z/--duration: must be more than 0 seconds and finite"),
        (["--duration", "0"], "argument -z/--duration: must be more than 0 seconds and finite"),
        (["--progress-interval", "-1"], "argument --progress-interval: must be more than 0"),
        (["--load-start", "10"], "--load-start is for --load-schedule step or line"),
        (["--load-schedule", "step", "--rps", "5"], "--rps is the constant rate"),
        (
            ["--load-schedule", "step", "--load-start", "5", "--load-step", "5"],
            "--load-schedule step needs --load-step-duration",
        ),
        (
            ["--load-schedule", "line", "--load-start", "50", "--load-step", "-5"],
            "a falling load needs --load-end or --load-max-duration",
        ),
        (["-n", "10", "--skip-first", "10"], "--skip-first 10 leaves none of --requests 10"),
        (["--json", "--format", "csv"], "--json is --format json"),
        (["--data", "{"], "--data: not JSON"),
        (
            ["--data", '{"name": "x"}'],
            "--data: unary sends NoParam {}; NoParam has no field 'name'",
        ),
        (["--rpc", "bidi", "--data", '{"names": []}'], "HelloRequest has no field 'names'"),
        (["--rpc", "server-stream", "--data", '{"names": [1]}'], "NamesList.names is a list"),
        (["--names", "2", "--data", "{}"], "with --data or --data-file the JSON has them"),
        (["--data-file", "missing.json"], "argument -D/--data-file: cannot read missing.json"),
        (["-m", "novalue"], "argument -m/--metadata: expected KEY=VALUE"),
    ],
)
async def test_bad_bench_flags_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = await run_client_cli("bench", *args, cwd=tmp_path)
    assert (code, out) == (2, "")
    first, hint = err.splitlines()
    assert first.startswith("python -m greet.client bench: error: ")
    assert message in first
    assert hint == "Try 'python -m greet.client bench --help' for more information."


PROGRESS_OK = re.compile(r"progress \S+ ok=([1-9]\d*)")


async def test_ctrl_c_prints_the_partial_report(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greet.client",
        "--target",
        server_process.target,
        "bench",
        "--duration",
        "120",
        "--progress-interval",
        "0.05",
        "--json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stderr is not None
    seen = ""

    async def running() -> int:
        nonlocal seen
        assert process.stderr is not None
        while True:
            line = (await process.stderr.readline()).decode()
            seen += line
            assert line, f"bench ended before it showed progress:\n{seen}"
            if match := PROGRESS_OK.match(line):
                return int(match.group(1))

    try:
        ok_so_far = await asyncio.wait_for(running(), 30)
        process.send_signal(signal.SIGINT)
        out, rest = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = seen + rest.decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: the report covers the calls made so far" in err
    result = json.loads(out)
    assert result["interrupted"] is True
    assert result["ok"] >= ok_so_far
    assert result["failed"] == 0  # calls cut short are not counted as failures
    assert result["by_target"] == {server_process.target: result["ok"]}
    assert 0 < result["elapsed_s"] < 120
