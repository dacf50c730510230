"""benchmarks/compare.py, benchmarks/chart.py and benchmarks/client_compare.py still work: one
tiny run of every part.

The benchmark itself is not part of the tests (its figures are in benchmarks/RESULTS.md); this
only proves the harness starts greet on both HTTP/2 engines and grpcio, drives them with h2load,
the bench tool and the other drivers, writes results.json, the report and the chart, and that
chart.py redraws the chart from the results file; and that client_compare.py runs every client
kind on every workload and prints its table and commands. No speed is asserted.
Needs h2load (Debian nghttp2-client), taskset and grpcio-tools.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
SERVERS = ("greet-nghttp2", "greet-h2", "grpcio")
WORKLOADS = ("unary128", "unary1", "server_stream_gzip")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny compare.py run (grpc-go left out: its build would dominate the time)."""
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, str(BENCHMARKS / "compare.py"),
        "--rounds", "1", "--duration", "0.5", "--warmup", "0.2",
        "--workloads", ",".join(WORKLOADS), "--rss-streams", "20", "--no-go",
        "--out", str(out / "RESULTS.md"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return out


def results_of(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / "results.json").read_text())
    return loaded


@pytest.mark.timeout(240)
def test_results_json_holds_every_figure_with_its_commands(tiny_run: Path) -> None:
    results = results_of(tiny_run)
    assert results["schema"] == 1
    assert results["command"].startswith("python benchmarks/compare.py --rounds 1")
    assert {"greet", "grpcio", "ngh2", "h2", "h2load"} <= set(results["versions"])
    assert set(results["per_core"]) == set(WORKLOADS)
    for key, workload in results["per_core"].items():
        assert workload["load_command"].startswith("taskset -c 1 h2load -t1 ")
        assert f"-d /tmp/greet-bodies/{key}.body" in workload["load_command"]
        assert set(workload["figures"]) == set(SERVERS)
        for figure in workload["figures"].values():
            assert figure["server_command"].startswith("taskset -c 0 python ")
            assert "--port PORT" in figure["server_command"]
            [run] = figure["runs"]
            assert run["failed"] == 0
    # every server answered unary calls in the window, and said how long they took
    for name in SERVERS:
        [run] = results["per_core"]["unary1"]["figures"][name]["runs"]
        assert run["rate"] > 0
        assert 0 < run["p50_us"] <= run["p99_us"]
    commands = {
        name: results["per_core"]["unary128"]["figures"][name]["server_command"] for name in SERVERS
    }
    assert commands["greet-nghttp2"].endswith("-m greet.server --port PORT --http2-engine nghttp2")
    assert commands["greet-h2"].endswith("-m greet.server --port PORT --http2-engine h2")
    assert commands["grpcio"].endswith("benchmarks/grpcio_server.py --port PORT")
    assert set(results["bench_tool"]["figures"]) == set(SERVERS)
    assert set(results["pingpong"]["figures"]) == set(SERVERS)
    assert set(results["rss"]["figures"]) == set(SERVERS)
    whole = results["whole_machine"]["figures"]
    assert {"greet-nghttp2-w2", "greet-h2-w2", "greet-nghttp2-w1", "greet-h2-w1", "grpcio"} == set(
        whole
    )
    assert whole["greet-h2-w2"]["server_command"].endswith("--http2-engine h2 --workers 2")


@pytest.mark.timeout(240)
def test_every_server_compresses_the_gzip_workload(tiny_run: Path) -> None:
    """What goes over the wire: each server's replies are well under their uncompressed size."""
    workload = results_of(tiny_run)["per_core"]["server_stream_gzip"]
    assert "-H 'grpc-accept-encoding: gzip'" in workload["load_command"]
    uncompressed = 1_000 * (5 + 3 + len("Hello ") + 1_024)  # prefix, tag + length, text
    for name, figure in workload["figures"].items():
        assert figure["reply_bytes_per_call"] < 0.7 * uncompressed, name
        assert "gzip" in figure["server_command"], name


@pytest.mark.timeout(240)
def test_the_report_shows_both_engines_the_targets_and_the_commands(tiny_run: Path) -> None:
    text = (tiny_run / "RESULTS.md").read_text()
    servers = "| greet (nghttp2) | greet (h2) | grpcio (asyncio) |"
    assert f"| workload {servers} nghttp2 / grpcio | h2 / grpcio |" in text
    ratios = r"\| \*\*\d+\.\d\d\*\* \| \*\*\d+\.\d\d\*\* \|"
    assert re.search(r"\| unary, 1 in flight \(req/s\) \|.*" + ratios, text)
    assert "| target (issues 8 and 14) | greet (nghttp2) | met? | greet (h2) | met? |" in text
    verdict = r" \d+\.\d\dx \| (met|\*\*not met\*\*) \|"
    assert re.search(r"\| --workers 2 on the whole machine >= 2\.0x grpcio \|" + verdict * 2, text)
    assert "`taskset -c 0 python -m greet.server --port PORT --http2-engine h2`" in text
    assert "Load: `taskset -c 1 h2load -t1 -c4 -m32 -D 500ms --warm-up-time=200ms" in text
    assert "`python benchmarks/workloads.py /tmp/greet-bodies`" in text
    assert "## The bench tool beside h2load" in text
    assert re.search(r"\| greet \(nghttp2\) \| [\d.]+k? \| [\d.]+k? \| \d\.\d\d \|", text)
    assert "Failed or errored h2load requests over all runs: 0." in text
    assert "## Whole machine" in text


