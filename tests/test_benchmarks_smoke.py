"""benchmarks/compare.py still works: one tiny run of every part, no figures asserted.

The benchmark itself is not part of the tests (its figures are in benchmarks/RESULTS.md); this
only proves the harness starts both servers, drives them with h2load and the other drivers, and
writes its report. Needs h2load (Debian nghttp2-client), taskset and grpcio-tools.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def test_tiny_benchmark_run_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "benchmarks" / "compare.py"),
        "--rounds", "1", "--duration", "0.5", "--warmup", "0", "--workloads", "unary1,bidi",
        "--rss-streams", "20", "--no-go", "--out", str(report),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 110)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]

    text = report.read_text()
    assert "| workload | greet | grpcio | greet / grpcio |" in text
    # A ratio for unary; the bidi row exists (in so short a run a slow server may finish no call).
    assert re.search(r"\| unary, 1 in flight .*\| \*\*\d+\.\d\d\*\* \|", text)
    assert "| bidi, 1,000 messages per call" in text
    assert "Failed or errored h2load requests over all runs: 0." in text
    assert "## Bidi ping-pong" in text
    assert "## Peak RSS" in text
    assert re.search(r"greet --workers 2 / grpcio: \*\*\d+\.\d\d\*\*", text)
    assert "- Command: `python benchmarks/compare.py --rounds 1" in text
