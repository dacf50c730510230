"""benchmarks/web_compare.py still works: one tiny run against connectrpc on uvicorn with h2load
--h1 (no figure is asserted; the figures are in benchmarks/RESULTS.md). Needs h2load (Debian
nghttp2-client) and taskset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from web_peers import SERVERS_UNDER_TEST

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_a_tiny_run_prints_the_commands_and_a_figure_per_server(tmp_path: Path) -> None:
    servers = [
        "connectrpc",
        *(["greet-nghttp2", "greet-h2"] if "greet" in SERVERS_UNDER_TEST else []),
    ]
    command = [
        sys.executable, str(ROOT / "benchmarks" / "web_compare.py"),
        "--rounds", "1", "--duration", "0.5", "--warmup", "0.2", "--connections", "2",
        "--servers", ",".join(servers), "--json", str(tmp_path / "web.json"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "taskset -c 0 h2load --h1 -t1 -c2 -m1 " in done.stdout
    results = json.loads((tmp_path / "web.json").read_text())
    assert results["skipped"] == {}
    assert sorted(results["servers"]) == sorted(servers)
    for name, figures in results["servers"].items():
        assert figures["command"].startswith("taskset -c 1 python "), name
        assert figures["failed"] == 0, name
        assert figures["median_calls_per_second"] > 0, name
        assert f"| `{figures['command']}` |" in done.stdout