@pytest.mark.timeout(240)
def test_chart_py_draws_every_server_from_the_results_file(tiny_run: Path) -> None:
    written = (tiny_run / "chart.svg").read_text()
    redrawn = tiny_run / "redrawn.svg"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "chart.py"), str(tiny_run / "results.json"),
         "--out", str(redrawn)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert redrawn.read_text() == written
    svg = ElementTree.fromstring(written)
    bars = [
        title.text or ""
        for rect in svg.iter("{http://www.w3.org/2000/svg}rect")
        for title in rect.iter("{http://www.w3.org/2000/svg}title")
    ]
    # A group per workload and one for the whole machine, with a bar for each server measured
    # in it: a 0.5 s window on a busy machine may finish no call of a long gzip stream.
    results = json.loads((tiny_run / "results.json").read_text())
    groups = [*(results["per_core"][key]["figures"] for key in WORKLOADS)]
    whole = results["whole_machine"]["figures"]
    groups.append({name: whole[key] for name, key in WHOLE_MACHINE_BARS.items()})
    drawn = [figures for figures in groups if measured(figures, "grpcio")]
    assert len(drawn) >= 3  # the unary groups and the whole machine at least
    for name, label in CHART_LABELS.items():
        expected = sum(measured(figures, name) for figures in drawn)
        assert sum(bar.startswith(label + ":") for bar in bars) == expected, label


CHART_LABELS = {
    "greet-nghttp2": "greet (nghttp2)",
    "greet-h2": "greet (h2)",
    "grpcio": "grpcio (asyncio)",
}
WHOLE_MACHINE_BARS = {
    "greet-nghttp2": "greet-nghttp2-w2",
    "greet-h2": "greet-h2-w2",
    "grpcio": "grpcio",
}


def measured(figures: dict[str, Any], name: str) -> bool:
    """Whether `name` has a figure above 0 (the median of its runs) among `figures`."""
    rate: float = statistics.median(run["rate"] for run in figures[name]["runs"])
    return rate > 0


def test_chart_py_says_what_is_wrong_with_a_bad_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text('{"schema": 0}')
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "chart.py"), str(bad), "--out", str(tmp_path / "c.svg")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"chart.py: cannot read {bad}: {bad}: not a schema 1 results file"
    assert not (tmp_path / "c.svg").exists()


@pytest.mark.timeout(240)
def test_client_compare_runs_every_client_and_prints_the_table_and_commands(
    tmp_path: Path,
) -> None:
    """benchmarks/client_compare.py, tiny: every client kind on every workload against greet's
    server (`--server greet`: no Go build), the table, the skipped kinds and the commands."""
    import greet.client

    out = tmp_path / "client.json"
    command = [
        sys.executable, str(BENCHMARKS / "client_compare.py"),
        "--rounds", "1", "--duration", "0.2", "--warmup", "0.1", "--messages", "20",
        "--server", "greet", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    text = done.stdout
    assert (
        "| client | unary, 1 in flight (calls/s) | unary, 64 in flight (calls/s) "
        "| server stream (msg/s) | bidi (msg/s) |" in text
    )
    kinds = {
        "grpcio asyncio client": "grpcio",
        "GreetClient": "greetclient",
        "GreetServiceStub over greet.transport.Channel": "stub-transport",
    }
    if hasattr(greet.client, "Channel"):
        kinds["GreetServiceStub over greet.client.Channel"] = "stub-client"
    else:
        assert "Skipped `stub-client`: greet.client has no Channel here" in text
    number = r"[\d.]+k?"
    for label, kind in kinds.items():
        ratio = "" if kind == "grpcio" else r" \(\*\*\d+\.\d\dx\*\*; CPU \d+\.\d\dx\)"
        unary = number + r", \d+ us CPU a call" + ratio
        assert re.search(rf"\| {re.escape(label)} \| {unary} \| {unary} \| ", text), label
        for workload in ("unary1", "unary64", "server_stream", "bidi"):
            assert (
                f"- `taskset -c 0 python benchmarks/client_compare.py drive {kind} {workload} "
                "127.0.0.1:PORT --duration 0.2 --warmup 0.1" in text
            ), (kind, workload)
    assert "Server (core 1): `taskset -c 1 python -m greet.server --port PORT" in text
    figures = json.loads(out.read_text())["results"]
    assert set(figures) == set(kinds.values())
    for kind, workloads in figures.items():
        for workload, [run] in workloads.items():
            assert run["count"] > 0, (kind, workload)
